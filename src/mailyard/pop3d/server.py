"""The POP3 listeners (``listen.pop3``: STLS, port 110; ``listen.pop3s``: implicit
TLS, port 995): :class:`Pop3Server` serves sockets the supervisor has already bound,
one :class:`~mailyard.pop3d.session.Pop3Session` per connection.

Shared with SMTP: the AUTH guard (:class:`~mailyard.smtpd.authguard.AuthGate`, the
``smtpd.auth_*`` limits, one failure count per address and user for every protocol)
and the connection cap logic (:class:`~mailyard.smtpd.limits.ConnectionLimiter`,
per worker process, with the ``pop3.max_connections*`` keys).
"""

from __future__ import annotations

import ssl

from mailyard.config import Config, ListenerKind
from mailyard.directory.api import Directory
from mailyard.listener.server import SHUTDOWN_GRACE, ListenerServer, implicit_tls_kind
from mailyard.pop3d.session import RESP_SHUTTING_DOWN, Pop3Listener, Pop3Session, Pop3Timers
from mailyard.proto.pop3 import Pop3Settings, Response
from mailyard.proto.pop3.responses import CODE_SYS_TEMP
from mailyard.smtpd.authguard import AuthGate
from mailyard.smtpd.limits import ConnectionLimiter
from mailyard.store.api import MailStore

__all__ = ["Pop3Server", "settings_for"]

KINDS = (ListenerKind.POP3.value, ListenerKind.POP3S.value)
RESP_BUSY = Response(False, "Too many connections, try again later", CODE_SYS_TEMP)


def settings_for(config: Config, kind: str, tls_available: bool) -> Pop3Settings:
    mechanisms = ["PLAIN"]
    if config.auth.scram_iterations > 0:
        mechanisms.append("SCRAM-SHA-256")
    return Pop3Settings(
        hostname=config.hostname,
        stls=tls_available and kind == ListenerKind.POP3,
        allow_plaintext_login=config.pop3.allow_plaintext_login,
        sasl_mechanisms=tuple(mechanisms),
        max_auth_failures=config.smtpd.max_auth_failures,
    )


class Pop3Server(ListenerServer[Pop3Listener, Pop3Session, Response]):
    """Serves the POP3 listeners of one worker; the :class:`~mailyard.pop3d.session.
    Pop3Host` of its sessions."""

    def __init__(self, config: Config, directory: Directory, store: MailStore,
                 ssl_context: ssl.SSLContext | None, auth_gate: AuthGate, *,
                 scram_decoy_key: bytes = b"") -> None:
        pop3 = config.pop3
        super().__init__(ConnectionLimiter(pop3.max_connections, pop3.max_connections_per_ip),
                         RESP_BUSY, RESP_SHUTTING_DOWN)
        self.config = config
        self.directory = directory
        self.store = store
        self.ssl_context = ssl_context
        self.auth_gate = auth_gate
        self.scram_decoy_key = scram_decoy_key
        self.scram_iterations = config.auth.scram_iterations
        self.timers = Pop3Timers(idle=pop3.idle_timeout, command=pop3.command_timeout,
                                 tls_handshake=min(pop3.idle_timeout,
                                                   pop3.tls_handshake_timeout),
                                 max_session=pop3.max_session_time)

    def listener(self, kind: str) -> Pop3Listener:
        implicit = implicit_tls_kind(kind, KINDS, self.ssl_context)
        return Pop3Listener(kind, settings_for(self.config, kind, self.ssl_context is not None),
                            self.ssl_context, implicit, self.timers)

    def new_session(self, listener: Pop3Listener) -> Pop3Session:
        return Pop3Session(listener, self)

    async def close(self, grace: float = SHUTDOWN_GRACE) -> None:
        """Stop listening, close every session (nothing is deleted unless a QUIT's
        removals are under way, which finish), wait up to ``grace`` seconds."""
        await self.stop_listening(grace)
