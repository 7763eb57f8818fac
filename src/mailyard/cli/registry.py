"""The command groups of the ``mailyard`` CLI, in the order ``--help`` lists them."""

from __future__ import annotations

REGISTER: list = []
