"""The metrics endpoint defends itself: slow headers, oversized headers, malformed
requests and too many clients get an HTTP error and are disconnected."""

from __future__ import annotations

import asyncio
import logging

import pytest

from mailyard.daemon.metrics_http import MetricsEndpoint, is_loopback


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, 20))


async def serve(endpoint: MetricsEndpoint) -> tuple[asyncio.AbstractServer, int]:
    server = await endpoint.start("127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def exchange(port: int, *parts: bytes, pause: float = 0.0) -> bytes:
    """Send ``parts`` (``pause`` seconds apart) while reading the answer; what came
    back before the server closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received = bytearray()

    async def read() -> None:
        try:
            while chunk := await reader.read(65536):
                received.extend(chunk)
        except ConnectionError:
            pass
    reading = asyncio.create_task(read())
    try:
        for part in parts:
            if reading.done():
                break
            writer.write(part)
            await writer.drain()
            if pause:
                await asyncio.sleep(pause)
    except ConnectionError:
        pass
    await reading
    writer.close()
    return bytes(received)


def endpoint(**kwargs: object) -> MetricsEndpoint:
    return MetricsEndpoint(lambda: "mailyard_up 1\n", **kwargs)  # type: ignore[arg-type]


def test_get_metrics() -> None:
    async def main() -> bytes:
        server, port = await serve(endpoint())
        async with server:
            return await exchange(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    out = run(main())
    assert out.startswith(b"HTTP/1.0 200 OK\r\n") and out.endswith(b"\r\n\r\nmailyard_up 1\n")


def test_header_trickled_line_by_line_times_out() -> None:
    """The whole header must arrive within header_timeout, however often lines come."""
    async def main() -> bytes:
        server, port = await serve(endpoint(header_timeout=0.5))
        async with server:
            lines = [b"GET /metrics HTTP/1.1\r\n"] + [b"X-Slow: %d\r\n" % i for i in range(20)]
            return await exchange(port, *lines, pause=0.1)
    assert run(main()).startswith(b"HTTP/1.0 408 ")


@pytest.mark.parametrize("header", [
    b"GET /metrics HTTP/1.1\r\nX-Long: " + b"a" * 20000 + b"\r\n\r\n",  # one long line
    b"GET /metrics HTTP/1.1\r\n" + b"X-Many: aaaaaaaaaaaaaaaa\r\n" * 1000 + b"\r\n",
])
def test_oversized_header_gets_431(header: bytes) -> None:
    async def main() -> bytes:
        server, port = await serve(endpoint(max_header=4096))
        async with server:
            return await exchange(port, header)
    assert run(main()).startswith(b"HTTP/1.0 431 ")


@pytest.mark.parametrize("request_line", [b"GET\r\n\r\n", b"GET /metrics\r\n\r\n",
                                          b"\x16\x03\x01 junk\r\n\r\n"])
def test_malformed_request_gets_400(request_line: bytes) -> None:
    async def main() -> bytes:
        server, port = await serve(endpoint())
        async with server:
            return await exchange(port, request_line)
    assert run(main()).startswith(b"HTTP/1.0 400 ")


def test_too_many_connections_get_503() -> None:
    async def main() -> tuple[bytes, bytes]:
        server, port = await serve(endpoint(max_connections=2, header_timeout=5))
        async with server:
            idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
            await asyncio.sleep(0.1)
            refused = await exchange(port, b"GET /metrics HTTP/1.1\r\n\r\n")
            for _, writer in idle:
                writer.close()
            await asyncio.sleep(0.1)
            served = await exchange(port, b"GET /metrics HTTP/1.1\r\n\r\n")
            return refused, served
    refused, served = run(main())
    assert refused.startswith(b"HTTP/1.0 503 ")
    assert served.startswith(b"HTTP/1.0 200 ")


def test_warning_when_listening_beyond_loopback(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mailyard.metrics")

    async def main() -> None:
        server = await endpoint().start("0.0.0.0", 0)
        server.close()
        await server.wait_closed()
        server = await endpoint().start("127.0.0.1", 0)
        server.close()
        await server.wait_closed()
    run(main())
    [record] = caplog.records
    assert record.fields["key"] == "metrics.listen"  # type: ignore[attr-defined]
    assert "no authentication" in record.getMessage()


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.1")
    assert not is_loopback("metrics.example.test")
