"""Serving the application with uvicorn on sockets the supervisor bound.

One uvicorn server per kind of listener (plain ``http``, TLS ``https``: a server has
one TLS setting), all in the worker's event loop.  Uvicorn's own signal handling is
left out: the worker decides when to stop and sets ``should_exit`` on each, which lets
requests in flight finish.  Uvicorn's logging setup and access log are off (the
worker's logging is Mailyard's, and a request line is not worth a log line each);
``X-Forwarded-For`` is not trusted, so the per-address limits count the real peer.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Iterator
from typing import Any

import uvicorn


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def install_signal_handlers(self) -> None:  # uvicorn before 0.29
        return


class HttpServers:
    def __init__(self, app: Any, listeners: list[tuple[str, socket.socket]],
                 tls: ssl.SSLContext | None) -> None:
        self.servers: list[tuple[_Server, list[socket.socket]]] = []
        for kind in ("http", "https"):
            socks = [s for k, s in listeners if k == kind]
            if not socks:
                continue
            config = uvicorn.Config(app, lifespan="off", log_config=None, access_log=False,
                                    server_header=False, proxy_headers=False,
                                    timeout_keep_alive=15, timeout_graceful_shutdown=10)
            config.load()
            if kind == "https":
                config.ssl = tls
            self.servers.append((_Server(config), socks))

    async def serve(self) -> None:
        import asyncio

        await asyncio.gather(*(server.serve(sockets=socks) for server, socks in self.servers))

    def stop(self) -> None:
        for server, _ in self.servers:
            server.should_exit = True
