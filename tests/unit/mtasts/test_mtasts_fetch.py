"""The policy fetch (RFC 8461 3.3) against HTTPS servers on 127.0.0.1 made in the test:
certificate checked, only 200 and text/plain, no redirects, 64 KiB at most, a time
limit."""

from __future__ import annotations

import asyncio
import ssl

import pytest

from mailyard.dns import StaticResolver
from mailyard.mtasts.fetch import Fetched, FetchFailed, fetch_policy
from mailyard.tls import server_context
from tests.support.certs import make_ca

pytestmark = pytest.mark.timeout(30)

POLICY = b"version: STSv1\r\nmode: enforce\r\nmx: mx.dest.test\r\nmax_age: 86400\r\n"
RESOLVER = StaticResolver({"mta-sts.dest.test": {"A": ["127.0.0.1"]}})


def answer(status: str = "200 OK", content_type: str = "text/plain", body: bytes = POLICY,
           extra: str = "") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def fetch(tmp_path, reply: bytes | None, name: str = "mta-sts.dest.test",
          timeout: float = 5.0) -> tuple[Fetched | FetchFailed, list[bytes]]:
    """Serve ``reply`` (None: never answer) with a certificate for ``name``."""
    ca = make_ca(tmp_path)
    context = server_context(*ca.issue(tmp_path, name))
    requests: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            requests.append(await reader.readuntil(b"\r\n\r\n"))
            if reply is None:
                await asyncio.sleep(60)
            writer.write(reply or b"")
            await writer.drain()
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def go() -> Fetched | FetchFailed:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
        port = server.sockets[0].getsockname()[1]
        try:
            return await fetch_policy("dest.test", RESOLVER, timeout=timeout,
                                      ca_file=str(ca.cert_file), port=port)
        finally:
            server.close()
    return asyncio.run(go()), requests


def test_policy_is_fetched_with_one_get(tmp_path) -> None:
    result, requests = fetch(tmp_path, answer(content_type="text/plain; charset=utf-8"))
    assert result == Fetched(POLICY.decode())
    assert requests[0].startswith(b"GET /.well-known/mta-sts.txt HTTP/1.0\r\n")
    assert b"\r\nHost: mta-sts.dest.test\r\n" in requests[0]


def test_rfc8461_3_3_redirects_are_not_followed(tmp_path) -> None:
    result, _ = fetch(tmp_path, answer("301 Moved Permanently", body=b"",
                                       extra="Location: https://evil.test/\r\n"))
    assert isinstance(result, FetchFailed) and "301" in result.reason


def test_rfc8461_3_3_only_text_plain(tmp_path) -> None:
    result, _ = fetch(tmp_path, answer(content_type="text/html"))
    assert isinstance(result, FetchFailed) and "text/html" in result.reason


def test_rfc8461_3_3_body_over_64_kib_is_refused(tmp_path) -> None:
    result, _ = fetch(tmp_path, answer(body=POLICY + b"x" * 65536))
    assert isinstance(result, FetchFailed) and "larger" in result.reason


def test_rfc8461_3_3_certificate_must_name_the_policy_host(tmp_path) -> None:
    result, _ = fetch(tmp_path, answer(), name="other.test")
    assert isinstance(result, FetchFailed) and "certificate" in result.reason


def test_a_server_that_does_not_answer_hits_the_time_limit(tmp_path) -> None:
    result, _ = fetch(tmp_path, None, timeout=0.5)
    assert isinstance(result, FetchFailed) and "no answer within" in result.reason


def test_garbage_instead_of_http(tmp_path) -> None:
    result, _ = fetch(tmp_path, b"SSH-2.0-OpenSSH\r\n\r\n")
    assert isinstance(result, FetchFailed) and "not an HTTP answer" in result.reason


def test_policy_host_without_address(tmp_path) -> None:
    result = asyncio.run(fetch_policy("nowhere.test", StaticResolver({}), timeout=2.0))
    assert isinstance(result, FetchFailed) and "no address" in result.reason
