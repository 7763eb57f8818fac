"""A per-client counter for the public endpoints (subscribe): at most ``limit``
attempts per ``window`` seconds from one address (IPv6 counted by /64, which one
subscriber usually holds whole).

Fixed windows per client, kept in this process's memory (per HTTP worker: with N
workers a client gets up to N times the limit), bounded in size: when the table is
full, the entries whose window has passed are dropped, then the oldest.  The clock is
given, so tests need no sleeping.
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict

MAX_CLIENTS = 100_000


def client_key(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class RateLimiter:
    def __init__(self, limit: int, window: float, max_clients: int = MAX_CLIENTS) -> None:
        self.limit = limit
        self.window = window
        self.max_clients = max_clients
        self._table: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def hit(self, address: str, now: float) -> int:
        """Count an attempt; 0 if allowed, else the seconds until the next is."""
        key = client_key(address)
        start, count = self._table.get(key, (now, 0))
        if now - start >= self.window:
            start, count = now, 0
        if count >= self.limit:
            return max(1, math.ceil(start + self.window - now))
        self._table[key] = (start, count + 1)
        self._table.move_to_end(key)
        if len(self._table) > self.max_clients:
            self._prune(now)
        return 0

    def _prune(self, now: float) -> None:
        for key in [k for k, (s, _) in self._table.items() if now - s >= self.window]:
            del self._table[key]
        while len(self._table) > self.max_clients:
            self._table.popitem(last=False)
