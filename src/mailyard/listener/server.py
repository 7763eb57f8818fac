"""The listener half of a mail-reading server: admission against the connection caps
(:class:`~mailyard.smtpd.limits.ConnectionLimiter`, per worker process), the set of
open sessions, and the shutdown drain.  The protocol servers add their services and
say how a session is made and what a refusal looks like.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any, Generic, TypeVar

from mailyard.listener.session import StreamSession
from mailyard.smtpd.limits import ConnectionLimiter, end_sessions

__all__ = ["OpenSessions", "ListenerServer", "implicit_tls_kind"]

SHUTDOWN_GRACE = 5.0

L = TypeVar("L")
S = TypeVar("S", bound=StreamSession)
R = TypeVar("R")


def implicit_tls_kind(kind: str, kinds: tuple[str, str],
                      ssl_context: ssl.SSLContext | None) -> bool:
    """Whether listener ``kind`` (one of ``kinds``: the STARTTLS kind, then the
    implicit-TLS one) starts with a TLS handshake; ValueError for an unknown kind or
    an implicit-TLS listener without a TLS context."""
    if kind not in kinds:
        raise ValueError(f"unknown {kinds[0].upper()} listener kind {kind!r} "
                         f"(expected one of {kinds})")
    implicit = kind == kinds[1]
    if implicit and ssl_context is None:
        raise ValueError(f"the {kinds[1]} listener needs a TLS context")
    return implicit


class OpenSessions:
    """The open sessions of a server: their release and the shutdown drain, shared
    with the SMTP server (which admits on its own: its accept path is benchmarked)."""

    sessions: set[Any]
    _counted: set[Any]  # the sessions holding a place in the connection caps
    limiter: ConnectionLimiter
    shutting_down: bool
    _servers: list[asyncio.base_events.Server]
    _idle: asyncio.Event | None

    def release(self, session: object, ip: str) -> None:
        if session in self._counted:
            self._counted.discard(session)
            self.limiter.release(ip)
        self.sessions.discard(session)
        if not self.sessions and self._idle is not None:
            self._idle.set()

    async def stop_listening(self, grace: float = SHUTDOWN_GRACE) -> None:
        """Stop accepting, ask every session to end, wait up to ``grace`` seconds."""
        self.shutting_down = True
        for server in self._servers:
            server.close()
        self._idle = asyncio.Event()
        await end_sessions(self.sessions, self._idle, grace)
        self._servers.clear()


class ListenerServer(OpenSessions, Generic[L, S, R]):
    """Counts the sessions of one protocol in one worker: ``L`` is what one listening
    socket serves, ``S`` a session, ``R`` the protocol's refusal (a BYE text, a POP3
    response)."""

    def __init__(self, limiter: ConnectionLimiter, busy: R, shutting_down: R) -> None:
        self.limiter = limiter
        self._busy = busy
        self._shutting_down = shutting_down
        self.sessions: set[S] = set()
        self._counted: set[S] = set()
        self.shutting_down = False
        self._servers: list[asyncio.base_events.Server] = []
        self._idle: asyncio.Event | None = None

    def listener(self, kind: str) -> L:
        """What a listening socket of ``kind`` serves (ValueError for a bad kind)."""
        raise NotImplementedError

    def new_session(self, listener: L) -> S:
        raise NotImplementedError

    async def serve(self, kind: str, sock: socket.socket) -> asyncio.base_events.Server:
        listener = self.listener(kind)
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: self.new_session(listener), sock=sock)
        self._servers.append(server)
        return server

    def admit(self, session: S, ip: str) -> R | None:
        """Register a connection; the refusal when over a cap or shutting down."""
        self.sessions.add(session)
        if self.shutting_down:
            return self._shutting_down
        if self.limiter.acquire(ip) is not None:
            return self._busy
        self._counted.add(session)
        return None
