"""The command groups of the ``mailyard`` CLI, in the order ``--help`` lists them."""

from __future__ import annotations

from mailyard.cli import accounts, check_message, feedback, init, queue, report, send, serve

REGISTER = [
    init.register,
    serve.register,
    accounts.register,
    queue.register,
    send.register,
    report.register,
    check_message.register,  # joins or creates the `check` group
    feedback.register,  # after any module that creates the `check` group
]
