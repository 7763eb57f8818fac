"""API keys: create (the key is shown once), list with last use, revoke, and check a
bearer key for the HTTP service.  ``mailyard apikey`` and the API call these."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from mailyard.apikeys.api import (
    ApiKey,
    KeyExists,
    KeyStore,
    digest_matches,
    key_id_of,
    new_secret,
    parse_scopes,
)
from mailyard.services.errors import error

__all__ = ["ApiKeys", "CreatedKey"]

_SENDER = re.compile(r"(?:[^\s@,]{1,64}@)?[a-z0-9](?:[a-z0-9.-]{0,252}[a-z0-9])?")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}")
TOUCH_INTERVAL = 60.0  # seconds between two writes of a key's last use


@dataclass(frozen=True)
class CreatedKey:
    key: ApiKey
    secret: str  # the whole key; the only time it is available

    def to_dict(self) -> dict[str, Any]:
        return {**self.key.to_dict(), "key": self.secret}


class ApiKeys:
    def __init__(self, store: KeyStore, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    def create(self, name: str, scopes: str, *, pool: str = "",
               senders: Sequence[str] = (), pools: Collection[str] | None = None
               ) -> CreatedKey:
        """A new key; ``pool`` must be one of ``pools`` (the configured pool names) when
        they are given; ``senders`` are addresses or domains the key may send as."""
        if pools is not None and pool and pool not in pools:
            known = ", ".join(sorted(pools)) or "none configured"
            raise error("no_such_pool", f"no delivery pool {pool!r} (pools: {known})")
        allowed = []
        for sender in senders:
            sender = sender.strip().lower().rstrip(".")
            if not _SENDER.fullmatch(sender):
                raise error("invalid_sender", f"not an address or domain: {sender!r}")
            allowed.append(sender)
        if not _NAME.fullmatch(name):
            raise error("invalid_name", f"bad key name {name!r}: 1-64 letters, digits, "
                                        "spaces and . _ @ -, starting with a letter or digit")
        try:
            scope_set = parse_scopes(scopes)
        except ValueError as exc:
            raise error("invalid_scope", str(exc)) from None
        made = new_secret()
        key = ApiKey(made.key_id, name, scope_set, self.clock(), pool=pool,
                     senders=tuple(allowed))
        try:
            self.store.add(key, made.digest)
        except KeyExists:
            raise error("apikey_exists", f"an active key is named {name!r}") from None
        return CreatedKey(key, made.key)

    def list(self) -> list[ApiKey]:
        return self.store.list()

    def revoke(self, id_or_name: str) -> ApiKey:
        key = self.store.find(id_or_name)
        if key is None or not key.active:
            raise error("no_such_apikey", f"no active API key {id_or_name!r}")
        self.store.revoke(key.key_id, self.clock())
        found = self.store.find(key.key_id)
        assert found is not None
        return found

    def authenticate(self, presented: str) -> ApiKey | None:
        """The active key ``presented`` is, else None (same answer for a malformed,
        unknown, wrong or revoked key)."""
        key_id = key_id_of(presented)
        if key_id is None:
            return None
        found = self.store.get(key_id)
        if found is None:
            return None
        key, stored = found
        if not digest_matches(presented, stored) or not key.active:
            return None
        now = self.clock()
        if key.last_used is None or now - key.last_used >= TOUCH_INTERVAL:
            self.store.touch(key.key_id, now)
        return key
