"""Mailbox access: the POP3 and IMAP servers (``[pop3]``, ``[imap]``) and the default
quotas (``[mailbox]``)."""

from __future__ import annotations

from dataclasses import dataclass

from mailyard.config._parse import ConfigError


@dataclass(frozen=True)
class Pop3Config:
    """The POP3 listeners (``listen.pop3``, ``listen.pop3s``; mailyard.pop3d).  The
    AUTH guard's limits are the ``smtpd.auth_*`` keys: one guard for every protocol."""

    # USER/PASS and AUTH before STLS: off (RFC 8314, RFC 2595 3.1).  Only for a
    # listener that no one reaches over an untrusted network.
    allow_plaintext_login: bool = False
    max_connections: int = 1000  # per worker process
    max_connections_per_ip: int = 20  # per worker process
    # Seconds without a complete command before the session is closed; RFC 1939 3
    # asks for at least 10 minutes.
    idle_timeout: float = 600.0
    # Seconds one RETR/TOP may take to go out (a client that stops reading).
    command_timeout: float = 300.0
    tls_handshake_timeout: float = 10.0
    max_session_time: float = 3600.0

    def validate(self, key: str) -> None:
        for name in ("max_connections", "max_connections_per_ip", "idle_timeout",
                     "command_timeout", "tls_handshake_timeout", "max_session_time"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{key}.{name}", "must be positive")


@dataclass(frozen=True)
class ImapConfig:
    """The IMAP listeners (``listen.imap``, ``listen.imaps``; mailyard.imapd).  The
    AUTH guard's limits are the ``smtpd.auth_*`` keys: one guard for every protocol."""

    # LOGIN and AUTHENTICATE before STARTTLS: off (RFC 9051 6.2.3, RFC 8314).
    allow_plaintext_login: bool = False
    max_connections: int = 2000  # per worker process
    max_connections_per_ip: int = 50  # per worker process (clients open several)
    # Seconds a connection may stay unauthenticated.
    login_timeout: float = 60.0
    # Seconds without a command (IDLE included) before an authenticated session is
    # closed; RFC 9051 5.4 asks for at least 30 minutes.
    idle_timeout: float = 1800.0
    # Seconds the server may spend on one command (a FETCH to a client that stops
    # reading).
    command_timeout: float = 300.0
    tls_handshake_timeout: float = 10.0
    max_line: int = 65_536  # octets of one command line (RFC 7162 4: at least 8192)
    max_literal: int = 65_536  # one literal in a command other than APPEND
    max_literal_unauthenticated: int = 4_096  # one literal before login
    appendlimit: int = 52_428_800  # APPEND message size (APPENDLIMIT, RFC 7889)
    search_time_budget: float = 10.0  # seconds one SEARCH/SORT/THREAD may run
    poll_interval: float = 0.25  # seconds between checks of a selected mailbox
    search_index_warm: bool = True  # index a selected folder in the background

    def validate(self, key: str) -> None:
        for name in ("max_connections", "max_connections_per_ip", "login_timeout",
                     "idle_timeout", "command_timeout", "tls_handshake_timeout",
                     "max_line", "max_literal", "max_literal_unauthenticated",
                     "appendlimit", "search_time_budget", "poll_interval"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{key}.{name}", "must be positive")
        if self.max_line < 8192:
            raise ConfigError(f"{key}.max_line", "must be at least 8192 (RFC 7162 4)")


@dataclass(frozen=True)
class MailboxConfig:
    # The default quota of every user (RFC 9208 STORAGE in octets, MESSAGE in
    # messages; 0: unlimited); `mailyard user quota` sets a user's own.
    quota_storage: int = 0
    quota_messages: int = 0

    def validate(self, key: str) -> None:
        for name in ("quota_storage", "quota_messages"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{key}.{name}", "must not be negative (0: unlimited)")
