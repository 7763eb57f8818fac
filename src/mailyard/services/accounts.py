"""Domains, users and aliases: what an operator does to the directory, in one place.

``mailyard domain|user|alias`` and the HTTP API are adapters over :class:`Accounts`:
they read their input, call one method, and render the result or the error.  The
methods print nothing; they return frozen dataclasses (``to_dict()`` is the JSON shape
both adapters publish) and raise :class:`~mailyard.services.errors.ServiceError`
subclasses with a stable code.

Some operations are more than one step, and belong here rather than in an adapter:

* adding a user writes its directory row *and* creates its Maildir with its index
  and the default folders (Drafts, Sent, Junk, Trash, Archive with their RFC 6154
  SPECIAL-USE attributes; a mailbox that cannot be made yet is reported, not fatal:
  the first delivery creates it);
* a user's quota report joins the directory's limits with the usage read from the
  mailbox index;
* deleting a user keeps its mailbox on disk and says where it is;
* an alias on a user's own address would divert all of the user's mail away from its
  mailbox: refused, unless forced, in which case the user's address becomes the first
  target, so a copy stays in the mailbox.

Password rules (not empty, at least ``auth.min_password_length`` characters) are
checked here, before the directory is touched; reading the password is the adapter's
business.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailyard.config import Config
from mailyard.directory.addresses import address_key, domain_key, split_key
from mailyard.directory.api import (
    AliasRecord,
    DirectoryAdmin,
    DirectoryError,
    DomainRecord,
    QuotaRecord,
    UserRecord,
)
from mailyard.services.errors import error, from_directory
from mailyard.store.api import MailboxNameError
from mailyard.store.index import MailboxIndex
from mailyard.store.maildir import Maildir, mailbox_path
from mailyard.store.quota import Keep, QuotaUsage
from mailyard.store.usage import mailbox_usage

__all__ = [
    "Accounts", "Alias", "AliasAdded", "Domain", "NewUser", "PasswordRules", "User",
    "UserDeleted", "UserQuota",
]


# --- what the operations return ------------------------------------------------------
@dataclass(frozen=True)
class Domain:
    name: str
    in_config: bool = False  # listed in local_domains in the configuration
    in_database: bool = False  # added with ``domain add`` (or the API)

    @classmethod
    def from_record(cls, record: DomainRecord) -> Domain:
        return cls(record.name, record.in_config, record.in_database)

    @property
    def source(self) -> str:
        """"config", "database" or "config+database"."""
        return "+".join(s for s, on in (("config", self.in_config),
                                         ("database", self.in_database)) if on)

    def to_dict(self) -> dict[str, Any]:
        return {"domain": self.name, "config": self.in_config, "database": self.in_database}


@dataclass(frozen=True)
class User:
    address: str
    created: float = 0.0
    scram: bool = False  # SCRAM-SHA-256 keys are stored for its password

    @classmethod
    def from_record(cls, record: UserRecord) -> User:
        return cls(record.address, record.created, record.scram)

    def to_dict(self) -> dict[str, Any]:
        return {"address": self.address, "created": self.created, "scram": self.scram}


@dataclass(frozen=True)
class Alias:
    address: str  # "name@domain", or "@domain" for a catch-all
    targets: tuple[str, ...] = ()
    created: float = 0.0

    @classmethod
    def from_record(cls, record: AliasRecord) -> Alias:
        return cls(record.address, tuple(record.targets), record.created)

    def to_dict(self) -> dict[str, Any]:
        return {"address": self.address, "targets": list(self.targets),
                "created": self.created}


@dataclass(frozen=True)
class NewUser:
    user: User
    mailbox: Path | None  # None when it could not be created (see mailbox_error)
    mailbox_error: str | None = None
    scram_refused: bool = False  # SCRAM is on, but RFC 4013 SASLprep refuses the password

    def to_dict(self) -> dict[str, Any]:
        return {**self.user.to_dict(),
                "mailbox": str(self.mailbox) if self.mailbox else None,
                "mailbox_error": self.mailbox_error}


@dataclass(frozen=True)
class UserDeleted:
    address: str
    kept_mailbox: Path | None  # the mailbox left on disk, when there is one

    def to_dict(self) -> dict[str, Any]:
        return {"address": self.address,
                "kept_mailbox": str(self.kept_mailbox) if self.kept_mailbox else None}


@dataclass(frozen=True)
class AliasAdded:
    alias: Alias
    copy_kept_for: str | None = None  # the user whose own address the alias is (forced)

    def to_dict(self) -> dict[str, Any]:
        return {**self.alias.to_dict(), "copy_kept_for": self.copy_kept_for}


@dataclass(frozen=True)
class UserQuota:
    """A user's quota: per resource (RFC 9208 STORAGE in octets, MESSAGE), what is
    used, the limit in effect (None: unlimited) and where it comes from."""

    address: str
    usage: QuotaUsage
    storage_limit: int | None
    storage_source: str  # "user" (set for this user) or "default" ([mailbox] quota_storage)
    messages_limit: int | None
    messages_source: str

    @classmethod
    def of(cls, record: QuotaRecord, usage: QuotaUsage) -> UserQuota:
        def source(own: int | None) -> str:
            return "default" if own is None else "user"

        return cls(record.address, usage, record.limits.storage_bytes,
                   source(record.storage_bytes), record.limits.messages,
                   source(record.messages))

    def to_dict(self) -> dict[str, Any]:
        return {"address": self.address,
                "storage": {"usage": self.usage.storage_bytes, "limit": self.storage_limit,
                            "source": self.storage_source},
                "messages": {"usage": self.usage.messages, "limit": self.messages_limit,
                             "source": self.messages_source}}


@dataclass(frozen=True)
class PasswordRules:
    min_length: int = 0

    def check(self, password: str) -> None:
        if not password:
            raise error("password_empty", "the password is empty")
        if len(password) < self.min_length:
            raise error("password_too_short",
                        f"the password is too short: {len(password)} characters, at least "
                        f"{self.min_length} needed (auth.min_password_length)")


# --- the operations ------------------------------------------------------------------
@contextlib.contextmanager
def _directory_errors() -> Iterator[None]:
    try:
        yield
    except DirectoryError as exc:
        raise from_directory(exc) from exc


class Accounts:
    """The account operations over one directory and one mail root."""

    def __init__(self, directory: DirectoryAdmin, *, mail_root: Path, hostname: str,
                 passwords: PasswordRules | None = None, scram: bool = True) -> None:
        self.directory = directory
        self.mail_root = mail_root
        self.hostname = hostname
        self.passwords = passwords or PasswordRules()
        self.scram = scram  # SCRAM keys are made for new passwords

    @classmethod
    def for_config(cls, config: Config, directory: DirectoryAdmin) -> Accounts:
        return cls(directory, mail_root=config.data_path / "mail", hostname=config.hostname,
                   passwords=PasswordRules(config.auth.min_password_length),
                   scram=config.auth.scram_iterations > 0)

    # --- domains -------------------------------------------------------------------
    def add_domain(self, name: str) -> Domain:
        with _directory_errors():
            self.directory.add_domain(name)
        return Domain(domain_key(name), in_database=True)

    def delete_domain(self, name: str) -> str:
        """Refused while the domain has users or aliases; returns its name."""
        with _directory_errors():
            self.directory.delete_domain(name)
        return domain_key(name)

    def list_domains(self) -> list[Domain]:
        with _directory_errors():
            return [Domain.from_record(d) for d in self.directory.list_domains()]

    # --- users ---------------------------------------------------------------------
    def add_user(self, address: str, password: str) -> NewUser:
        """The directory row, then the Maildir."""
        self.passwords.check(password)
        with _directory_errors():
            record = self.directory.add_user(address, password)
        user = User.from_record(record)
        mailbox: Path | None = None
        problem: str | None = None
        try:
            mailbox = mailbox_path(self.mail_root, user.address)
            inbox = Maildir(mailbox, self.hostname)
            inbox.create()
            MailboxIndex(inbox).close()  # made with the default folders
        except (OSError, sqlite3.Error, MailboxNameError) as exc:
            mailbox, problem = None, str(exc)
        return NewUser(user, mailbox, problem, scram_refused=self.scram and not user.scram)

    def change_password(self, address: str, password: str) -> str:
        """Returns the user's address."""
        self.passwords.check(password)
        with _directory_errors():
            self.directory.set_password(address, password)
        return address.strip().lower()

    def delete_user(self, address: str) -> UserDeleted:
        """The user goes; its mailbox stays on disk (``kept_mailbox``)."""
        with _directory_errors():
            self.directory.delete_user(address)
        key = address.strip().lower()
        try:
            path = mailbox_path(self.mail_root, key)
        except MailboxNameError:
            return UserDeleted(key, None)
        return UserDeleted(key, path if path.exists() else None)

    def list_users(self, domain: str | None = None) -> list[User]:
        with _directory_errors():
            return [User.from_record(u) for u in self.directory.list_users(domain)]

    # --- quota ---------------------------------------------------------------------
    def quota(self, address: str) -> UserQuota:
        """The user's limits and what its mailbox uses now (the INBOX is indexed
        first if new mail waits in it)."""
        with _directory_errors():
            record = self.directory.get_quota(address)
        return UserQuota.of(record, self._usage(record.address))

    def set_quota(self, address: str, *, storage_bytes: int | None | Keep = Keep.KEEP,
                  messages: int | None | Keep = Keep.KEEP) -> UserQuota:
        """Set the user's own limits: octets of STORAGE and a MESSAGE count, 0 for
        unlimited, None to follow the ``[mailbox]`` default again, ``KEEP`` (the
        default) to leave one as it is."""
        for name, value in (("storage", storage_bytes), ("messages", messages)):
            if isinstance(value, int) and value < 0:
                raise error("invalid_quota", f"the {name} limit must not be negative")
        with _directory_errors():
            record = self.directory.set_quota(address, storage_bytes=storage_bytes,
                                              messages=messages)
        return UserQuota.of(record, self._usage(record.address))

    def _usage(self, address: str) -> QuotaUsage:
        try:
            inbox = Maildir(mailbox_path(self.mail_root, address), self.hostname)
        except MailboxNameError:
            return QuotaUsage()
        try:
            return mailbox_usage(inbox)
        except (OSError, sqlite3.Error) as exc:
            raise error("mailbox_error", f"cannot read the mailbox of {address}: {exc}") \
                from exc

    # --- aliases -------------------------------------------------------------------
    def add_alias(self, address: str, targets: Sequence[str], *,
                  force: bool = False) -> AliasAdded:
        """Create the alias or add targets to it.  On a user's own address, refused
        (``alias_diverts_user``) unless ``force``: then the user keeps a copy."""
        wanted = list(targets)
        with _directory_errors():
            user = self._diverted_user(address, wanted)
            if user is not None:
                if not force:
                    raise error("alias_diverts_user", f"{user} is a user: an alias would "
                                "divert all of its mail away from its mailbox")
                wanted.insert(0, user)
            alias = self.directory.add_alias(address, wanted)
        return AliasAdded(Alias.from_record(alias), user)

    def delete_alias(self, address: str, targets: Sequence[str] = ()) -> str:
        """Delete the alias, or only ``targets`` of it; returns the alias address."""
        with _directory_errors():
            self.directory.delete_alias(address, tuple(targets))
        return address.strip().lower()

    def list_aliases(self, domain: str | None = None) -> list[Alias]:
        with _directory_errors():
            return [Alias.from_record(a) for a in self.directory.list_aliases(domain)]

    def _diverted_user(self, address: str, targets: list[str]) -> str | None:
        """The user ADDRESS names, when the alias (with ``targets`` added) would take
        all of the user's mail away from its mailbox; None otherwise."""
        if address.strip().startswith("@"):
            return None
        key = address_key(address)
        domain = split_key(key)[1]
        if not any(u.address == key for u in self.directory.list_users(domain)):
            return None
        existing = next((a.targets for a in self.directory.list_aliases(domain)
                         if a.address == key), ())
        if any(address_key(t) == key for t in [*existing, *targets]):
            return None  # the alias already keeps a copy in the user's mailbox
        return key
