"""Server-side SMTP state: listener settings, per-connection :class:`Session` and
per-transaction :class:`Transaction` (kept apart as RFC 5321 4.1.4 keeps them: RSET
ends a transaction, not the session; STARTTLS ends both, RFC 3207 4.2)."""

from __future__ import annotations

from dataclasses import dataclass

from mailyard.envelope import Envelope, Recipient

__all__ = ["ServerSettings", "Session", "Transaction"]


@dataclass(frozen=True)
class ServerSettings:
    hostname: str
    banner: str = ""
    max_message_size: int = 52_428_800
    max_recipients: int = 1000
    max_errors: int = 20
    max_auth_failures: int = 3
    max_line_length: int = 1000  # DATA text line, CRLF included (RFC 5321 4.5.3.1.6)
    max_received_headers: int = 50
    normalize_bare_line_endings: bool = False
    starttls: bool = False  # a TLS context exists: offer STARTTLS before TLS
    auth: bool = False  # this listener offers AUTH (once TLS is active)
    vrfy: bool = False  # ask policy about VRFY instead of answering 252
    implicit_tls: bool = False  # TLS from the first octet (port 465, RFC 8314)
    scram: bool = True  # offer SCRAM-SHA-256 ([auth] scram_iterations is not 0)
    # SCRAM for unknown users: decoy salts derived from this key (the same in every
    # process; empty: a per-process key) with this iteration count.
    scram_decoy_key: bytes = b""
    scram_decoy_iterations: int = 4096


class Session:
    """Per-connection state (RFC 5321 4.1.4: survives RSET, not STARTTLS)."""

    __slots__ = ("helo", "extended", "tls", "auth_user", "auth_mechanism", "errors",
                 "auth_failures", "messages")

    def __init__(self, tls: bool) -> None:
        self.helo = ""
        self.extended = False
        self.tls = tls
        self.auth_user = ""
        self.auth_mechanism = ""
        self.errors = 0
        self.auth_failures = 0
        self.messages = 0


class Transaction:
    """Per-transaction state, built from MAIL and RCPT (the envelope in the making)."""

    __slots__ = ("sender", "body", "smtputf8", "ret", "envid", "declared_size",
                 "recipients", "chunks", "size")

    def __init__(self) -> None:
        self.sender: str | None = None
        self.body = "7BIT"
        self.smtputf8 = False
        self.ret = ""
        self.envid = ""
        self.declared_size: int | None = None
        self.recipients: list[Recipient] = []
        self.chunks = 0
        self.size = 0

    def envelope(self, *, client_ip: str = "", client_helo: str = "", auth_user: str = "",
                 received_at: float = 0.0) -> Envelope:
        return Envelope(sender=self.sender or "", recipients=tuple(self.recipients),
                        body_type=self.body, smtputf8=self.smtputf8, ret=self.ret,
                        envid=self.envid, client_ip=client_ip, client_helo=client_helo,
                        auth_user=auth_user, received_at=received_at)
