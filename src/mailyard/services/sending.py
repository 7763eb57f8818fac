"""A user's sending limits: show them with what the user has sent, and set its own.

``mailyard user limits`` and the HTTP API are adapters over :class:`SendingLimits`.
A user's own limit overrides the ``[sending] user_*`` default (0: unlimited; None:
back to the default); the usage is the user's messages and recipients in the last
hour and the last 24 hours (:mod:`mailyard.sending.window`).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, fields, replace
from typing import Any

from mailyard.config import Config
from mailyard.directory.api import DirectoryAdmin, DirectoryError
from mailyard.sending.limiter import SendLimiter, user_subject
from mailyard.sending.store import LimitOverrides, SendCounters, SqliteSendCounters, sending_db_path
from mailyard.sending.window import Resource, SendLimits, Usage, Window, oldest_minute, usage_of
from mailyard.services.errors import error, from_directory
from mailyard.store.quota import Keep

__all__ = ["LIMIT_NAMES", "SendingLimits", "UserSendLimits"]

LIMIT_NAMES = tuple(f.name for f in fields(SendLimits))


@dataclass(frozen=True)
class UserSendLimits:
    """Per limit: what the user sent in its window, the limit in effect (0:
    unlimited) and where it comes from ("user" or "default")."""

    address: str
    usage: Usage
    limits: SendLimits
    own: LimitOverrides

    def rows(self) -> list[tuple[str, int, int, str]]:
        out = []
        for name in LIMIT_NAMES:
            resource, _, window = name.partition("_per_")
            used = self.usage.count(Resource(resource), Window(window))
            source = "default" if getattr(self.own, name) is None else "user"
            out.append((name, used, getattr(self.limits, name), source))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"address": self.address,
                **{name: {"usage": used, "limit": limit, "source": source}
                   for name, used, limit, source in self.rows()}}


class SendingLimits:
    def __init__(self, directory: DirectoryAdmin, limiter: SendLimiter) -> None:
        self.directory = directory
        self.limiter = limiter

    @classmethod
    def for_config(cls, config: Config, directory: DirectoryAdmin,
                   store: SendCounters | None = None) -> SendingLimits:
        store = store or SqliteSendCounters(sending_db_path(config.data_path))
        return cls(directory, SendLimiter(store, config.sending))

    def _user(self, address: str) -> str:
        try:
            return self.directory.get_quota(address).address  # raises for no such user
        except DirectoryError as exc:
            raise from_directory(exc) from exc

    def show(self, address: str) -> UserSendLimits:
        user = self._user(address)
        try:
            limits, own = self.limiter.user_limits(user)
            now = self.limiter.clock()
            subject = user_subject(user)
            buckets = self.limiter.store.buckets([subject], oldest_minute(now))[subject]
        except (sqlite3.Error, OSError) as exc:
            raise error("storage_failed", f"cannot read the sending limits: {exc}") from exc
        return UserSendLimits(user, usage_of(buckets, now), limits, own)

    def set(self, address: str, **changes: int | None | Keep) -> UserSendLimits:
        """Set some of the user's own limits (keys of :data:`LIMIT_NAMES`): a count,
        0 for unlimited, None for the default again; ``Keep.KEEP`` leaves one."""
        for name, value in changes.items():
            if name not in LIMIT_NAMES:
                raise ValueError(f"no sending limit {name!r}")
            if isinstance(value, int) and value < 0:
                raise error("invalid_limit", f"{name} must not be negative")
        user = self._user(address)
        try:
            _limits, own = self.limiter.user_limits(user)
            own = replace(own, **{k: v for k, v in changes.items() if v is not Keep.KEEP})
            self.limiter.store.set_overrides(user_subject(user), own)
        except (sqlite3.Error, OSError) as exc:
            raise error("storage_failed", f"cannot write the sending limits: {exc}") from exc
        return self.show(user)
