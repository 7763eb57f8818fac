"""The SMTP listeners (25, 587, 465): :class:`SmtpServer` serves sockets the
supervisor has already bound, one :class:`~mailyard.smtpd.session.SmtpSession` per
connection.

Kinds: ``smtp`` (MX: no AUTH, local recipients only), ``submission`` (STARTTLS, then
AUTH required) and ``submissions`` (implicit TLS, then as submission).  See
:mod:`mailyard.smtpd.policy` for the rules.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable

from mailyard.config import Config
from mailyard.directory.api import Directory
from mailyard.dns.api import Resolver
from mailyard.ingest.api import DeliverNow, Ingest
from mailyard.ingest.pipeline import ingest_for, srs_for
from mailyard.listener.server import OpenSessions
from mailyard.obs import Metrics, log_event
from mailyard.proto.smtp.replies import REPLY_SHUTTING_DOWN, Reply
from mailyard.proto.smtp.session import ServerSettings
from mailyard.queue.api import Spool
from mailyard.sending.limiter import SendLimiter, ThreadedSendLimiter
from mailyard.sending.store import SqliteSendCounters, sending_db_path
from mailyard.services.setup import feedback_addresses
from mailyard.smtpd.authguard import AuthGate
from mailyard.smtpd.context import InboundServices, ListenerSpec, SessionTimers
from mailyard.smtpd.limits import ConnectionLimiter
from mailyard.smtpd.policy import KINDS, FreeSpaceGauge, ListenerPolicy
from mailyard.smtpd.quota import RcptQuota
from mailyard.smtpd.session import SmtpSession
from mailyard.smtpd.spf import SpfCheck
from mailyard.store.maildir import MaildirStore
from mailyard.store.usage import UsageCache

__all__ = ["SmtpServer", "settings_for"]

log = logging.getLogger("mailyard.smtpd")

SHUTDOWN_GRACE = 5.0


def settings_for(config: Config, kind: str, tls_available: bool,
                 scram_decoy_key: bytes = b"") -> ServerSettings:
    smtpd = config.smtpd
    scram_iterations = config.auth.scram_iterations
    return ServerSettings(
        hostname=config.hostname,
        banner=smtpd.banner,
        max_message_size=smtpd.max_message_size,
        max_recipients=smtpd.max_recipients,
        max_errors=smtpd.max_errors,
        max_auth_failures=smtpd.max_auth_failures,
        max_line_length=smtpd.max_line_length,
        max_received_headers=smtpd.max_received_headers,
        normalize_bare_line_endings=smtpd.bare_line_endings == "normalize",
        starttls=tls_available and kind != "submissions",
        auth=kind != "smtp",
        vrfy=smtpd.vrfy,
        implicit_tls=kind == "submissions",
        scram=scram_iterations > 0,
        scram_decoy_key=scram_decoy_key,
        scram_decoy_iterations=scram_iterations or 4096,
    )


class SmtpServer(OpenSessions):
    """Serves the listeners; implements :class:`~mailyard.smtpd.context.SessionHost`
    for its sessions.  ``ingest`` defaults to one over ``spool``; ``deliver_now`` is
    the service for end-to-end transports (None: every message is only queued);
    ``resolver`` answers the SPF checks of port 25 (default: ``delivery.dns_servers``
    behind the cache)."""

    def __init__(self, config: Config, spool: Spool, directory: Directory,
                 ssl_context: ssl.SSLContext | None, metrics: Metrics,
                 on_queued: Callable[[str], None], *, scram_decoy_key: bytes = b"",
                 ingest: Ingest | None = None, deliver_now: DeliverNow | None = None,
                 resolver: Resolver | None = None) -> None:
        self.config = config
        # SCRAM decoys for unknown users (derived from the server secret; see
        # mailyard.daemon.secret), the same in every worker.
        self.scram_decoy_key = scram_decoy_key
        self.spool = spool
        self.directory = directory
        self.ssl_context = ssl_context
        self.metrics = metrics
        self.on_queued = on_queued
        self.services = InboundServices(ingest or ingest_for(config, spool), metrics,
                                        config.hostname, deliver_now)
        self.timers = SessionTimers.from_config(config.smtpd)
        self.limiter = ConnectionLimiter(config.smtpd.max_connections,
                                         config.smtpd.max_connections_per_ip)
        self.free_space = FreeSpaceGauge(spool)
        self.quota = RcptQuota(directory, UsageCache(
            MaildirStore(config.data_path / "mail", config.hostname).usage))
        self.auth_gate = AuthGate.from_config(config.smtpd, config.data_path)
        self.sending = ThreadedSendLimiter(SendLimiter(
            SqliteSendCounters(sending_db_path(config.data_path)), config.sending))
        self.spf: SpfCheck | None = None
        if config.spf.enabled:
            if resolver is None:
                from mailyard.dns import make_resolver

                resolver = make_resolver(config.delivery)
            self.spf = SpfCheck(config.spf, resolver, config.hostname)
        self.sessions: set[SmtpSession] = set()
        self._counted: set[object] = set()  # sessions holding a place in the caps
        self.shutting_down = False
        self._servers: list[asyncio.base_events.Server] = []
        self._listeners: dict[str, ListenerSpec] = {}
        self._idle: asyncio.Event | None = None

    def listener(self, kind: str) -> ListenerSpec:
        if kind not in KINDS:
            raise ValueError(f"unknown listener kind {kind!r} (expected one of {KINDS})")
        if kind not in self._listeners:
            policy = ListenerPolicy(kind, self.config, self.directory, self.free_space,
                                    self.auth_gate, self.quota, self.sending,
                                    spf=self.spf, srs=srs_for(self.config),
                                    feedback=feedback_addresses(self.config))
            settings = settings_for(self.config, kind, self.ssl_context is not None,
                                    self.scram_decoy_key)
            self._listeners[kind] = ListenerSpec(kind, settings, policy, self.ssl_context)
        return self._listeners[kind]

    async def serve(self, kind: str, sock: socket.socket) -> asyncio.base_events.Server:
        """Accept connections on ``sock`` (bound and listening) as a ``kind`` listener.

        Every listener accepts plain TCP, so each connection counts against the
        connection caps from the moment it is accepted; on ``submissions`` the session
        itself runs the TLS handshake (see :mod:`mailyard.smtpd.session`)."""
        listener = self.listener(kind)
        loop = asyncio.get_running_loop()
        if kind == "submissions" and self.ssl_context is None:
            raise ValueError("the submissions listener needs a TLS context")
        services, timers = self.services, self.timers
        server = await loop.create_server(
            lambda: SmtpSession(listener, services, self, timers), sock=sock)
        self._servers.append(server)
        return server

    # --- SessionHost ----------------------------------------------------------------

    def admit(self, session: object, ip: str) -> Reply | None:
        self.sessions.add(session)  # type: ignore[arg-type]
        if self.shutting_down:
            return REPLY_SHUTTING_DOWN
        refusal = self.limiter.acquire(ip)
        if refusal is None:
            self._counted.add(session)
        return refusal

    def queued(self, qid: str) -> None:
        try:
            self.on_queued(qid)
        except OSError as exc:
            log_event(log, "queue notification failed", level=logging.WARNING, qid=qid,
                      error=str(exc))

    async def close(self, grace: float = SHUTDOWN_GRACE) -> None:
        """Stop listening, send 421 4.3.2 to every client (after any commit in
        progress), and wait up to ``grace`` seconds for the connections to end."""
        await self.stop_listening(grace)
        self.auth_gate.close()
        self.sending.close()
