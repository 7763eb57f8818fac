"""The IMAP listeners (``listen.imap``: STARTTLS, port 143; ``listen.imaps``:
implicit TLS, port 993): :class:`ImapServer` serves sockets the supervisor has
already bound, one :class:`~mailyard.imapd.session.ImapSession` per connection.

Shared with SMTP and POP3: the AUTH guard (:class:`~mailyard.smtpd.authguard.AuthGate`,
the ``smtpd.auth_*`` limits) and the connection caps
(:class:`~mailyard.smtpd.limits.ConnectionLimiter`, per worker process, with the
``imap.max_connections*`` keys).  Per process: the open accounts
(:class:`~mailyard.imapd.accounts.Accounts`) and the folder watcher
(:class:`~mailyard.imapd.watch.Watcher`) and the search-index warmer
(:class:`~mailyard.imapd.warm.SearchWarmer`).
"""

from __future__ import annotations

import asyncio
import ssl

from mailyard.config import Config, ListenerKind
from mailyard.directory.api import Directory
from mailyard.imapd.accounts import Accounts
from mailyard.imapd.engine import Limits
from mailyard.imapd.logincache import LoginCache
from mailyard.imapd.session import ImapListener, ImapSession, ImapTimers
from mailyard.imapd.warm import SearchWarmer
from mailyard.imapd.watch import Watcher
from mailyard.listener.server import SHUTDOWN_GRACE, ListenerServer, implicit_tls_kind
from mailyard.proto.imap.session import DEFAULT_EXTENSIONS, ImapSettings
from mailyard.smtpd.authguard import AuthGate
from mailyard.smtpd.limits import ConnectionLimiter
from mailyard.store.maildir import MaildirStore

__all__ = ["ImapServer", "settings_for"]

KINDS = (ListenerKind.IMAP.value, ListenerKind.IMAPS.value)
BYE_BUSY = "Too many connections, try again later"
BYE_SHUTTING_DOWN = "Server shutting down"
EXTENSIONS = DEFAULT_EXTENSIONS + (
    "CREATE-SPECIAL-USE", "WITHIN", "SORT", "SORT=DISPLAY", "THREAD=ORDEREDSUBJECT",
    "THREAD=REFERENCES", "QUOTA", "QUOTA=RES-STORAGE", "QUOTA=RES-MESSAGE")


def settings_for(config: Config, kind: str, tls_available: bool) -> ImapSettings:
    imap = config.imap
    mechanisms = ["PLAIN"]
    if config.auth.scram_iterations > 0:
        mechanisms.append("SCRAM-SHA-256")
    return ImapSettings(
        hostname=config.hostname,
        starttls=tls_available and kind == ListenerKind.IMAP,
        implicit_tls=kind == ListenerKind.IMAPS,
        plaintext_auth=imap.allow_plaintext_login,
        sasl_mechanisms=tuple(mechanisms),
        literal_plus=True,
        extensions=EXTENSIONS,
        max_line=imap.max_line,
        max_literal=imap.max_literal,
        max_literal_unauthenticated=imap.max_literal_unauthenticated,
        max_append=imap.appendlimit,
        max_auth_failures=config.smtpd.max_auth_failures,
    )


class ImapServer(ListenerServer[ImapListener, ImapSession, str]):
    """Serves the IMAP listeners of one worker; the ``ImapHost`` of its sessions."""

    def __init__(self, config: Config, directory: Directory, store: MaildirStore,
                 ssl_context: ssl.SSLContext | None, auth_gate: AuthGate, *,
                 scram_decoy_key: bytes = b"") -> None:
        imap = config.imap
        super().__init__(ConnectionLimiter(imap.max_connections, imap.max_connections_per_ip),
                         BYE_BUSY, BYE_SHUTTING_DOWN)
        self.config = config
        self.directory = directory
        self.accounts = Accounts(store)
        self.warmer = SearchWarmer() if imap.search_index_warm else None
        self.watcher = Watcher(imap.poll_interval,
                               self.warmer.warm if self.warmer is not None else None)
        self.ssl_context = ssl_context
        self.auth_gate = auth_gate
        self.login_cache = LoginCache()
        self.scram_decoy_key = scram_decoy_key
        self.scram_iterations = config.auth.scram_iterations
        self.limits = Limits(appendlimit=imap.appendlimit,
                             search_budget=imap.search_time_budget)
        self.timers = ImapTimers(login=imap.login_timeout, idle=imap.idle_timeout,
                                 command=imap.command_timeout,
                                 tls_handshake=imap.tls_handshake_timeout)

    def listener(self, kind: str) -> ImapListener:
        implicit = implicit_tls_kind(kind, KINDS, self.ssl_context)
        return ImapListener(kind, settings_for(self.config, kind, self.ssl_context is not None),
                            self.ssl_context, implicit, self.timers)

    def new_session(self, listener: ImapListener) -> ImapSession:
        return ImapSession(listener, self)

    async def close(self, grace: float = SHUTDOWN_GRACE) -> None:
        """Stop listening, say BYE to every session, wait up to ``grace`` seconds."""
        await self.stop_listening(grace)
        self.watcher.close()
        loop = asyncio.get_running_loop()
        if self.warmer is not None:
            await loop.run_in_executor(None, self.warmer.close)
        await loop.run_in_executor(None, self.accounts.close)
