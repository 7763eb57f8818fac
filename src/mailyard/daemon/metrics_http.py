"""The metrics endpoint: ``GET /metrics`` over HTTP/1.0, served by the supervisor.

It has no authentication, so it belongs on loopback or a private network (a warning
is logged when ``metrics.listen`` is anything else).  It defends itself like the SMTP
listeners do: at most ``max_connections`` clients at once (more get ``503``), the
whole request header within ``header_timeout`` seconds (else ``408``), and at most
``max_header`` octets of it (else ``431``); a malformed request line gets ``400``.
Every answer closes the connection.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable

from mailyard.obs import log_event

__all__ = ["MetricsEndpoint", "is_loopback"]

log = logging.getLogger("mailyard.metrics")

MAX_CONNECTIONS = 8
HEADER_TIMEOUT = 5.0
MAX_HEADER = 8192
WRITE_TIMEOUT = 10.0

_STATUS = {
    200: b"200 OK", 400: b"400 Bad Request", 404: b"404 Not Found",
    408: b"408 Request Timeout", 431: b"431 Request Header Fields Too Large",
    503: b"503 Service Unavailable",
}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RequestRefused(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


def response(status: int, body: bytes, content_type: bytes = b"text/plain") -> bytes:
    return (b"HTTP/1.0 " + _STATUS[status] + b"\r\nContent-Type: " + content_type
            + b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)


class MetricsEndpoint:
    def __init__(self, render: Callable[[], str], *, max_connections: int = MAX_CONNECTIONS,
                 header_timeout: float = HEADER_TIMEOUT, max_header: int = MAX_HEADER) -> None:
        self.render = render
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.max_header = max_header
        self.active = 0

    async def start(self, host: str, port: int) -> asyncio.AbstractServer:
        if not is_loopback(host):
            log_event(log, "metrics endpoint listens beyond loopback; it has no "
                      "authentication", level=logging.WARNING, key="metrics.listen",
                      address=f"{host}:{port}")
        # limit: a header line longer than max_header fails readline() at once.
        return await asyncio.start_server(self.handle, host, port, limit=self.max_header)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.active >= self.max_connections:
            await self._send(writer, response(503, b"busy\n"))
            return
        self.active += 1
        try:
            try:
                request = await asyncio.wait_for(self._read_header(reader), self.header_timeout)
                out = self._answer(request)
            except TimeoutError:
                out = response(408, b"request header too slow\n")
            except RequestRefused as refused:
                out = response(refused.status, b"bad request\n")
            except (ConnectionError, asyncio.IncompleteReadError):
                out = b""
            await self._send(writer, out)
        finally:
            self.active -= 1

    async def _read_header(self, reader: asyncio.StreamReader) -> bytes:
        """The request line; the rest of the header is read and ignored."""
        size = 0
        request = b""
        while True:
            try:
                line = await reader.readline()
            except (ValueError, asyncio.LimitOverrunError):  # a line over the limit
                raise RequestRefused(431) from None
            if not line:
                raise asyncio.IncompleteReadError(b"", None)
            size += len(line)
            if size > self.max_header:
                raise RequestRefused(431)
            if not request:
                request = line
                continue
            if line in (b"\r\n", b"\n"):
                return request

    def _answer(self, request: bytes) -> bytes:
        parts = request.split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            raise RequestRefused(400)
        if parts[0] == b"GET" and parts[1] == b"/metrics":
            return response(200, self.render().encode(), b"text/plain; version=0.0.4")
        return response(404, b"not found\n")

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, data: bytes) -> None:
        try:
            if data:
                writer.write(data)
                await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
