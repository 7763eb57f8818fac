"""RFC 7208 Appendix A: the extended examples, over the zone of Appendix A."""

from __future__ import annotations

import asyncio

import pytest

from mailyard.dns import StaticResolver
from mailyard.spf import SpfStatus, check_host

PASS, FAIL, NEUTRAL = SpfStatus.PASS, SpfStatus.FAIL, SpfStatus.NEUTRAL

# RFC 7208 Appendix A: the zone every example uses.
ZONE = {
    "example.com": {"MX": ["10 mail-a.example.com", "20 mail-b.example.com"],
                    "A": ["192.0.2.10", "192.0.2.11"]},
    "amy.example.com": {"A": ["192.0.2.65"]},
    "bob.example.com": {"A": ["192.0.2.66"]},
    "mail-a.example.com": {"A": ["192.0.2.129"]},
    "mail-b.example.com": {"A": ["192.0.2.130"]},
    "www.example.com": {"CNAME": ["example.com"]},
    "example.org": {"MX": ["10 mail-c.example.org"]},
    "mail-c.example.org": {"A": ["192.0.2.140"]},
    "10.2.0.192.in-addr.arpa": {"PTR": ["example.com"]},
    "11.2.0.192.in-addr.arpa": {"PTR": ["example.com"]},
    "65.2.0.192.in-addr.arpa": {"PTR": ["amy.example.com"]},
    "66.2.0.192.in-addr.arpa": {"PTR": ["bob.example.com"]},
    "129.2.0.192.in-addr.arpa": {"PTR": ["mail-a.example.com"]},
    "130.2.0.192.in-addr.arpa": {"PTR": ["mail-b.example.com"]},
    "140.2.0.192.in-addr.arpa": {"PTR": ["mail-c.example.org"]},
    "4.0.0.10.in-addr.arpa": {"PTR": ["bob.example.com"]},
}


def resolver(**records: str) -> StaticResolver:
    r = StaticResolver(ZONE)
    for name, text in records.items():
        r.set(name.replace("_", "."), "TXT", [text])
    return r


def check(r: StaticResolver, ip: str, domain: str = "example.com",
          sender: str = "") -> SpfStatus:
    sender = sender or f"user@{domain}"
    return asyncio.run(check_host(r, ip, domain, sender, "mx.example.net")).status


HOSTS = ["192.0.2.10", "192.0.2.11", "192.0.2.65", "192.0.2.66", "192.0.2.129",
         "192.0.2.130", "192.0.2.131", "192.0.2.140", "192.0.2.143", "10.0.0.4"]

# RFC 7208 A.1: each record of example.com and the hosts that pass (all others fail).
SIMPLE = [
    ("v=spf1 +all", set(HOSTS)),
    ("v=spf1 a -all", {"192.0.2.10", "192.0.2.11"}),
    ("v=spf1 a:example.org -all", set()),  # example.org has no A records
    ("v=spf1 mx -all", {"192.0.2.129", "192.0.2.130"}),
    ("v=spf1 mx:example.org -all", {"192.0.2.140"}),
    ("v=spf1 mx mx:example.org -all", {"192.0.2.129", "192.0.2.130", "192.0.2.140"}),
    ("v=spf1 mx/30 mx:example.org/30 -all",  # 192.0.2.128/30 and 192.0.2.140/30
     {"192.0.2.129", "192.0.2.130", "192.0.2.131", "192.0.2.140", "192.0.2.143"}),
    # reverse DNS valid and in example.com; .140 is valid but in example.org; 10.0.0.4's
    # PTR name does not resolve back to it.
    ("v=spf1 ptr -all", {"192.0.2.10", "192.0.2.11", "192.0.2.65", "192.0.2.66",
                         "192.0.2.129", "192.0.2.130"}),
    ("v=spf1 ip4:192.0.2.128/28 -all",
     {"192.0.2.129", "192.0.2.130", "192.0.2.131", "192.0.2.140", "192.0.2.143"}),
]


@pytest.mark.parametrize(("record", "passing"), SIMPLE, ids=[r for r, _ in SIMPLE])
def test_a1_simple_examples(record: str, passing: set[str]) -> None:
    """RFC 7208 A.1."""
    r = resolver(example_com=record)
    got = {ip: check(r, ip) for ip in HOSTS}
    assert got == {ip: PASS if ip in passing else FAIL for ip in HOSTS}


