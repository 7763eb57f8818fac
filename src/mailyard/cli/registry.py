"""The command groups of the ``mailyard`` CLI, in the order ``--help`` lists them."""

from __future__ import annotations

from mailyard.cli import (
    accounts,
    apikey,
    campaign,
    check,
    check_message,
    contacts,
    feedback,
    init,
    queue,
    report,
    send,
    serve,
)

REGISTER = [
    init.register,
    serve.register,
    accounts.register,
    queue.register,
    send.register,
    contacts.register,
    campaign.register,
    apikey.register,
    report.register,
    check.register,
    check_message.register,  # joins the `check` group check.register made
    feedback.register,  # joins the `check` group check.register made
]
