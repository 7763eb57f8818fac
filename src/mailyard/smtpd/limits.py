"""Connection caps: how many SMTP connections in all, and from one client address.

Counting is per worker process for now (each worker enforces the configured caps on
its own share of connections); the class is the one place that would change to share
the counts between processes.
"""

from __future__ import annotations

from mailyard.proto.smtp.replies import REPLY_SERVER_BUSY, REPLY_TOO_MANY_CONNECTIONS, Reply


class ConnectionLimiter:
    def __init__(self, max_total: int, max_per_ip: int) -> None:
        self.max_total = max_total
        self.max_per_ip = max_per_ip
        self.total = 0
        self._per_ip: dict[str, int] = {}

    def acquire(self, ip: str) -> Reply | None:
        """Count a new connection, or return the 421 that refuses it (not counted)."""
        if self.total >= self.max_total:
            return REPLY_SERVER_BUSY
        count = self._per_ip.get(ip, 0)
        if count >= self.max_per_ip:
            return REPLY_TOO_MANY_CONNECTIONS
        self._per_ip[ip] = count + 1
        self.total += 1
        return None

    def release(self, ip: str) -> None:
        count = self._per_ip.get(ip, 0)
        if count <= 0:
            return
        self.total -= 1
        if count == 1:
            del self._per_ip[ip]
        else:
            self._per_ip[ip] = count - 1

    def count(self, ip: str) -> int:
        return self._per_ip.get(ip, 0)
