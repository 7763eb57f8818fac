"""check_host() semantics (RFC 7208 4, 5, 6), each case naming its section: record
selection, syntax errors, every mechanism, include and redirect results, exp, the
identities, and DNS errors."""

from __future__ import annotations

import asyncio

import pytest

from mailyard.dns import StaticResolver
from mailyard.spf import Identity, SpfResult, SpfStatus, check_helo, check_host, check_mail_from

P, F, S, N = SpfStatus.PASS, SpfStatus.FAIL, SpfStatus.SOFTFAIL, SpfStatus.NEUTRAL
NONE, PERM, TEMP = SpfStatus.NONE, SpfStatus.PERMERROR, SpfStatus.TEMPERROR

BASE = {
    "mail.example.com": {"A": ["192.0.2.1"], "AAAA": ["2001:db8::1"]},
    "example.com": {"MX": ["10 mail.example.com"], "A": ["192.0.2.10"]},
    "1.2.0.192.in-addr.arpa": {"PTR": ["mail.example.com"]},
    "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa":
        {"PTR": ["mail.example.com"]},
}


def zone(record: str | list[str] | None = None, txt: dict[str, str] | None = None
         ) -> StaticResolver:
    """BASE with ``record`` as example.com's TXT and ``txt`` as more TXT records."""
    r = StaticResolver(BASE)
    if record is not None:
        r.set("example.com", "TXT", [record] if isinstance(record, str) else record)
    for name, text in (txt or {}).items():
        r.set(name, "TXT", [text])
    return r


def run(r: StaticResolver, ip: str = "192.0.2.1", domain: str = "example.com",
        sender: str = "user@example.com") -> SpfResult:
    return asyncio.run(check_host(r, ip, domain, sender, "helo.example.net",
                                  receiver="mx.example.net"))


def status(record: str | list[str] | None, ip: str = "192.0.2.1") -> SpfStatus:
    return run(zone(record), ip).status


# --- 4.5 record selection --------------------------------------------------------

def test_4_5_selection() -> None:
    assert status(None) is NONE  # no TXT at all
    assert status(["some other text", "spf2.0/pra -all"]) is NONE
    assert status("v=spf10 -all") is NONE  # the version must be exactly v=spf1
    assert status("v=spf1") is N
    assert status("V=SPF1 -ALL") is F  # the grammar's strings are case-insensitive
    assert status(["v=spf1 -all", "not spf", "v=spf1 +all"]) is PERM
    assert status(["v=spf1 -all", "v=spf1"]) is PERM


def test_4_3_none_for_nxdomain_and_malformed_domains() -> None:
    r = zone("v=spf1 -all")
    assert run(r, domain="nowhere.example").status is NONE
    assert run(r, domain="localhost").status is NONE  # not multi-label
    assert run(r, domain="a..example.com").status is NONE
    assert run(r, domain="x" * 64 + ".example.com").status is NONE


# --- 4.6 syntax: any error anywhere is permerror, even after a match ---------------

@pytest.mark.parametrize("record", [
    "v=spf1 ip4:192.0.2.1 moo",  # unknown mechanism, after a matching one
    "v=spf1 ip4:192.0.2.1 =a",  # bad qualifier
    "v=spf1 ip4:192.0.2.1 -all:3030",
    "v=spf1 ip4:192.0.2.1 ip4:192.0.2.300",
    "v=spf1 ip4:192.0.2.1 ip4:192.0.02.1",  # no leading zeros (qnum)
    "v=spf1 ip4:192.0.2.1 ip4:192.0.2.1/33",
    "v=spf1 ip4:192.0.2.1 ip4:192.0.2.1/024",
    "v=spf1 ip4:192.0.2.1 ip4:192.0.2.1//64",
    "v=spf1 ip4:192.0.2.1 ip6:2001:db8::/129",
    "v=spf1 ip4:192.0.2.1 ip6:2001:db8:zz::",
    "v=spf1 ip4:192.0.2.1 ip6:fe80::1%eth0",
    "v=spf1 ip4:192.0.2.1 a/33",
    "v=spf1 ip4:192.0.2.1 a//129",
    "v=spf1 ip4:192.0.2.1 a:",
    "v=spf1 ip4:192.0.2.1 a:1.2.3.4",  # the domain must end in a top label
    "v=spf1 ip4:192.0.2.1 mx:example.com:8080",
    "v=spf1 ip4:192.0.2.1 a:mail.example.com,",
    "v=spf1 ip4:192.0.2.1 ptr/24",
    "v=spf1 ip4:192.0.2.1 exists",
    "v=spf1 ip4:192.0.2.1 include",
    "v=spf1 ip4:192.0.2.1 include:%{x}.example.com",
    "v=spf1 ip4:192.0.2.1 exists:%{c}.example.com",  # c only in exp text
    "v=spf1 ip4:192.0.2.1 redirect=a.example redirect=b.example",
    "v=spf1 ip4:192.0.2.1 exp=a.example exp=b.example",
    "v=spf1 ip4:192.0.2.1 exp=",
    "v=spf1 ip4:192.0.2.1 moo=%",  # unknown modifiers still need valid macro strings
    "v=spf1 ip4:192.0.2.1\t-all",
    "v=spf1 ip4:192.0.2.1 -all \u00e9",
])
def test_4_6_syntax_errors_are_permerror(record: str) -> None:
    assert status(record) is PERM


