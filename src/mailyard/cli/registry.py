"""The command groups of the ``mailyard`` CLI, in the order ``--help`` lists them."""

from __future__ import annotations

from mailyard.cli import accounts, queue, send, serve

REGISTER = [
    serve.register,
    accounts.register,
    queue.register,
    send.register,
]
