"""Recently verified passwords, per worker process, so a mail client that opens
several connections at once (one per watched folder, as Thunderbird and iOS do)
costs one argon2id verification, not one per connection.

What is kept: for each user name, an HMAC-SHA-256 of the password under a key made
at random when the process starts (never written anywhere), and when it expires
(``ttl`` seconds after the verification, 5 minutes by default).  A login whose
password gives the same HMAC is accepted without hashing; anything else goes through
the AUTH guard as usual.  A password changed with ``mailyard user passwd`` is
therefore still accepted by a worker for at most ``ttl`` seconds, as with Dovecot's
``auth_cache_ttl``.  The lock-out counters are still consulted on a hit.

Logins that arrive together with the same user name and password before the first
verification is done (a client opening ten connections at once, or reconnecting
all of them after a network change) wait for that verification instead of each
queueing their own at the AUTH guard (whose queue is short: it would refuse them
``[UNAVAILABLE]``); on success they are cache hits, on failure each goes through
the guard itself, so failures are counted as before.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

__all__ = ["LoginCache"]

TTL = 300.0
MAX_ENTRIES = 10_000


class LoginCache:
    def __init__(self, ttl: float = TTL, max_entries: int = MAX_ENTRIES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self._key = secrets.token_bytes(32)
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._inflight: dict[tuple[str, bytes], asyncio.Future[None]] = {}

    def _mac(self, username: str, password: str) -> bytes:
        data = username.encode("utf-8", "surrogateescape") + b"\0" + \
            password.encode("utf-8", "surrogateescape")
        return hmac.new(self._key, data, hashlib.sha256).digest()

    def hit(self, username: str, password: str) -> bool:
        entry = self._entries.get(username)
        if entry is None:
            return False
        mac, expires = entry
        if self.clock() >= expires:
            del self._entries[username]
            return False
        return hmac.compare_digest(mac, self._mac(username, password))

    def remember(self, username: str, password: str) -> None:
        self._entries[username] = (self._mac(username, password), self.clock() + self.ttl)
        self._entries.move_to_end(username)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    async def wait(self, username: str, password: str) -> None:
        """Wait for a verification of this user name and password under way in this
        process (see :meth:`verifying`), if there is one."""
        pending = self._inflight.get((username, self._mac(username, password)))
        if pending is not None:
            with suppress(asyncio.CancelledError):
                await asyncio.shield(pending)

    @contextmanager
    def verifying(self, username: str, password: str) -> Iterator[None]:
        """Mark a verification of this user name and password as under way."""
        token = (username, self._mac(username, password))
        mine = token not in self._inflight
        if mine:
            self._inflight[token] = asyncio.get_running_loop().create_future()
        try:
            yield
        finally:
            if mine:
                self._inflight.pop(token).set_result(None)

    def forget(self, username: str) -> None:
        self._entries.pop(username, None)
