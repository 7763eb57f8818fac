"""The command groups of the ``mailyard`` CLI, in the order ``--help`` lists them."""

from __future__ import annotations

from mailyard.cli import (
    accounts,
    apikey,
    check,
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
    apikey.register,
    report.register,
    check.register,
    feedback.register,  # joins the `check` group check.register made
]
