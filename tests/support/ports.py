"""Loopback ports for test and benchmark servers that bind after the port is chosen.

A port taken from the kernel with ``bind(0)`` and released comes from the ephemeral
range, which every outgoing connection on the machine also draws its source port from:
between the release and the server's own bind, a client socket (a test's, Postfix's, a
delivery attempt's) can take it, and the server fails with "Address already in use".
Ports here come from below the ephemeral range instead (read from
/proc/sys/net/ipv4/ip_local_port_range), handed out in turn from a random start so
one run does not hand the same port twice in a row, and each is checked free before
it is returned.
"""

from __future__ import annotations

import errno
import os
import random
import socket
import threading

_LOW = 20000  # above the registered services anyone is likely to run on a test host


def _ephemeral_start() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_HIGH = max(_LOW + 2000, _ephemeral_start())  # exclusive
_lock = threading.Lock()
_next = _LOW + random.Random(os.getpid()).randrange(_HIGH - _LOW)


def _is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now and outside the ephemeral range."""
    global _next
    with _lock:
        for _ in range(_HIGH - _LOW):
            port = _next
            _next = _LOW if _next + 1 >= _HIGH else _next + 1
            if _is_free(port):
                return port
    raise RuntimeError(f"no free TCP port on 127.0.0.1 in {_LOW}-{_HIGH - 1}")