def test_4_6_1_terms_and_modifiers() -> None:
    assert status("v=spf1   ip4:192.0.2.1   -all  ") is P  # runs of spaces
    assert status("v=spf1 moo=bar match.sub-domains_9=yes -all") is F  # 6: ignored
    assert status("v=spf1 moo= ip4:192.0.2.1") is P
    assert status("v=spf1 IP4:192.0.2.1 -ALL") is P


# --- 4.6.2 qualifiers and 5.1 all ---------------------------------------------------

@pytest.mark.parametrize(("qualifier", "expected"), [("", P), ("+", P), ("-", F), ("~", S),
                                                     ("?", N)])
def test_4_6_2_qualifiers(qualifier: str, expected: SpfStatus) -> None:
    result = run(zone(f"v=spf1 {qualifier}all"))
    assert result.status is expected
    assert result.mechanism == f"{qualifier}all"


# --- 5.6 ip4 / ip6 ---------------------------------------------------------------------

def test_5_6_ip4_ip6() -> None:
    assert status("v=spf1 ip4:192.0.2.0/24 -all", "192.0.2.200") is P
    assert status("v=spf1 ip4:192.0.2.0/25 -all", "192.0.2.200") is F
    assert status("v=spf1 ip4:0.0.0.0/0 -all", "203.0.113.1") is P
    assert status("v=spf1 ip6:2001:db8::/32 -all", "2001:db8:1::5") is P
    assert status("v=spf1 ip6:2001:db8::/48 -all", "2001:db8:1::5") is F
    assert status("v=spf1 ip6:::/0 -all", "192.0.2.1") is F  # ip6 never matches IPv4
    assert status("v=spf1 ip4:0.0.0.0/0 -all", "2001:db8::1") is F  # nor ip4 IPv6
    assert status("v=spf1 ip6:2001:db8::1 -all", "2001:DB8:0::1") is P


def test_5_ipv4_mapped_client_is_ipv4() -> None:
    """RFC 7208 5: an IPv4-mapped IPv6 client is checked as IPv4 (A records)."""
    result = run(zone("v=spf1 a:mail.example.com -all"), "::ffff:192.0.2.1")
    assert result.status is P and result.ip == "192.0.2.1"
    assert status("v=spf1 ip4:192.0.2.0/24 -all", "::ffff:192.0.2.9") is P


# --- 5.3 a, 5.4 mx, 5.5 ptr, 5.7 exists -------------------------------------------------

def test_5_3_a_with_dual_cidr() -> None:
    assert status("v=spf1 a -all", "192.0.2.10") is P  # the current domain
    assert status("v=spf1 a:mail.example.com -all", "192.0.2.1") is P
    assert status("v=spf1 a:mail.example.com -all", "192.0.2.2") is F
    assert status("v=spf1 a:mail.example.com/30 -all", "192.0.2.2") is P
    assert status("v=spf1 a:mail.example.com/30//126 -all", "2001:db8::2") is P
    assert status("v=spf1 a:mail.example.com/30 -all", "2001:db8::2") is F  # /128 for v6
    assert status("v=spf1 a:mail.example.com//64 -all", "2001:db8::ffff") is P
    assert status("v=spf1 a:mail.example.com//64 -all", "192.0.2.2") is F  # /32 for v4


def test_5_4_mx() -> None:
    assert status("v=spf1 mx -all", "192.0.2.1") is P
    assert status("v=spf1 mx -all", "2001:db8::1") is P  # AAAA for IPv6 clients
    assert status("v=spf1 mx:example.com/24 -all", "192.0.2.77") is P
    assert status("v=spf1 mx:example.com -all", "192.0.2.10") is F  # the A, not an MX


def test_5_4_null_mx_matches_nothing() -> None:
    r = zone("v=spf1 mx -all")
    r.set("example.com", "MX", ["0 ."])
    assert run(r).status is F


