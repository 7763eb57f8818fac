"""StaticResolver semantics and the CachingResolver (TTL, negative caching, bounds,
failures not cached, shared in-flight lookups), with an injected clock."""

from __future__ import annotations

import asyncio

import pytest

from mailyard.dns import (
    AnswerKind,
    BaseResolver,
    CachingResolver,
    DnsTemporaryError,
    MxKind,
    MxRecord,
    RecordSet,
    StaticResolver,
    ascii_domain,
)
from mailyard.dns.api import DnsNameError


def run(coro):
    return asyncio.run(coro)


ZONES = {
    "example.org": {"MX": ["10 mx.example.org", (20, "backup.example.org.")]},
    "mx.example.org": {"A": ["192.0.2.10"], "AAAA": ["2001:db8::10"]},
    "www.example.org": {"CNAME": ["mx.example.org"]},
    "broken.example": {"MX": ["0 .", "10 mx.example.org"]},
    "deep.sub.example.net": {"A": ["192.0.2.1"]},
}


def test_static_answer_nodata_nxdomain():
    r = StaticResolver(ZONES)
    assert run(r.query("mx.example.org", "A")).records == ("192.0.2.10",)
    assert run(r.query("mx.example.org", "TXT")).kind is AnswerKind.NODATA
    assert run(r.query("nope.example.org", "A")).kind is AnswerKind.NXDOMAIN


def test_empty_non_terminal_is_nodata():
    """RFC 8020: a name with names below it exists (NODATA, not NXDOMAIN)."""
    r = StaticResolver(ZONES)
    assert run(r.query("sub.example.net", "A")).kind is AnswerKind.NODATA


def test_static_mx_forms_and_cname():
    r = StaticResolver(ZONES)
    assert run(r.mx("example.org")).records == (MxRecord(10, "mx.example.org"),
                                               MxRecord(20, "backup.example.org"))
    answer = run(r.query("www.example.org", "AAAA"))
    assert answer.records == ("2001:db8::10",) and answer.canonical_name == "mx.example.org"


def test_null_mx_next_to_real_mx_is_ignored():
    """RFC 7505 3: a Null MX must be the only MX; when it is not, use the others."""
    result = run(StaticResolver(ZONES).mx("broken.example"))
    assert result.kind is MxKind.RECORDS
    assert result.records == (MxRecord(10, "mx.example.org"),)


def test_static_failures():
    r = StaticResolver(ZONES)
    r.fail("example.org")
    r.fail("mx.example.org", "timeout")
    with pytest.raises(DnsTemporaryError, match="SERVFAIL"):
        run(r.mx("example.org"))
    with pytest.raises(DnsTemporaryError, match="timeout"):
        run(r.addresses("mx.example.org"))
    r.heal()
    assert run(r.mx("example.org")).kind is MxKind.RECORDS


def test_ascii_domain():
    """IDNA 2008 with UTS 46 mapping (RFC 5891, UTS 46): sharp s is kept (IDNA 2003
    would map it to 'ss')."""
    assert ascii_domain("Straße.DE.") == "xn--strae-oqa.de"
    assert ascii_domain("_dmarc.Example.org") == "_dmarc.example.org"
    for bad in ("", "a..b", "x" * 64 + ".org"):
        with pytest.raises(DnsNameError):
            ascii_domain(bad)


class CountingResolver(BaseResolver):
    """Answers from a StaticResolver, counts upstream queries, can be gated."""

    def __init__(self, static: StaticResolver) -> None:
        self.static = static
        self.calls = 0
        self.gate: asyncio.Event | None = None

    async def query(self, name: str, rdtype: str) -> RecordSet:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        return await self.static.query(name, rdtype)


def make_cache(**kw):
    now = [0.0]
    upstream = CountingResolver(StaticResolver(ZONES, ttl=100, negative_ttl=10))
    cache = CachingResolver(upstream, clock=lambda: now[0], **kw)
    return cache, upstream, now


def test_positive_answers_cached_for_their_ttl():
    """RFC 1035 3.2.1 / RFC 2181 8: an answer may be cached for its TTL, no longer."""
    cache, upstream, now = make_cache()

    async def go():
        a = await cache.query("mx.example.org", "A")
        now[0] = 60
        b = await cache.query("MX.example.org.", "A")
        assert upstream.calls == 1 and b.records == a.records
        assert b.ttl == 40  # the remaining TTL
        now[0] = 100
        await cache.query("mx.example.org", "A")
        assert upstream.calls == 2

    run(go())


