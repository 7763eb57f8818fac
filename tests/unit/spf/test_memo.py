"""Remembered SPF results (mailyard.spf.memo): a remembered result is the one a new
check_host() (RFC 7208 4) would give, and it is forgotten when the first DNS answer it
was made from expires (its TTL, RFC 1035 3.2.1; a negative answer's, RFC 2308 5)."""

from __future__ import annotations

import asyncio

from mailyard.dns import CachingResolver, StaticResolver
from mailyard.spf import (
    Identity,
    SpfMemo,
    SpfResult,
    SpfStatus,
    check_helo,
    check_mail_from,
    remembered,
)

ZONES = {
    "example.com": {"TXT": ["v=spf1 include:_spf.example.com -all"]},
    "_spf.example.com": {"TXT": ["v=spf1 ip4:192.0.2.0/24 -all"]},
}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def check(static: StaticResolver, memo: SpfMemo, ip: str = "192.0.2.1",
          sender: str = "user@example.com") -> SpfResult:
    return asyncio.run(check_mail_from(static, ip, sender, "mail.example.com",
                                       receiver="mx.example.net", memo=memo))


def test_a_remembered_result_equals_a_new_evaluation_and_asks_no_dns() -> None:
    static = StaticResolver(ZONES)
    memo = SpfMemo(clock=Clock())
    first = check(static, memo)
    asked = len(static.queries)
    assert first.status is SpfStatus.PASS and asked == 2
    again = check(static, memo)
    assert again == first == check(static, SpfMemo())
    assert len(static.queries) == asked + 2  # only the evaluation without the memo asked


def test_each_input_is_its_own_entry() -> None:
    static = StaticResolver(ZONES)
    memo = SpfMemo(clock=Clock())
    assert check(static, memo).status is SpfStatus.PASS
    assert check(static, memo, ip="198.51.100.1").status is SpfStatus.FAIL
    assert check(static, memo, sender="other@example.com").sender == "other@example.com"
    helo = asyncio.run(check_helo(static, "192.0.2.1", "example.com", memo=memo))
    assert helo.identity != check(static, memo).identity
    assert len(memo) == 4


def test_forgotten_when_the_shortest_ttl_runs_out() -> None:
    clock = Clock()
    static = StaticResolver(ZONES, ttl=300)
    memo = SpfMemo(clock=clock)
    assert check(static, memo).status is SpfStatus.PASS
    static.set("_spf.example.com", "TXT", ["v=spf1 -all"])
    clock.now += 299
    assert check(static, memo).status is SpfStatus.PASS  # the answers still hold
    clock.now += 1
    assert check(static, memo).status is SpfStatus.FAIL


def test_the_ttl_left_in_the_dns_cache_bounds_the_entry() -> None:
    """Behind the caching resolver an answer lives only for what is left of its TTL."""
    clock = Clock()
    static = StaticResolver(ZONES, ttl=300)
    cache = CachingResolver(static, clock=clock)
    memo = SpfMemo(clock=clock)
    asyncio.run(cache.query("_spf.example.com", "TXT"))
    clock.now += 200
    assert check(cache, memo).status is SpfStatus.PASS  # type: ignore[arg-type]
    static.set("_spf.example.com", "TXT", ["v=spf1 -all"])
    clock.now += 100  # the cached include record expires; the memo entry with it
    assert check(cache, memo).status is SpfStatus.FAIL  # type: ignore[arg-type]


def test_not_remembered_temperror_time_macro_or_no_lookup() -> None:
    static = StaticResolver(ZONES)
    memo = SpfMemo(clock=Clock())
    static.fail("_spf.example.com")
    assert check(static, memo).status is SpfStatus.TEMPERROR
    assert len(memo) == 0
    static.heal()
    static.set("example.com", "TXT", ["v=spf1 -all exp=why.example.com"])
    static.set("why.example.com", "TXT", ["refused at %{t} (RFC 7208 7.2: exp only)"])
    refused = check(static, memo)
    assert refused.status is SpfStatus.FAIL and "refused at 1" in refused.explanation
    assert len(memo) == 0
    helo = asyncio.run(check_helo(static, "192.0.2.1", "[192.0.2.1]", memo=memo))
    assert helo.status is SpfStatus.NONE and len(memo) == 0


def test_bounded() -> None:
    static = StaticResolver(ZONES)
    memo = SpfMemo(max_entries=2, clock=Clock())
    for n in range(5):
        check(static, memo, sender=f"u{n}@example.com")
    assert len(memo) == 2


def test_remembered_gives_the_evaluation_only_once_it_is_kept() -> None:
    """What smtpd asks first at MAIL FROM: the result without DNS, or None."""
    static = StaticResolver(ZONES)
    memo = SpfMemo(clock=Clock())

    def known(identity: Identity, sender: str = "user@example.com",
              helo: str = "mail.example.com") -> SpfResult | None:
        return remembered(memo, "192.0.2.1", sender, helo, identity=identity,
                          receiver="mx.example.net")

    assert known(Identity.MAILFROM) is None
    assert known(Identity.MAILFROM) is None and len(static.queries) == 0
    first = check(static, memo)
    assert known(Identity.MAILFROM) == first
    assert known(Identity.MAILFROM, sender="other@example.com") is None
    # The null sender is the HELO name's postmaster (RFC 7208 2.4), HELO its own entry.
    assert known(Identity.MAILFROM, sender="", helo="example.com") is None
    null = asyncio.run(check_mail_from(static, "192.0.2.1", "", "example.com",
                                       receiver="mx.example.net", memo=memo))
    assert known(Identity.MAILFROM, sender="", helo="example.com") == null
    assert known(Identity.HELO, helo="example.com") is None
    helo = asyncio.run(check_helo(static, "192.0.2.1", "example.com.",
                                  receiver="mx.example.net", memo=memo))
    assert known(Identity.HELO, helo="example.com") == helo
    # An address literal is "none" at once (RFC 7208 2.3): nothing to look up.
    literal = known(Identity.HELO, helo="[192.0.2.1]")
    assert literal is not None and literal.status is SpfStatus.NONE