def test_5_5_ptr() -> None:
    assert status("v=spf1 ptr -all", "192.0.2.1") is P  # mail.example.com, validated
    assert status("v=spf1 ptr:mail.example.com -all", "192.0.2.1") is P
    assert status("v=spf1 ptr:Example.COM -all", "192.0.2.1") is P
    assert status("v=spf1 ptr:ample.com -all", "192.0.2.1") is F  # label boundary
    assert status("v=spf1 ptr -all", "2001:db8::1") is P
    assert status("v=spf1 ptr -all", "192.0.2.9") is F  # no PTR


def test_5_5_ptr_dns_errors_do_not_match() -> None:
    """RFC 7208 5.5: a DNS error on the PTR lookup fails to match; on a name's address
    lookup, that name is skipped."""
    r = zone("v=spf1 ptr ?all")
    r.fail("1.2.0.192.in-addr.arpa")
    assert run(r).status is N
    r = zone("v=spf1 ptr ?all")
    r.set("1.2.0.192.in-addr.arpa", "PTR", ["broken.example.com", "mail.example.com"])
    r.fail("broken.example.com", "timeout")
    assert run(r).status is P


def test_5_7_exists_always_asks_for_a() -> None:
    r = zone("v=spf1 exists:%{ir}.bl.example.com -all")
    r.set("1.2.0.192.bl.example.com", "A", ["127.0.0.2"])
    assert run(r, "192.0.2.1").status is P
    assert run(r, "192.0.2.2").status is F
    r.set("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.example.com",
          "A", ["127.0.0.2"])
    assert run(r, "2001:db8::1").status is P


# --- 5.2 include -----------------------------------------------------------------------

@pytest.mark.parametrize(("included", "expected"), [
    ("v=spf1 +all", P),  # pass: match
    ("v=spf1 -all", S),  # fail: no match, go on to ~all
    ("v=spf1 ~all", S),
    ("v=spf1 ?all", S),
    ("v=spf1", S),  # neutral by default
    (None, PERM),  # none: permerror
    ("v=spf1 moo", PERM),  # permerror is ours
])
def test_5_2_include_results(included: str | None, expected: SpfStatus) -> None:
    r = zone("v=spf1 include:other.example ~all")
    if included is not None:
        r.set("other.example", "TXT", [included])
    assert run(r).status is expected


def test_5_2_include_temperror_is_ours() -> None:
    r = zone("v=spf1 include:other.example ~all")
    r.fail("other.example")
    result = run(r)
    assert result.status is TEMP and "other.example" in result.problem


def test_5_2_include_of_malformed_name_is_permerror() -> None:
    r = zone("v=spf1 include:%{l}.other.example ~all")
    assert run(r, sender="a..b@example.com").status is PERM  # empty label: none


# --- 6.1 redirect, 6.2 exp -------------------------------------------------------------

def test_6_1_redirect() -> None:
    r = zone("v=spf1 redirect=_spf.example.com",
             {"_spf.example.com": "v=spf1 ip4:192.0.2.1 -all"})
    assert run(r, "192.0.2.1").status is P
    assert run(r, "192.0.2.2").status is F
    # the redirected record's own <domain> is the target
    r = zone("v=spf1 redirect=_spf.example.com", {"_spf.example.com": "v=spf1 a -all"})
    r.set("_spf.example.com", "A", ["192.0.2.50"])
    assert run(r, "192.0.2.50").status is P
    assert run(r, "192.0.2.10").status is F


def test_6_1_redirect_is_ignored_when_a_mechanism_matches() -> None:
    assert status("v=spf1 redirect=nowhere.example ?all") is N
    assert status("v=spf1 ip4:192.0.2.1 redirect=nowhere.example") is P


def test_6_1_redirect_to_no_record_is_permerror() -> None:
    assert status("v=spf1 redirect=nowhere.example") is PERM
    assert status("v=spf1 redirect=%{l}..example") is PERM  # expands to a malformed name


def test_6_2_exp_with_macros() -> None:
    r = zone("v=spf1 mx -all exp=explain._spf.%{d}",
             {"explain._spf.example.com":
              "%{i} is not one of %{d}'s designated mail servers."})
    result = run(r, "192.0.2.99")
    assert result.status is F
    assert result.explanation == "192.0.2.99 is not one of example.com's designated mail servers."
    assert run(r, "192.0.2.1").explanation == ""  # only for fail


def test_6_2_exp_all_letters() -> None:
    r = zone("v=spf1 -all exp=e.example.com",
             {"e.example.com": "%{s} %{l} %{o} %{d} %{c} %{h} %{r} %{v} %{p} %%%_%-"})
    assert run(r, "192.0.2.1").explanation == (
        "user@example.com user example.com example.com 192.0.2.1 helo.example.net "
        "mx.example.net in-addr mail.example.com % %20")