def test_hits_within_a_second_share_one_answer_with_the_ttl_left():
    """The answer a hit returns carries the TTL left in whole seconds (RFC 2181 8);
    within one second the hits get one shared (immutable) copy, a later hit a new one
    with the lower TTL."""
    cache, upstream, now = make_cache()

    async def go():
        first = await cache.query("mx.example.org", "A")
        now[0] = 10.2
        a = await cache.query("mx.example.org", "A")
        now[0] = 10.9
        b = await cache.query("MX.example.org", "A")
        now[0] = 11.5
        c = await cache.query("mx.example.org", "A")
        now[0] = 99.5
        d = await cache.query("mx.example.org", "A")
        assert (first.ttl, a.ttl, b.ttl, c.ttl, d.ttl) == (100, 89, 89, 88, 0)
        assert b is a and c is not a and c.records == a.records == first.records
        assert (c.name, c.rdtype, c.kind, c.canonical_name) == (
            first.name, first.rdtype, first.kind, first.canonical_name)
        now[0] = 100.0
        await cache.query("mx.example.org", "A")
        assert upstream.calls == 2  # expired at its TTL

    asyncio.run(go())


def test_negative_answers_cached_for_negative_ttl():
    """RFC 2308 5: NXDOMAIN and NODATA are cached for the negative TTL."""
    cache, upstream, now = make_cache()

    async def go():
        await cache.query("nope.example.org", "A")
        await cache.query("mx.example.org", "TXT")
        await cache.query("nope.example.org", "A")
        await cache.query("mx.example.org", "TXT")
        assert upstream.calls == 2
        now[0] = 10
        assert (await cache.query("nope.example.org", "A")).kind is AnswerKind.NXDOMAIN
        assert upstream.calls == 3

    run(go())


def test_ttl_caps():
    cache, upstream, now = make_cache(max_ttl=5, max_negative_ttl=0)

    async def go():
        await cache.query("mx.example.org", "A")
        await cache.query("nope.example.org", "A")
        await cache.query("nope.example.org", "A")
        assert upstream.calls == 3  # negative caching off
        now[0] = 5
        await cache.query("mx.example.org", "A")
        assert upstream.calls == 4

    run(go())


def test_temporary_failures_are_not_cached():
    cache, upstream, now = make_cache()
    upstream.static.fail("example.org")

    async def go():
        with pytest.raises(DnsTemporaryError):
            await cache.mx("example.org")
        upstream.static.heal()
        assert (await cache.mx("example.org")).kind is MxKind.RECORDS

    run(go())


def test_cache_is_bounded_lru():
    cache, upstream, now = make_cache(max_entries=2)

    async def go():
        await cache.query("mx.example.org", "A")
        await cache.query("mx.example.org", "AAAA")
        await cache.query("mx.example.org", "A")  # refresh: AAAA is now oldest
        await cache.query("example.org", "MX")
        assert len(cache) == 2
        calls = upstream.calls
        await cache.query("mx.example.org", "A")
        assert upstream.calls == calls
        await cache.query("mx.example.org", "AAAA")
        assert upstream.calls == calls + 1

    run(go())


def test_concurrent_lookups_share_one_query():
    cache, upstream, now = make_cache()

    async def go():
        upstream.gate = asyncio.Event()
        waiters = [asyncio.ensure_future(cache.mx("example.org")) for _ in range(50)]
        await asyncio.sleep(0)
        waiters[0].cancel()  # one caller giving up does not cancel the others
        upstream.gate.set()
        results = await asyncio.gather(*waiters[1:])
        assert upstream.calls == 1
        assert all(r.kind is MxKind.RECORDS for r in results)

    run(go())


def test_dns_server_must_be_an_address():
    from mailyard.dns import DnsPythonResolver

    with pytest.raises(ValueError, match="IP address"):
        DnsPythonResolver(["dns.example:53"])
    DnsPythonResolver(["192.0.2.53", "[2001:db8::53]:5353"])  # both forms accepted
