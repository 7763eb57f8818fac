"""mailyard.dnsrecords: the records a domain publishes and the verdict on each, over the
in-memory resolver (the CLI tests run the same checks against a real DNS server)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from mailyard.dkim.keys import dns_record
from mailyard.dns import StaticResolver
from mailyard.dnsrecords import (
    ClientService,
    DnsRecord,
    PolicyFetcher,
    RecordKind,
    Status,
    Verdict,
    check_records,
    expected_records,
    mta_sts_policy,
)
from mailyard.dnsrecords.check import is_spf_record, spf_syntax_problem
from mailyard.dnsrecords.model import txt_strings
from mailyard.mtasts.fetch import Fetched, FetchFailed

DOMAIN, HOST = "example.org", "mx.example.org"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=1024)
DKIM_NAME = "mailyard._domainkey.example.org"


def _records() -> list[DnsRecord]:
    return expected_records(DOMAIN, HOST, dkim=[(DKIM_NAME, dns_record(KEY))],
                            services=[ClientService("imaps", 993),
                                      ClientService("submissions", 465),
                                      ClientService("submission", 587)],
                            policy=mta_sts_policy(DOMAIN, [HOST]))


def good_zone() -> dict[str, dict[str, Any]]:
    """Everything :func:`_records` asks for, published right."""
    return {
        DOMAIN: {"MX": ["10 mx.example.org"], "TXT": ["v=spf1 mx -all", "google-site=x"]},
        HOST: {"A": ["192.0.2.25"], "AAAA": ["2001:db8::25"]},
        DKIM_NAME: {"TXT": [dns_record(KEY)]},
        "_dmarc.example.org": {"TXT": ["v=DMARC1; p=reject; rua=mailto:d@example.org"]},
        "_mta-sts.example.org": {"TXT": ["v=STSv1; id=20261201"]},
        "mta-sts.example.org": {"A": ["192.0.2.80"]},
        "_smtp._tls.example.org": {"TXT": ["v=TLSRPTv1; rua=mailto:tls@example.org"]},
        "_submissions._tcp.example.org": {"SRV": ["0 1 465 mx.example.org"]},
        "_submission._tcp.example.org": {"SRV": ["10 1 587 mx.example.org"]},
        "_imaps._tcp.example.org": {"SRV": ["0 1 993 mx.example.org"]},
    }


def verdicts(zone: dict[str, dict[str, Any]]) -> dict[str, Verdict]:
    found = asyncio.run(check_records(StaticResolver(zone), _records(), hostname=HOST))
    return {f"{v.record.kind}:{v.record.name}": v for v in found}


def test_the_records_to_publish() -> None:
    records = _records()
    by_kind = {r.kind: r for r in records}
    assert by_kind[RecordKind.MX].value == "10 mx.example.org"
    assert by_kind[RecordKind.SPF].value == "v=spf1 mx -all"
    assert by_kind[RecordKind.DMARC].name == "_dmarc.example.org"
    assert "p=quarantine" in by_kind[RecordKind.DMARC].value
    assert "rua=mailto:dmarc-reports@example.org" in by_kind[RecordKind.DMARC].value
    assert by_kind[RecordKind.TLS_RPT].name == "_smtp._tls.example.org"
    # RFC 8314 5.1: implicit TLS first; RFC 6186 3.4: priorities order the services.
    srv = [(r.name, r.value) for r in records if r.kind is RecordKind.SRV]
    assert srv == [("_imaps._tcp.example.org", "0 1 993 mx.example.org"),
                   ("_submissions._tcp.example.org", "0 1 465 mx.example.org"),
                   ("_submission._tcp.example.org", "10 1 587 mx.example.org")]


def test_mta_sts_id_follows_the_policy() -> None:
    same = mta_sts_policy(DOMAIN, [HOST])
    assert same == mta_sts_policy(DOMAIN, [HOST])
    assert same.policy_id != mta_sts_policy(DOMAIN, ["mx2.example.org"]).policy_id
    assert same.policy_id.isalnum() and len(same.policy_id) <= 32  # RFC 8461 3.1
    assert same.url == "https://mta-sts.example.org/.well-known/mta-sts.txt"


def test_zone_lines_split_long_txt_into_255_octet_strings() -> None:
    """RFC 1035 3.3: a character-string holds 255 octets; a 2048-bit key needs two."""
    dkim = next(r for r in _records() if r.kind is RecordKind.DKIM)
    line = dkim.zone_line()
    assert line.startswith("mailyard._domainkey.example.org. 3600 IN TXT \"v=DKIM1; k=rsa; p=")
    strings = line.split(" IN TXT ", 1)[1].split('" "')
    assert len(strings) == 2 and len(strings[0].strip('"')) == 255
    assert "".join(s.strip('"') for s in strings) == dkim.value
    assert txt_strings('a"b') == ['a\\"b']
    mx = next(r for r in _records() if r.kind is RecordKind.MX)
    assert mx.zone_line() == "example.org. 3600 IN MX 10 mx.example.org."


def test_a_correct_zone_is_all_ok() -> None:
    found = verdicts(good_zone())
    assert {k: v.status for k, v in found.items() if not v.ok} == {}
    assert len(found) == len(_records())


def test_an_empty_zone_is_all_missing_with_the_record_to_publish() -> None:
    found = verdicts({})
    assert {v.status for v in found.values()} == {Status.MISSING}
    mx = found["mx:example.org"]
    assert mx.fix == "publish: example.org. 3600 IN MX 10 mx.example.org."


@pytest.mark.parametrize(("name", "rdtype", "values", "key", "problem"), [
    ("example.org", "MX", ["10 other.example.net"], "mx:example.org", "not this server"),
    ("example.org", "MX", ["0 ."], "mx:example.org", "Null MX"),
    ("mx.example.org", "A", None, "mx:example.org", "no A or AAAA"),
    # RFC 7208 4.5: two SPF records are a permerror.
    ("example.org", "TXT", ["v=spf1 mx -all", "v=spf1 a -all"], "spf:example.org",
     "2 SPF records"),
    ("example.org", "TXT", ["v=spf1 ip4:198.51.100.0/24 -all"], "spf:example.org",
     "does not let this server"),
    ("example.org", "TXT", ["v=spf1 mx bogus:x -all"], "spf:example.org", "unknown mechanism"),
    # check_host() follows the include:, which names no SPF record (RFC 7208 5.2).
    ("example.org", "TXT", ["v=spf1 include:_spf.provider.example -all"], "spf:example.org",
     "SPF result: permerror"),
    ("example.org", "TXT", ["v=spf1 ip4:198.51.100.0/24 ~all"], "spf:example.org",
     "SPF result: softfail"),
    (DKIM_NAME, "TXT", [dns_record(OTHER_KEY)], f"dkim:{DKIM_NAME}", "not this server's key"),
    (DKIM_NAME, "TXT", ["v=DKIM1; k=rsa; p="], f"dkim:{DKIM_NAME}", "revoked"),
    ("_dmarc.example.org", "TXT", ["v=DMARC1; p=none"], "dmarc:_dmarc.example.org", "p=none"),
    ("_dmarc.example.org", "TXT", ["v=DMARC1; p=reject", "v=DMARC1; p=none"],
     "dmarc:_dmarc.example.org", "2 DMARC records"),
    ("_mta-sts.example.org", "TXT", ["v=STSv1; id=bad-id!"], "mta-sts:_mta-sts.example.org",
     "invalid"),
    ("mta-sts.example.org", "A", [], "mta-sts:_mta-sts.example.org", "cannot fetch"),
    ("_smtp._tls.example.org", "TXT", ["v=TLSRPTv1; rua=ftp://x"],
     "tls-rpt:_smtp._tls.example.org", "malformed"),
    ("_imaps._tcp.example.org", "SRV", ["0 1 993 imap.example.net"],
     "srv:_imaps._tcp.example.org", "imap.example.net port 993"),
    ("_submission._tcp.example.org", "SRV", ["0 0 0 ."], "srv:_submission._tcp.example.org",
     "not offered"),
])
def test_wrong_records(name: str, rdtype: str, values: list[str] | None, key: str,
                       problem: str) -> None:
    zone = good_zone()
    if values is None:
        del zone[name]
    else:
        zone[name] = {**zone.get(name, {}), rdtype: values}
    found = verdicts(zone)
    verdict = found[key]
    assert verdict.status is Status.WRONG, verdict
    assert problem in verdict.problem and verdict.fix
    # SPF's "mx" stops covering this server when the MX no longer names it.
    also = ["spf:example.org"] if (name, rdtype) == (DOMAIN, "MX") else []
    assert sorted(k for k, v in found.items() if not v.ok) == sorted([key, *also])


def test_spf_covering_the_server_by_address_or_include_is_ok() -> None:
    zone = good_zone()
    zone[DOMAIN]["TXT"] = ["v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 ~all"]
    assert verdicts(zone)["spf:example.org"].ok
    zone[DOMAIN]["TXT"] = ["v=spf1 include:_spf.provider.example -all"]
    zone["_spf.provider.example"] = {"TXT": ["v=spf1 a:mx.example.org -all"]}
    assert verdicts(zone)["spf:example.org"].ok


def test_spf_evaluator_decides_when_given() -> None:
    """With an evaluator (the SPF module), its result decides: include: chains and all."""
    asked: list[tuple[str, str]] = []

    async def evaluate(ip: str, domain: str) -> str:
        asked.append((ip, domain))
        return "softfail" if ":" in ip else "pass"

    found = asyncio.run(check_records(StaticResolver(good_zone()), _records(), hostname=HOST,
                                      spf=evaluate))
    spf = next(v for v in found if v.record.kind is RecordKind.SPF)
    assert spf.status is Status.WRONG and "softfail" in spf.problem
    assert ("2001:db8::25", "example.org") in asked


def test_dmarc_notes_do_not_make_it_wrong() -> None:
    zone = good_zone()
    zone["_dmarc.example.org"]["TXT"] = ["v=DMARC1; p=quarantine; pct=20"]
    verdict = verdicts(zone)["dmarc:_dmarc.example.org"]
    assert verdict.ok and any("rua" in n for n in verdict.notes)
    assert any("pct=20" in n for n in verdict.notes)


def test_a_failed_lookup_is_unknown_not_missing() -> None:
    resolver = StaticResolver(good_zone())
    resolver.fail("_dmarc.example.org", "timeout")
    found = asyncio.run(check_records(resolver, _records(), hostname=HOST))
    dmarc = next(v for v in found if v.record.kind is RecordKind.DMARC)
    assert dmarc.status is Status.UNKNOWN and "timeout" in dmarc.problem
    assert sum(1 for v in found if not v.ok) == 1


@pytest.mark.parametrize(("text", "is_spf"), [
    ("v=spf1 -all", True), ("V=SPF1 mx", True), ("v=spf1", True),  # RFC 7208 4.5
    ("v=spf10 mx", False), ("spf2.0/pra mx", False), ("v=spf1x", False),
])
def test_spf_record_selection(text: str, is_spf: bool) -> None:
    assert is_spf_record(text) is is_spf


@pytest.mark.parametrize(("text", "problem"), [
    ("v=spf1 mx a:mail.example.org/24 ip4:192.0.2.1 ip6:2001:db8::/32 include:_spf.x.net "
     "exists:%{i}.x.net ptr ~all", ""),
    ("v=spf1 redirect=_spf.example.net", ""),
    ("v=spf1 mx -all foo=bar", ""),  # RFC 7208 6: unknown modifiers are ignored
    ("v=spf1 mx redirect=a.example redirect=b.example", "redirect= appears more than once"),
    ("v=spf1 ip4:300.x -all", "invalid address"),
    ("v=spf1 mx all-", "'all' takes no argument"),
])
def test_spf_syntax(text: str, problem: str) -> None:
    assert (problem in spf_syntax_problem(text)) if problem else spf_syntax_problem(text) == ""


def fetched_policy(text: str | None) -> PolicyFetcher:
    async def fetch(domain: str) -> Fetched | FetchFailed:
        assert domain == DOMAIN
        return FetchFailed("mta-sts.example.org: cannot connect") if text is None \
            else Fetched(text)
    return fetch


@pytest.mark.parametrize(("text", "status", "said"), [
    (mta_sts_policy(DOMAIN, [HOST]).text, Status.OK, "mode testing"),
    ("version: STSv1\r\nmode: enforce\r\nmx: *.example.org\r\nmax_age: 86400\r\n",
     Status.OK, ""),
    (None, Status.WRONG, "cannot be fetched: mta-sts.example.org: cannot connect"),
    ("version: STSv1\r\nmode: enforce\r\n", Status.WRONG, "invalid"),
    # RFC 8461 4.1: senders enforcing it would refuse this server.
    ("version: STSv1\r\nmode: enforce\r\nmx: mx.example.net\r\nmax_age: 86400\r\n",
     Status.WRONG, "do not match this server"),
])
def test_mta_sts_policy_fetched(text: str | None, status: Status, said: str) -> None:
    found = asyncio.run(check_records(StaticResolver(good_zone()), _records(), hostname=HOST,
                                      fetch_policy=fetched_policy(text)))
    verdict = next(v for v in found if v.record.kind is RecordKind.MTA_STS)
    assert verdict.status is status
    assert said in verdict.problem + " ".join(verdict.notes)
