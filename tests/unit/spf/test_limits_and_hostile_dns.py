"""RFC 7208 4.6.4's processing limits, and hostile DNS data: each ends in the RFC's
error result (or an ordinary one), never an exception or a hang."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailyard.dns import BaseResolver, RecordSet, StaticResolver
from mailyard.spf import SpfLimits, SpfResult, SpfStatus, check_host

PERM, TEMP = SpfStatus.PERMERROR, SpfStatus.TEMPERROR


def run(r: BaseResolver, ip: str = "192.0.2.1", limits: SpfLimits | None = None) -> SpfResult:
    return asyncio.run(check_host(r, ip, "example.com", "user@example.com", "helo.example",
                                  limits=limits or SpfLimits()))


def with_record(record: str, zones: dict[str, dict[str, list[str]]] | None = None
                ) -> StaticResolver:
    r = StaticResolver(zones or {})
    r.set("example.com", "TXT", [record])
    return r


def hosts(n: int, suffix: str = "example.com") -> dict[str, dict[str, list[str]]]:
    return {f"h{i}.{suffix}": {"A": [f"198.51.100.{i + 1}"]} for i in range(n)}


# --- 10 DNS-querying terms ---------------------------------------------------------

def test_ten_lookups_are_allowed_the_eleventh_is_permerror() -> None:
    ten = " ".join(f"a:h{i}.example.com" for i in range(10))
    r = with_record(f"v=spf1 {ten} ip4:192.0.2.1 -all", hosts(11))
    result = run(r)
    assert result.status is SpfStatus.PASS and result.lookups == 10
    r = with_record(f"v=spf1 {ten} a:h10.example.com ip4:192.0.2.1 -all", hosts(11))
    result = run(r)
    assert result.status is PERM and result.lookups == 11
    assert len(r.queries) == 11  # the eleventh term asked nothing


def test_all_ip4_ip6_exp_do_not_count() -> None:
    ten = " ".join(f"a:h{i}.example.com" for i in range(10))
    many_ips = " ".join(f"ip4:203.0.113.{i}" for i in range(200))
    r = with_record(f"v=spf1 {ten} {many_ips} ip6:2001:db8::/32 -all exp=e.example.com",
                    hosts(10))
    r.set("e.example.com", "TXT", ["no"])
    result = run(r)
    assert result.status is SpfStatus.FAIL and result.explanation == "no"


def test_include_and_redirect_count_across_records() -> None:
    zones: dict[str, dict[str, list[str]]] = {}
    for i in range(12):
        zones[f"r{i}.example.com"] = {"TXT": [f"v=spf1 redirect=r{i + 1}.example.com"]}
    zones["r12.example.com"] = {"TXT": ["v=spf1 +all"]}
    r = with_record("v=spf1 redirect=r0.example.com", zones)
    assert run(r).status is PERM  # 13 redirects
    r = with_record("v=spf1 redirect=r3.example.com", zones)  # r3..r12 + ours: 10
    assert run(r).status is SpfStatus.PASS


def test_include_loop_is_permerror() -> None:
    r = with_record("v=spf1 include:example.com -all")
    result = run(r)
    assert result.status is PERM and "more than 10" in result.problem
    r = with_record("v=spf1 include:loop-a.example.com -all",
                    {"loop-a.example.com": {"TXT": ["v=spf1 include:loop-b.example.com"]},
                     "loop-b.example.com": {"TXT": ["v=spf1 include:loop-a.example.com"]}})
    assert run(r).status is PERM
    r = with_record("v=spf1 redirect=example.com")
    assert run(r).status is PERM


# --- 2 void lookups ------------------------------------------------------------------

def test_two_void_lookups_are_allowed_the_third_is_permerror() -> None:
    r = with_record("v=spf1 a:nx1.example.com a:nx2.example.com ip4:192.0.2.1 -all",
                    {"example.com": {"A": ["192.0.2.9"]}})
    assert run(r).status is SpfStatus.PASS
    r = with_record("v=spf1 a:nx1.example.com a:nx2.example.com mx:example.com "
                    "ip4:192.0.2.1 -all", {"example.com": {"A": ["192.0.2.9"]}})
    result = run(r)  # example.com has no MX: NODATA is void too
    assert result.status is PERM and result.void_lookups == 3 and "void" in result.problem


def test_a_thousand_void_lookups_stop_at_the_third() -> None:
    terms = " ".join(f"exists:nx{i}.example.com" for i in range(1000))
    r = with_record(f"v=spf1 {terms} -all")
    result = run(r, limits=SpfLimits(max_lookups=2000))
    assert result.status is PERM and result.void_lookups == 3
    assert len(r.queries) == 4  # the record and three void lookups


def test_void_limit_is_configurable() -> None:
    r = with_record("v=spf1 a:nx1.example.com a:nx2.example.com a:nx3.example.com ?all")
    assert run(r, limits=SpfLimits(max_void_lookups=3)).status is SpfStatus.NEUTRAL


# --- MX and PTR names ------------------------------------------------------------------

def test_more_than_ten_mx_names_is_permerror() -> None:
    mx = [f"{i} h{i}.example.com" for i in range(11)]
    r = with_record("v=spf1 mx -all", {"example.com": {"MX": mx}, **hosts(11)})
    result = run(r, "198.51.100.1")
    assert result.status is PERM and "MX" in result.problem
    r = with_record("v=spf1 mx -all", {"example.com": {"MX": mx[:10]}, **hosts(11)})
    assert run(r, "198.51.100.1").status is SpfStatus.PASS


def test_only_ten_ptr_names_are_looked_at() -> None:
    names = [f"h{i}.example.com" for i in range(11)]
    zones = {**hosts(11), "1.100.51.198.in-addr.arpa": {"PTR": names}}
    for i in range(11):
        zones[f"h{i}.example.com"] = {"A": ["198.51.100.1"]}
    r = with_record("v=spf1 ptr:h10.example.com -all", zones)
    assert run(r, "198.51.100.1").status is SpfStatus.FAIL  # the 11th name is ignored
    r = with_record("v=spf1 ptr:h9.example.com -all", zones)
    assert run(r, "198.51.100.1").status is SpfStatus.PASS


# --- hostile data --------------------------------------------------------------------

def test_huge_txt_record() -> None:
    """A 60 KB record: parsed and evaluated; its DNS-querying terms stop at the limit."""
    ips = " ".join(f"ip4:203.0.{i // 256}.{i % 256}" for i in range(3000))
    r = with_record(f"v=spf1 {ips} ip4:192.0.2.1 -all")
    assert run(r).status is SpfStatus.PASS
    names = " ".join(f"a:host{i}.example.com" for i in range(3000))
    r = with_record(f"v=spf1 {names} -all", {f"host{i}.example.com": {"A": ["203.0.113.1"]}
                                             for i in range(20)})
    assert run(r).status is PERM
    r = with_record("v=spf1 " + "x" * 70000)
    assert run(r).status is PERM


def test_huge_txt_of_other_records_beside_spf() -> None:
    r = StaticResolver({})
    r.set("example.com", "TXT", ["x" * 65000, "v=spf1 ip4:192.0.2.1 -all"]
          + [f"site-verification={i}" for i in range(500)])
    assert run(r).status is SpfStatus.PASS


def test_cname_loop_is_temperror() -> None:
    r = with_record("v=spf1 a:loop1.example.com -all",
                    {"loop1.example.com": {"CNAME": ["loop2.example.com"]},
                     "loop2.example.com": {"CNAME": ["loop1.example.com"]}})
    assert run(r).status is TEMP
    r = StaticResolver({"example.com": {"CNAME": ["example.net"]},
                        "example.net": {"CNAME": ["example.com"]}})
    assert run(r).status is TEMP


def test_macro_bombs_stay_bounded() -> None:
    """Long expansions are cut to 253 characters; huge part counts are harmless."""
    r = with_record("v=spf1 exists:%{l}%{l}%{l}%{l}.%{d99999999999}.%{s}.example.com -all")
    result = asyncio.run(check_host(r, "192.0.2.1", "example.com",
                                    "a" * 60 + "." + "b" * 60 + "@example.com", "h.example"))
    assert result.status is SpfStatus.FAIL
    assert all(len(name) <= 253 for name, _ in r.queries)


class _Silent(BaseResolver):
    """A DNS server that never answers, and never says so."""

    async def query(self, name: str, rdtype: str) -> RecordSet:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


def test_time_budget_ends_a_stalled_evaluation_with_temperror() -> None:
    result = run(_Silent(), limits=SpfLimits(time_budget=0.05))
    assert result.status is TEMP and "no result within" in result.problem


# --- anything at all -------------------------------------------------------------------

TERMS = ["all", "-all", "~all", "?all", "+all", "a", "a:", "mx", "mx/24//64", "ptr", "ptr:",
         "ip4:192.0.2.1", "ip4:192.0.2.0/24", "ip6:2001:db8::/32", "ip4:", "ip6::::",
         "include:x.example", "include:", "exists:%{i}.x.example", "exists:%{", "redirect=",
         "redirect=x.example", "exp=e.example", "exp=%{c}", "%{l}", "%%", "%", "=", ":", "/",
         "//", "a:%{d9999999}.example", "a:%{ir}.%{v}.%{L}.example", "v=spf1", "\x00",
         "\u00e9", "a:" + "x" * 300 + ".example", "mx:%{p}.example"]


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.sampled_from(TERMS), st.text(max_size=12)), max_size=12),
       st.sampled_from(["192.0.2.1", "2001:db8::1", "::ffff:192.0.2.9"]),
       st.text(max_size=20))
def test_any_record_any_sender_gives_a_result(terms: list[str], ip: str, local: str) -> None:
    """Whatever is published or sent, check_host returns one of the seven results."""
    r = StaticResolver({"x.example": {"TXT": ["v=spf1 " + " ".join(terms[:3])]},
                        "e.example": {"TXT": [" ".join(terms[3:6])]}})
    r.set("example.com", "TXT", ["v=spf1 " + " ".join(terms)])
    result = asyncio.run(check_host(r, ip, "example.com", f"{local}@example.com",
                                    "helo.example"))
    assert result.status in set(SpfStatus)
