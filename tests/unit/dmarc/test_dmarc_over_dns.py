"""DMARC over real DNS: the dnspython resolver against the test DNS server on
127.0.0.1 (UDP, and TCP for answers too big for UDP).  A server that never answers
gives temperror once the resolver times out, never a stalled check."""

from __future__ import annotations

import asyncio

import pytest

from mailyard.dmarc import (
    Disposition,
    DkimOutcome,
    DmarcStatus,
    SpfOutcome,
    evaluate_message,
    load_public_suffixes,
)
from mailyard.dns import CachingResolver, DnsPythonResolver
from tests.support.dnsserver import DnsTestServer

pytestmark = pytest.mark.timeout(30)

LONG_RUA = ",".join(f"mailto:dmarc-{i}@reports.example.com" for i in range(60))
ZONES = {
    "_dmarc.example.com": {"TXT": ["v=DMARC1; p=reject; sp=quarantine; rua=" + LONG_RUA]},
    "example.com": {"MX": ["10 mx.example.com"]},
    "news.example.com": {"A": ["127.0.0.5"]},
    "_dmarc.two.example": {"TXT": ["v=DMARC1; p=reject", "v=DMARC1; p=none"]},
    "_dmarc.slow.example": {"TXT": ["v=DMARC1; p=reject"]},
}


@pytest.fixture(scope="module")
def server():
    srv = DnsTestServer(ZONES).start()
    yield srv
    srv.stop()


def evaluate(server, from_value, spf=None, dkim=()):
    resolver = CachingResolver(DnsPythonResolver([server.server_spec], timeout=0.5))
    return asyncio.run(evaluate_message([from_value], spf, list(dkim), resolver,
                                        load_public_suffixes(), lambda: 0))


def test_policy_record_over_2000_octets_comes_over_tcp(server):
    result = evaluate(server, "a@example.com", SpfOutcome("fail", "example.com"))
    assert result.status is DmarcStatus.FAIL and result.disposition is Disposition.REJECT
    assert len(result.record.rua) == 10  # the record's first ten URIs are kept


def test_subdomain_falls_back_to_the_organizational_domain(server):
    result = evaluate(server, "b@news.example.com",
                      dkim=[DkimOutcome("pass", "example.com", "s")])
    assert result.status is DmarcStatus.PASS and result.policy_domain == "example.com"
    result = evaluate(server, "b@news.example.com")
    assert result.disposition is Disposition.QUARANTINE


def test_6_6_3_two_records_mean_no_dmarc(server):
    assert evaluate(server, "c@two.example").status is DmarcStatus.NONE


def test_unanswered_query_is_temperror_within_the_timeout(server):
    server.drop("_dmarc.slow.example")
    try:
        result = evaluate(server, "d@slow.example")  # the module's timeout bounds a hang
    finally:
        server.heal()
    assert result.status is DmarcStatus.TEMPERROR and result.disposition is Disposition.NONE


def test_servfail_is_temperror(server):
    server.servfail("_dmarc.slow.example")
    try:
        assert evaluate(server, "d@slow.example").status is DmarcStatus.TEMPERROR
    finally:
        server.heal()
