"""Hostile DNS data served by a real DNS server on loopback, read by the real
resolver behind the cache: each ends in RFC 7208's error result (or an ordinary
one), never an exception or a hang."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from mailyard.dns import CachingResolver, DnsPythonResolver
from mailyard.spf import SpfLimits, SpfResult, SpfStatus, check_host
from tests.support.dnsserver import DnsTestServer

pytestmark = [pytest.mark.e2e]

HUGE = ("v=spf1 " + " ".join(f"ip4:203.0.{i // 256}.{i % 256}" for i in range(3000))
        + " ip4:192.0.2.1 -all")  # about 60 KB: truncated over UDP, read over TCP
ZONES = {
    "huge.example": {"TXT": [HUGE]},
    "many.example": {"TXT": ["v=spf1 -all"] + [f"verification-{i}=" + "x" * 200
                                               for i in range(200)]},
    "loop1.example": {"CNAME": ["loop2.example"]},
    "loop2.example": {"CNAME": ["loop1.example"]},
    "cname-loop.example": {"TXT": ["v=spf1 a:loop1.example -all"]},
    "voids.example": {"TXT": ["v=spf1 " + " ".join(f"exists:nx{i}.example"
                                                   for i in range(1000)) + " -all"]},
    "includes.example": {"TXT": ["v=spf1 include:includes.example -all"]},
    "silent.example": {"TXT": ["v=spf1 a:mute.example -all"]},
    "mute.example": {"A": ["192.0.2.1"]},
    "servfail.example": {"TXT": ["v=spf1 include:broken.example -all"]},
    "broken.example": {"TXT": ["v=spf1 +all"]},
}


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsTestServer]:
    server = DnsTestServer(ZONES)
    server.drop("mute.example")
    server.servfail("broken.example")
    with server:
        yield server


def check(dns: DnsTestServer, domain: str) -> SpfResult:
    async def run() -> SpfResult:
        resolver = CachingResolver(DnsPythonResolver([dns.server_spec], timeout=0.5))
        return await check_host(resolver, "192.0.2.1", domain, f"a@{domain}",
                                limits=SpfLimits(time_budget=2.0))
    return asyncio.run(run())


@pytest.mark.parametrize(("domain", "expected"), [
    ("huge.example", SpfStatus.PASS),
    ("many.example", SpfStatus.FAIL),
    ("loop1.example", SpfStatus.TEMPERROR),  # the record lookup itself loops
    ("cname-loop.example", SpfStatus.TEMPERROR),
    ("voids.example", SpfStatus.PERMERROR),
    ("includes.example", SpfStatus.PERMERROR),
    ("silent.example", SpfStatus.TEMPERROR),  # a server that never answers
    ("servfail.example", SpfStatus.TEMPERROR),
])
def test_hostile_dns(dns: DnsTestServer, domain: str, expected: SpfStatus) -> None:
    assert check(dns, domain).status is expected


def test_a_thousand_void_names_cost_three_queries(dns: DnsTestServer) -> None:
    before = len(dns.queries)
    result = check(dns, "voids.example")
    assert result.void_lookups == 3
    asked = {(name, rdtype) for name, rdtype, _transport in dns.queries[before:]}
    assert asked == {("voids.example", "TXT"), ("nx0.example", "A"), ("nx1.example", "A"),
                     ("nx2.example", "A")}
