"""Connection caps: how many connections in all, and from one client address; and
ending a server's open sessions at shutdown.  Used by the SMTP and the POP3 servers.

Counting is per worker process for now (each worker enforces the configured caps on
its own share of connections); the class is the one place that would change to share
the counts between processes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Set
from typing import Protocol

from mailyard.proto.smtp.replies import REPLY_SERVER_BUSY, REPLY_TOO_MANY_CONNECTIONS, Reply


class ConnectionLimiter:
    def __init__(self, max_total: int, max_per_ip: int) -> None:
        self.max_total = max_total
        self.max_per_ip = max_per_ip
        self.total = 0
        self._per_ip: dict[str, int] = {}

    def acquire(self, ip: str) -> Reply | None:
        """Count a new connection, or return the 421 that refuses it (not counted)."""
        if self.total >= self.max_total:
            return REPLY_SERVER_BUSY
        count = self._per_ip.get(ip, 0)
        if count >= self.max_per_ip:
            return REPLY_TOO_MANY_CONNECTIONS
        self._per_ip[ip] = count + 1
        self.total += 1
        return None

    def release(self, ip: str) -> None:
        count = self._per_ip.get(ip, 0)
        if count <= 0:
            return
        self.total -= 1
        if count == 1:
            del self._per_ip[ip]
        else:
            self._per_ip[ip] = count - 1

    def count(self, ip: str) -> int:
        return self._per_ip.get(ip, 0)


class _Transport(Protocol):
    def abort(self) -> None: ...


class EndingSession(Protocol):
    @property
    def transport(self) -> _Transport | None: ...

    def shutdown(self) -> None: ...


async def end_sessions(sessions: Set[EndingSession], idle: asyncio.Event,
                       grace: float) -> None:
    """Ask every open session to end, wait up to ``grace`` seconds for the set to
    empty (the server sets ``idle`` when its last session is released), then abort
    the connections still open."""
    for session in list(sessions):
        session.shutdown()
    if sessions:
        try:
            await asyncio.wait_for(idle.wait(), grace)
        except TimeoutError:
            for session in list(sessions):
                if session.transport is not None:
                    session.transport.abort()