def test_a1_ptr_named_cases() -> None:
    """RFC 7208 A.1, "v=spf1 ptr -all": the three hosts the RFC names."""
    r = resolver(example_com="v=spf1 ptr -all")
    assert check(r, "192.0.2.65") is PASS  # amy.example.com, validated
    assert check(r, "192.0.2.140") is FAIL  # mail-c.example.org: not in example.com
    assert check(r, "10.0.0.4") is FAIL  # bob.example.com is 192.0.2.66: not validated


def test_a2_multiple_domains() -> None:
    """RFC 7208 A.2: la/ny/sf.example.org redirect to example.org, which includes
    example.com and example.net."""
    r = resolver(example_org="v=spf1 include:example.com include:example.net -all",
                 la_example_org="v=spf1 redirect=example.org",
                 ny_example_org="v=spf1 redirect=example.org",
                 sf_example_org="v=spf1 redirect=example.org",
                 example_com="v=spf1 mx -all",
                 example_net="v=spf1 ip4:198.51.100.0/24 -all")
    for domain in ("example.org", "la.example.org", "ny.example.org", "sf.example.org"):
        assert check(r, "192.0.2.129", domain) is PASS  # example.com's MX
        assert check(r, "198.51.100.7", domain) is PASS  # example.net's range
        assert check(r, "192.0.2.65", domain) is FAIL


def test_a3_dnsbl_style() -> None:
    """RFC 7208 A.3: mobile users by local part, remote users by local part and IP."""
    r = resolver(example_com="v=spf1 mx include:mobile-users._spf.%{d} "
                             "include:remote-users._spf.%{d} -all")
    r.set("mobile-users._spf.example.com", "TXT", ["v=spf1 exists:%{l1r+}.%{d}"])
    r.set("remote-users._spf.example.com", "TXT", ["v=spf1 exists:%{ir}.%{l1r+}.%{d}"])
    for name in ("mary.mobile-users", "fred.mobile-users",
                 "15.15.168.192.joel.remote-users", "16.15.168.192.joel.remote-users"):
        r.set(f"{name}._spf.example.com", "A", ["127.0.0.2"])
    assert check(r, "192.0.2.129", sender="anyone@example.com") is PASS  # mx
    assert check(r, "203.0.113.9", sender="mary@example.com") is PASS
    assert check(r, "203.0.113.9", sender="fred@example.com") is PASS
    assert check(r, "192.168.15.15", sender="joel@example.com") is PASS
    assert check(r, "192.168.15.16", sender="joel@example.com") is PASS
    assert check(r, "192.168.15.17", sender="joel@example.com") is FAIL
    assert check(r, "203.0.113.9", sender="joel@example.com") is FAIL
    assert check(r, "203.0.113.9", sender="bob@example.com") is FAIL
    # %{l1r+}: the local part split on "+", reversed, its last part: the part
    # before the first "+", so a sub-address is still Mary
    assert check(r, "203.0.113.9", sender="mary+lists@example.com") is PASS


def test_a4_multiple_requirements() -> None:
    """RFC 7208 A.4: the address in 192.0.2.0/24 AND a validated PTR name, by De
    Morgan's law with "-include" and "+all"."""
    r = resolver(example_com="v=spf1 -include:ip4._spf.%{d} -include:ptr._spf.%{d} +all")
    r.set("ip4._spf.example.com", "TXT", ["v=spf1 -ip4:192.0.2.0/24 +all"])
    # As printed, "-ptr" has no domain-spec, so it names the included record's own
    # <domain> (5.5: ptr._spf.example.com), which no validated name is under: the
    # second requirement can never be met and every host fails.
    r.set("ptr._spf.example.com", "TXT", ["v=spf1 -ptr +all"])
    assert check(r, "192.0.2.65") is FAIL
    # With the domain the example means, only hosts meeting both requirements pass.
    r.set("ptr._spf.example.com", "TXT", ["v=spf1 -ptr:example.com +all"])
    assert check(r, "192.0.2.65") is PASS  # in range, amy.example.com validated
    assert check(r, "192.0.2.140") is FAIL  # in range, PTR in example.org
    assert check(r, "192.0.2.200") is FAIL  # in range, no PTR
    assert check(r, "10.0.0.4") is FAIL  # out of range