@pytest.mark.parametrize("explain", [None, ["one", "two"], ["bad %x macro"]])
def test_6_2_exp_problems_leave_no_explanation(explain: list[str] | None) -> None:
    r = zone("v=spf1 -all exp=e.example.com")
    if explain is not None:
        r.set("e.example.com", "TXT", explain)
    result = run(r)
    assert result.status is F and result.explanation == ""


def test_6_2_exp_dns_error_leaves_no_explanation() -> None:
    r = zone("v=spf1 -all exp=e.example.com")
    r.fail("e.example.com")
    result = run(r)
    assert result.status is F and result.explanation == ""


def test_6_2_exp_of_included_record_is_not_used_and_redirect_drops_ours() -> None:
    r = zone("v=spf1 -include:inc.example.com -all exp=ours.example.com",
             {"inc.example.com": "v=spf1 +all exp=theirs.example.com",
              "ours.example.com": "ours", "theirs.example.com": "theirs"})
    assert run(r).explanation == "ours"
    r = zone("v=spf1 redirect=red.example.com exp=ours.example.com",
             {"red.example.com": "v=spf1 -all exp=theirs.example.com",
              "ours.example.com": "ours", "theirs.example.com": "theirs"})
    assert run(r).explanation == "theirs"
    r = zone("v=spf1 redirect=red.example.com exp=ours.example.com",
             {"red.example.com": "v=spf1 -all", "ours.example.com": "ours"})
    assert run(r).explanation == ""


# --- 2.3, 2.4 identities --------------------------------------------------------------

def test_2_3_helo_identity() -> None:
    r = zone()
    r.set("mail.example.com", "TXT", ["v=spf1 a -all"])
    result = asyncio.run(check_helo(r, "192.0.2.1", "mail.example.com"))
    assert result.status is P and result.identity is Identity.HELO
    assert result.sender == "postmaster@mail.example.com"
    assert asyncio.run(check_helo(r, "192.0.2.1", "[192.0.2.1]")).status is NONE
    assert asyncio.run(check_helo(r, "192.0.2.1", "192.0.2.1")).status is NONE
    assert asyncio.run(check_helo(r, "192.0.2.1", "localhost")).status is NONE


def test_2_4_null_reverse_path_uses_helo() -> None:
    r = zone()
    r.set("mail.example.com", "TXT", ["v=spf1 -all exp=e.mail.example.com"])
    r.set("e.mail.example.com", "TXT", ["%{s}"])
    result = asyncio.run(check_mail_from(r, "192.0.2.1", "", "mail.example.com"))
    assert result.status is F and result.identity is Identity.MAILFROM
    assert result.domain == "mail.example.com"
    assert result.explanation == "postmaster@mail.example.com"


def test_4_3_sender_without_local_part_is_postmaster() -> None:
    r = zone("v=spf1 -all exp=e.example.com", {"e.example.com": "%{l}"})
    assert asyncio.run(check_host(r, "192.0.2.1", "example.com", "@example.com")
                       ).explanation == "postmaster"


# --- 2.6.6, 4.4, 5: DNS errors are temperror -----------------------------------------

@pytest.mark.parametrize("how", ["servfail", "timeout"])
def test_4_4_record_lookup_errors(how: str) -> None:
    r = zone("v=spf1 -all")
    r.fail("example.com", how)
    result = run(r)
    assert result.status is TEMP and result.problem


@pytest.mark.parametrize("record", ["v=spf1 a:mail.example.com -all", "v=spf1 mx -all",
                                    "v=spf1 exists:mail.example.com -all"])
def test_5_mechanism_lookup_errors(record: str) -> None:
    r = zone(record)
    r.fail("mail.example.com")
    assert run(r).status is TEMP


# --- RFC 8601 2.7.2: the result as Authentication-Results resinfo ------------------------

def test_resinfo() -> None:
    r = zone("v=spf1 ip4:192.0.2.1 -all")
    assert run(r).resinfo() == "spf=pass smtp.mailfrom=user@example.com"
    assert run(r, sender='"odd user"@example.com').resinfo() == \
        'spf=pass smtp.mailfrom="\\"odd user\\"@example.com"'
    r.set("mail.example.com", "TXT", ["v=spf1 -all"])
    helo = asyncio.run(check_helo(r, "192.0.2.1", "mail.example.com"))
    assert helo.resinfo() == "spf=fail smtp.helo=mail.example.com"
