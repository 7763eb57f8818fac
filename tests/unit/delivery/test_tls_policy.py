"""Which TLS each MX host gets: DANE before MTA-STS before opportunistic TLS
(RFC 8461 2), enforce vs testing mode (RFC 8461 5), and the TLS-RPT counts of refusals."""

from __future__ import annotations

import asyncio

import pytest

from mailyard.config import Config
from mailyard.delivery.routing import NextHop, RouteError, Router
from mailyard.delivery.tls_policy import TransportSecurity
from mailyard.dns import StaticResolver
from mailyard.mtasts import Discovery
from mailyard.mtasts.cache import PolicyCache
from mailyard.mtasts.fetch import Fetched, FetchFailed
from mailyard.tlsrpt.results import PolicyType
from mailyard.tlsrpt.store import TlsOutcomes

DIGEST = "ef" * 32
ZONES = {
    "dest.example": {"MX": ["10 mx1.dest.example", "20 rogue.attacker.example"]},
    "mx1.dest.example": {"A": ["192.0.2.1"]},
    "rogue.attacker.example": {"A": ["192.0.2.66"]},
    "_mta-sts.dest.example": {"TXT": ["v=STSv1; id=1"]},
    "_25._tcp.mx1.dest.example": {"TLSA": [f"3 1 1 {DIGEST}"]},
}


def policy(mode: str) -> str:
    return f"version: STSv1\nmode: {mode}\nmx: mx1.dest.example\nmax_age: 86400\n"


def plan(answer: Fetched | FetchFailed, *, dane: bool = False,
         resolver: StaticResolver | None = None) -> tuple[list[NextHop], TlsOutcomes]:
    resolver = resolver or StaticResolver(ZONES)

    async def fetch(domain: str) -> Fetched | FetchFailed:
        return answer

    outcomes = TlsOutcomes(None)
    sts = Discovery(resolver, PolicyCache(None), fetch=fetch)
    security = TransportSecurity(sts, resolver if dane else None, outcomes, "/ca.pem")

    async def go() -> list[NextHop]:
        route = await Router(Config(hostname="me.example"), resolver).plan("dest.example")
        hops = await security.secure(route)
        await outcomes.flush()
        return hops
    return asyncio.run(go()), outcomes


def test_rfc8461_enforce_drops_unlisted_mx_and_requires_verified_tls() -> None:
    hops, outcomes = plan(Fetched(policy("enforce")))
    assert [(h.host, h.tls_policy, h.tls_ca_file) for h in hops] == [
        ("mx1.dest.example", "verify", "/ca.pem")]
    assert hops[0].tls_report is not None and hops[0].tls_report.type is PolicyType.STS
    (refused,) = outcomes.rows()
    assert refused.mx_host == "rogue.attacker.example" and refused.result == "validation-failure"


def test_rfc8461_testing_mode_is_reported_not_enforced() -> None:
    hops, outcomes = plan(Fetched(policy("testing")))
    assert [(h.host, h.tls_policy) for h in hops] == [
        ("mx1.dest.example", "may"), ("rogue.attacker.example", "may")]
    assert [r.mx_host for r in outcomes.rows()] == ["rogue.attacker.example"]


def test_enforce_with_no_listed_mx_defers_4_7_5() -> None:
    resolver = StaticResolver(ZONES)
    resolver.set("dest.example", "MX", ["10 rogue.attacker.example"])
    with pytest.raises(RouteError) as caught:
        plan(Fetched(policy("enforce")), resolver=resolver)
    assert caught.value.temporary and str(caught.value).startswith("451 4.7.5")


def test_failed_fetch_without_cache_falls_back_to_opportunistic_and_is_reported() -> None:
    hops, outcomes = plan(FetchFailed("connection refused"))
    assert {h.tls_policy for h in hops} == {"may"}
    assert [r.result for r in outcomes.rows()] == ["sts-policy-fetch-error"]


def test_rfc8461_2_dane_takes_precedence_over_mta_sts() -> None:
    resolver = StaticResolver(ZONES, authenticated=True)
    hops, _ = plan(Fetched(policy("enforce")), dane=True, resolver=resolver)
    by_host = {h.host: h for h in hops}
    assert by_host["mx1.dest.example"].tls_tlsa == (f"3 1 1 {DIGEST}",)
    assert by_host["mx1.dest.example"].tls_report.type is PolicyType.TLSA
    assert "rogue.attacker.example" not in by_host  # no DANE there: MTA-STS enforce applies


def test_rfc7672_2_2_bogus_tlsa_drops_the_host() -> None:
    resolver = StaticResolver(ZONES, authenticated=True)
    resolver.fail("_25._tcp.mx1.dest.example")
    with pytest.raises(RouteError) as caught:
        plan(Fetched(policy("enforce")), dane=True, resolver=resolver)
    assert "DANE" in str(caught.value)


def test_insecure_mx_answer_means_no_dane() -> None:
    resolver = StaticResolver(ZONES, authenticated=True)
    resolver.unsigned("dest.example")
    hops, _ = plan(FetchFailed("none"), dane=True, resolver=resolver)
    assert all(not h.tls_tlsa for h in hops)
