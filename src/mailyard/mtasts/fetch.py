"""Fetching an MTA-STS policy: ``https://mta-sts.<domain>/.well-known/mta-sts.txt``.

RFC 8461 3.3: HTTPS with a certificate valid for ``mta-sts.<domain>``, no redirects,
a 200 answer of type ``text/plain``, a body of at most 64 KiB, and a time limit.

The client is asyncio streams plus the standard library's HTTP header parser
(:func:`http.client.parse_headers`), not an HTTP library, on purpose:

* the policy host's name is resolved through Mailyard's own :class:`Resolver` (the
  same cache, the same configured servers, and in tests the same loopback DNS server
  as MX routing), which general HTTP clients do not let one plug in cleanly;
* the limits are exact and few: one deadline for the whole fetch (connect, TLS,
  request, answer), at most 64 KiB of body read from the socket, never more;
* there is nothing else to need: one GET over HTTP/1.0 (so no chunked answer, no
  keep-alive), redirects refused by construction.
"""

from __future__ import annotations

import asyncio
import functools
import http.client
import io
import ssl
from dataclasses import dataclass

from mailyard.dns.api import DnsError, Resolver
from mailyard.mtasts.policy import MAX_POLICY_SIZE

__all__ = ["FetchFailed", "Fetched", "fetch_policy", "policy_url"]

_MAX_HEADER_SIZE = 16_384
_PATH = "/.well-known/mta-sts.txt"


@dataclass(frozen=True)
class Fetched:
    text: str


@dataclass(frozen=True)
class FetchFailed:
    reason: str


def policy_url(domain: str) -> str:
    return f"https://mta-sts.{domain}{_PATH}"


@functools.lru_cache(maxsize=8)
def _context(ca_file: str) -> ssl.SSLContext:
    if ca_file:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    else:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


async def fetch_policy(domain: str, resolver: Resolver, *, timeout: float = 10.0,
                       ca_file: str = "", port: int = 443) -> Fetched | FetchFailed:
    """The policy text of ``domain``, or why it could not be had."""
    host = f"mta-sts.{domain}"
    try:
        async with asyncio.timeout(timeout):
            return await _fetch(host, resolver, ca_file, port)
    except TimeoutError:
        return FetchFailed(f"{host}: no answer within {timeout:g}s")


async def _fetch(host: str, resolver: Resolver, ca_file: str,
                 port: int) -> Fetched | FetchFailed:
    try:
        addresses = await resolver.addresses(host)
    except DnsError as exc:
        return FetchFailed(f"{host}: {exc.reason}")
    if not addresses:
        return FetchFailed(f"{host} has no address")
    errors = []
    for address in addresses:
        try:
            reader, writer = await asyncio.open_connection(
                address, port, ssl=_context(ca_file), server_hostname=host,
                limit=_MAX_HEADER_SIZE)
        except ssl.SSLCertVerificationError as exc:
            return FetchFailed(f"{host}: certificate not valid: {exc.verify_message}")
        except (OSError, ssl.SSLError) as exc:
            errors.append(f"{address}: {exc.strerror or exc}")
            continue
        try:
            return await _exchange(host, reader, writer)
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError) as exc:
            return FetchFailed(f"{host}: {type(exc).__name__}: {exc}")
        finally:
            writer.close()
    return FetchFailed(f"{host}: cannot connect: {'; '.join(errors)}")


async def _exchange(host: str, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> Fetched | FetchFailed:
    writer.write(f"GET {_PATH} HTTP/1.0\r\nHost: {host}\r\n"
                 "User-Agent: mailyard\r\nAccept: text/plain\r\n"
                 "Connection: close\r\n\r\n".encode("ascii"))
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, _, header_block = head.partition(b"\r\n")
    parts = status_line.decode("latin-1").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        return FetchFailed(f"{host}: not an HTTP answer")
    status = int(parts[1])
    if status != 200:
        return FetchFailed(f"{host}: HTTP status {status} (RFC 8461 3.3 allows only 200, "
                           "no redirects)")
    headers = http.client.parse_headers(io.BytesIO(header_block))
    media_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if media_type != "text/plain":
        return FetchFailed(f"{host}: content type {media_type or 'missing'!r}, "
                           "not text/plain")
    body = await reader.read(MAX_POLICY_SIZE + 1)
    while len(body) <= MAX_POLICY_SIZE:
        more = await reader.read(MAX_POLICY_SIZE + 1 - len(body))
        if not more:
            break
        body += more
    if len(body) > MAX_POLICY_SIZE:
        return FetchFailed(f"{host}: policy larger than {MAX_POLICY_SIZE} bytes")
    length = headers.get("Content-Length")
    if length is not None and length.strip().isdigit() and int(length) < len(body):
        body = body[: int(length)]
    try:
        return Fetched(body.decode("utf-8"))
    except UnicodeDecodeError:
        return FetchFailed(f"{host}: policy is not UTF-8 text")
