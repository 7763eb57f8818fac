"""API keys: their format, scopes, and the storage interface.

A key is ``myk_<id>_<secret>``: the id (12 hex digits) finds the stored row, the
secret (32 random bytes, URL-safe base64) proves possession.  Only a SHA-256 digest of
the whole key is stored.  A slow password hash (argon2id, as for user passwords) would
protect *guessable* secrets; a key has 256 random bits, so no dictionary exists and a
single fast hash is already beyond brute force, while checking a request costs
microseconds instead of 64 MiB and a fraction of a second.  The digest is unkeyed on
purpose: a key keeps working if ``server-secret`` is replaced.  Digests are compared
with :func:`hmac.compare_digest` (constant time).

Scopes say what a key may do; ``admin`` includes every other scope.  A key may also
be bound to a delivery pool (``[[delivery.pools]]``: the messages it sends leave
through that pool) and limited to some senders (addresses or domains its messages may
be from; none: any local domain).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any, Protocol

PREFIX = "myk"
_KEY = re.compile(r"myk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")


class Scope(enum.StrEnum):
    SEND = "send"  # transactional messages
    CONTACTS = "contacts"  # contacts, lists, memberships, suppression
    CAMPAIGNS = "campaigns"  # templates, campaigns, reports
    ADMIN = "admin"  # everything, and server administration


def parse_scopes(text: str) -> frozenset[Scope]:
    """'send,contacts' -> {SEND, CONTACTS}; raises ValueError naming a bad one."""
    out: set[Scope] = set()
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        try:
            out.add(Scope(item))
        except ValueError:
            allowed = ", ".join(s.value for s in Scope)
            raise ValueError(f"unknown scope {item!r} (allowed: {allowed})") from None
    if not out:
        raise ValueError("no scope given")
    return frozenset(out)


def allows(scopes: frozenset[Scope], needed: Scope) -> bool:
    return needed in scopes or Scope.ADMIN in scopes


@dataclass(frozen=True)
class NewSecret:
    key_id: str
    key: str  # shown once, never stored
    digest: str


def new_secret() -> NewSecret:
    key_id = secrets.token_hex(6)
    key = f"{PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
    return NewSecret(key_id, key, digest(key))


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_id_of(key: str) -> str | None:
    """The id part of a well-formed key, else None."""
    m = _KEY.fullmatch(key)
    return m.group(1) if m else None


def digest_matches(key: str, stored: str) -> bool:
    return hmac.compare_digest(digest(key), stored)


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    name: str
    scopes: frozenset[Scope]
    created: float
    last_used: float | None = None
    revoked: float | None = None
    pool: str = ""  # the delivery pool of the messages it sends; "": by sender
    senders: tuple[str, ...] = ()  # addresses or domains it may send as; (): any local

    def may_send_as(self, address: str) -> bool:
        if not self.senders:
            return True
        address = address.lower()
        domain = address.rpartition("@")[2]
        return any(s in (address, domain) for s in self.senders)

    @property
    def active(self) -> bool:
        return self.revoked is None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.key_id, "name": self.name,
                "scopes": sorted(s.value for s in self.scopes), "created": self.created,
                "last_used": self.last_used, "revoked": self.revoked, "pool": self.pool,
                "senders": list(self.senders)}


class KeyStore(Protocol):
    """Where keys are kept (SQLite today; another database later)."""

    def add(self, key: ApiKey, digest: str) -> None:
        """Raises KeyExists when the name is taken by an active key."""
        ...

    def get(self, key_id: str) -> tuple[ApiKey, str] | None:
        """The key and its stored digest."""
        ...

    def find(self, id_or_name: str) -> ApiKey | None: ...

    def list(self) -> list[ApiKey]: ...

    def revoke(self, key_id: str, when: float) -> bool:
        """False when there is no such active key."""
        ...

    def touch(self, key_id: str, when: float) -> None:
        """Record a use."""
        ...


class KeyExists(Exception):
    pass
