"""What the rest of Mailyard asks of the user directory (domains, users, aliases).

smtpd asks it whether a recipient exists and who may send as whom; the local delivery
agent asks it where an address goes.  The embedded implementation is SQLite
(``mailyard.directory.sqlite``); a PostgreSQL one comes later behind the same protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from mailyard.sasl.scram import ScramCredentials as ScramCredentials  # stored by the directory
from mailyard.store.quota import Keep, QuotaLimits


class DirectoryError(Exception):
    """A directory operation failed (bad input or storage trouble), with a clear message
    and a stable ``code`` ("user_exists", "no_such_alias", ...) that
    :mod:`mailyard.services.errors` turns into a typed service error."""

    def __init__(self, message: str, code: str = "directory_error") -> None:
        super().__init__(message)
        self.code = code


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

    def primary_domain(self) -> str | None:
        """The domain ``<postmaster>`` without a domain belongs to (RFC 5321 4.5.1): the
        first of ``local_domains`` in the configuration, else the first domain added to
        the directory; None when there is no local domain."""
        ...

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

    def quota_limits(self, address: str) -> QuotaLimits:
        """The quota of the mailbox ``address`` (a canonical user address): the user's
        own limits, else the ``[mailbox]`` defaults; unlimited for an unknown user."""
        ...

    def refresh(self) -> None:
        """Make changes committed elsewhere (by the CLI, another process) visible to
        the lookups that follow.  smtpd calls it once per mail transaction (at MAIL and
        VRFY), so an implementation may answer the lookups in between from a cache."""
        ...


# --- administration (the ``mailyard user/alias/domain`` commands) -------------------


@dataclass(frozen=True)
class DomainRecord:
    name: str
    in_config: bool = False  # listed in config.local_domains
    in_database: bool = False  # added with ``mailyard domain add``

    @property
    def source(self) -> str:
        return "+".join(s for s, on in (("config", self.in_config),
                                         ("database", self.in_database)) if on)


@dataclass(frozen=True)
class UserRecord:
    address: str
    created: float = 0.0
    scram: bool = False  # SCRAM-SHA-256 credentials are stored


@dataclass(frozen=True)
class QuotaRecord:
    """A user's quota settings and the limits that follow from them."""

    address: str
    storage_bytes: int | None  # the user's own STORAGE limit (0: unlimited), None: default
    messages: int | None  # the user's own MESSAGE limit (0: unlimited), None: default
    limits: QuotaLimits  # in effect: the user's own, else the configured default


@dataclass(frozen=True)
class AliasRecord:
    address: str  # "name@domain", or "@domain" for a catch-all
    targets: tuple[str, ...] = field(default_factory=tuple)
    created: float = 0.0


class DirectoryAdmin(Protocol):
    """Changes to the directory.  Every method raises DirectoryError with a message fit
    for the operator (bad address, user exists, domain not local, ...)."""

    def add_domain(self, domain: str) -> None: ...

    def delete_domain(self, domain: str) -> None: ...

    def list_domains(self) -> list[DomainRecord]: ...

    def add_user(self, address: str, password: str) -> UserRecord: ...

    def set_password(self, address: str, password: str) -> None: ...

    def delete_user(self, address: str) -> None: ...

    def list_users(self, domain: str | None = None) -> list[UserRecord]: ...

    def get_quota(self, address: str) -> QuotaRecord: ...

    def set_quota(self, address: str, *, storage_bytes: int | None | Keep = Keep.KEEP,
                  messages: int | None | Keep = Keep.KEEP) -> QuotaRecord:
        """Set the user's own limits (0: unlimited; None: back to the default);
        ``KEEP`` leaves one as it is."""
        ...

    def add_alias(self, address: str, targets: list[str] | tuple[str, ...]) -> AliasRecord: ...

    def delete_alias(self, address: str, targets: list[str] | tuple[str, ...] = ()) -> None: ...

    def list_aliases(self, domain: str | None = None) -> list[AliasRecord]: ...
