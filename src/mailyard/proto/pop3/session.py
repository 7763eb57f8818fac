"""Settings of a POP3 listener and the per-connection maildrop snapshot (RFC 1939)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# RFC 1939 7 (UIDL): 1 to 70 characters in the range 0x21 to 0x7E.
_UID = re.compile(r"[\x21-\x7e]{1,70}")


@dataclass(frozen=True, slots=True)
class Pop3Settings:
    """What a listener offers; the adapter builds it from the config."""

    hostname: str = "localhost"
    implementation: str = "Mailyard"  # CAPA IMPLEMENTATION (RFC 2449 6.9)
    stls: bool = False  # a TLS context is there for STLS (RFC 2595 4)
    # USER/PASS and AUTH before TLS: off by default (RFC 8314, RFC 2595 3.1).
    allow_plaintext_login: bool = False
    sasl_mechanisms: tuple[str, ...] = ()  # offered by CAPA SASL and AUTH, upper case
    max_bad_commands: int = 10
    max_auth_failures: int = 3


@dataclass(frozen=True, slots=True)
class MessageInfo:
    """One message of the maildrop as the store saw it at login."""

    uid: str  # UIDL unique-id, stable across sessions
    size: int  # octets as sent on the wire: CRLF line ends, before dot-stuffing

    def __post_init__(self) -> None:
        if not _UID.fullmatch(self.uid):
            raise ValueError(f"not a UIDL unique-id: {self.uid!r}")
        if self.size < 0:
            raise ValueError("negative message size")


@dataclass(slots=True)
class Maildrop:
    """The snapshot taken at login plus this session's deletion marks.  Message
    numbers are 1-based and stay fixed for the session (RFC 1939 5)."""

    messages: tuple[MessageInfo, ...]
    deleted: set[int] = field(default_factory=set)

    def visible(self) -> list[tuple[int, MessageInfo]]:
        return [(n, m) for n, m in enumerate(self.messages, 1) if n not in self.deleted]

    def stat(self) -> tuple[int, int]:
        shown = self.visible()
        return len(shown), sum(m.size for _, m in shown)

    def get(self, number: int) -> MessageInfo | None:
        """The message numbered ``number`` unless absent or marked deleted."""
        if number < 1 or number > len(self.messages) or number in self.deleted:
            return None
        return self.messages[number - 1]

    def marked(self) -> tuple[MessageInfo, ...]:
        return tuple(self.messages[n - 1] for n in sorted(self.deleted))
