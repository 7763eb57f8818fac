"""IMAP listener settings and per-connection session state."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DEFAULT_EXTENSIONS", "ImapSettings", "Session"]

DEFAULT_EXTENSIONS: tuple[str, ...] = (
    "ENABLE", "IDLE", "NAMESPACE", "ID", "UNSELECT", "UIDPLUS", "MOVE", "CONDSTORE",
    "QRESYNC", "ESEARCH", "SEARCHRES", "LIST-EXTENDED", "LIST-STATUS", "SPECIAL-USE",
    "CHILDREN", "BINARY", "UTF8=ACCEPT", "STATUS=SIZE", "SASL-IR",
)


@dataclass(frozen=True)
class ImapSettings:
    hostname: str
    greeting: str = "Mailyard IMAP ready"
    starttls: bool = False  # a TLS context exists: offer STARTTLS before TLS
    implicit_tls: bool = False  # TLS from the first octet (port 993, RFC 8314)
    plaintext_auth: bool = False  # allow LOGIN/AUTHENTICATE without TLS (tests, loopback)
    login: bool = True  # the LOGIN command (else LOGINDISABLED even over TLS)
    sasl_mechanisms: tuple[str, ...] = ("PLAIN",)  # AUTH=... offered (with TLS)
    rev1: bool = True  # also speak IMAP4rev1 (RFC 9051 Appendix E)
    literal_plus: bool = False  # LITERAL+ (else LITERAL-, RFC 7888)
    extensions: tuple[str, ...] = DEFAULT_EXTENSIONS
    server_id: tuple[tuple[str, str], ...] = (("name", "Mailyard"),)  # RFC 2971
    delimiter: str = "/"
    # Limits
    max_line: int = 65_536  # one command line, CRLF excluded (RFC 7162 4: >= 8192)
    max_command: int = 1_048_576  # all lines and literals of one command (not APPEND's)
    max_literal: int = 65_536  # one literal in a command other than APPEND
    max_literal_unauthenticated: int = 4_096  # before LOGIN/AUTHENTICATE succeeded
    max_append: int = 52_428_800  # APPEND message size (advertised as APPENDLIMIT)
    max_depth: int = 32  # nesting of parentheses / NOT / OR
    max_sequence_ranges: int = 10_000
    max_bad_commands: int = 20
    max_auth_failures: int = 3


@dataclass
class Session:
    """Per-connection state: survives SELECT and CLOSE, not STARTTLS (RFC 9051 6.2.1:
    the client must forget capabilities; nothing but TLS changes on our side)."""

    tls: bool
    user: str = ""
    mechanism: str = ""
    enabled: set[str] = field(default_factory=set)
    mailbox: str = ""  # selected mailbox name
    readonly: bool = False
    bad_commands: int = 0
    auth_failures: int = 0
