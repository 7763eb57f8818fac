"""Binding the listening sockets named in ``[listen]``.

The supervisor binds every socket once, before it starts the workers, and hands the
file descriptors down; so privileged ports can be bound before privileges are dropped
and every worker accepts on the same sockets.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

from mailyard.config import Config, parse_hostport

KINDS = ("smtp", "submission", "submissions", "pop3", "pop3s", "imap", "imaps", "http",
         "https")
HTTP_KINDS = ("http", "https")  # served by the HTTP workers, the rest by the SMTP workers


class ListenError(Exception):
    pass


@dataclass
class Listener:
    kind: str  # one of KINDS
    address: str  # as configured
    sock: socket.socket

    @property
    def bound(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _bind_error(config: Config, kind: str, address: str, exc: OSError) -> str:
    where = config.source or "the configuration"
    line = f"listen.{kind}: cannot bind {address}: {exc.strerror}"
    if exc.errno == errno.EADDRINUSE:
        line += (f" (another program, or another mailyard, uses that port: stop it or "
                 f"change listen.{kind} in {where})")
    elif exc.errno == errno.EACCES:
        line += (f" (ports below 1024 need root or CAP_NET_BIND_SERVICE: change "
                 f"listen.{kind} in {where}, or see docs/deployment.md)")
    elif exc.errno == errno.EADDRNOTAVAIL:
        line += f" (no interface has that address: change listen.{kind} in {where})"
    return line


def bind_listeners(config: Config, backlog: int = 1024) -> list[Listener]:
    out: list[Listener] = []
    try:
        for kind in KINDS:
            for address in getattr(config.listen, kind):
                host, port = parse_hostport(address)
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                sock = socket.socket(family, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    sock.bind((host, port))
                except OSError as exc:
                    sock.close()
                    raise ListenError(_bind_error(config, kind, address, exc)) from None
                sock.listen(backlog)
                sock.setblocking(False)
                out.append(Listener(kind, address, sock))
    except ListenError:
        for listener in out:
            listener.sock.close()
        raise
    return out
