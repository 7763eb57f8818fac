"""The values that end a round of ``next_event()`` calls, shared by every sans-IO core
(SMTP, IMAP, POP3), so an adapter tests them the same way whatever the protocol:
:data:`NEED_DATA` (feed more bytes), :data:`PAUSED` (a decision is outstanding, or a
TLS upgrade is waiting for its handshake) and :data:`CLOSED` (the connection is over
once the output is flushed)."""

from __future__ import annotations


class Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NEED_DATA = Sentinel("NEED_DATA")
PAUSED = Sentinel("PAUSED")
CLOSED = Sentinel("CLOSED")
