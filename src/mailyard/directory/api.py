"""What the rest of Mailyard asks of the user directory (domains, users, aliases).

smtpd asks it whether a recipient exists and who may send as whom; the local delivery
agent asks it where an address goes.  The embedded implementation is SQLite
(``mailyard.directory.sqlite``); a PostgreSQL one comes later behind the same protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


class DirectoryError(Exception):
    """A directory operation failed (bad input or storage trouble), with a clear message."""


@dataclass(frozen=True)
class ScramCredentials:
    """RFC 5802 / RFC 7677 stored credentials for SCRAM-SHA-256."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes


@dataclass(frozen=True)
class Resolution:
    """Where one address goes after aliases and sub-addressing."""

    mailboxes: tuple[str, ...] = ()  # local mailbox addresses "user@domain" (canonical, lower-case)
    external: tuple[str, ...] = ()  # addresses outside our domains (forwarded via the queue)
    unknown: bool = False  # no such local address

    @property
    def exists(self) -> bool:
        return not self.unknown


class Directory(Protocol):
    def is_local_domain(self, domain: str) -> bool: ...

    def resolve(self, address: str) -> Resolution:
        """Resolve a recipient in a local domain: users, aliases (recursively, loop-safe),
        user+tag sub-addressing, and postmaster@/abuse@ which always exist."""
        ...

    def recipient_exists(self, address: str) -> bool: ...

    def verify_password(self, username: str, password: str) -> bool:
        """Slow (argon2): call it off the event loop."""
        ...

    def scram_credentials(self, username: str) -> ScramCredentials | None: ...

    def may_send_from(self, username: str, address: str) -> bool:
        """True when the authenticated user owns ``address`` (its own address, a +tag of
        it, or an alias whose targets include the user)."""
        ...
