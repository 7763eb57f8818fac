"""DnsPythonResolver against the test DNS server on 127.0.0.1 (real UDP/TCP)."""

from __future__ import annotations

import asyncio
import time

import pytest

from mailyard.config import DeliveryConfig
from mailyard.dns import (
    AnswerKind,
    CachingResolver,
    DnsNameError,
    DnsPythonResolver,
    DnsTemporaryError,
    MxKind,
    MxRecord,
    make_resolver,
)
from tests.support.dnsserver import DnsTestServer

pytestmark = pytest.mark.timeout(30)

ZONES = {
    "example.org": {"MX": ["10 mx1.example.org", "20 mx2.example.org"],
                    "TXT": ["v=spf1 mx -all"]},
    "mx1.example.org": {"A": ["127.0.0.11"], "AAAA": ["::1"]},
    "mx2.example.org": {"A": ["127.0.0.12"]},
    "alias.example.org": {"CNAME": ["mx1.example.org"]},
    "implicit.example": {"A": ["127.0.0.20"]},
    "nullmx.example": {"MX": ["0 ."]},
    "big.example": {"TXT": ["x" * 2000]},
}


@pytest.fixture(scope="module")
def server():
    srv = DnsTestServer(ZONES, ttl=300, negative_ttl=45).start()
    yield srv
    srv.stop()


@pytest.fixture
def resolver(server):
    server.heal()
    return DnsPythonResolver([server.server_spec], timeout=0.5)


def run(coro):
    return asyncio.run(coro)


def test_mx_records_with_preferences(resolver):
    """RFC 5321 5.1: MX records carry a preference and a host."""
    result = run(resolver.mx("example.org"))
    assert result.kind is MxKind.RECORDS
    assert sorted(result.records, key=lambda r: r.preference) == [
        MxRecord(10, "mx1.example.org"), MxRecord(20, "mx2.example.org")]
    assert result.ttl == 300


def test_mx_is_case_insensitive_and_ignores_trailing_dot(resolver):
    assert run(resolver.mx("EXAMPLE.org.")).kind is MxKind.RECORDS


def test_no_mx_but_address_is_no_records(resolver):
    """RFC 5321 5.1: no MX -> implicit MX; the resolver reports NO_RECORDS."""
    result = run(resolver.mx("implicit.example"))
    assert result.kind is MxKind.NO_RECORDS
    assert result.ttl == 45  # negative TTL from the SOA (RFC 2308 5)
    assert run(resolver.addresses("implicit.example")) == ["127.0.0.20"]


def test_null_mx(resolver):
    """RFC 7505 3: a single '0 .' MX record means the domain accepts no mail."""
    assert run(resolver.mx("nullmx.example")).kind is MxKind.NULL_MX


def test_nxdomain_is_a_result_not_an_error(resolver):
    result = run(resolver.mx("nowhere.example"))
    assert result.kind is MxKind.NXDOMAIN
    answer = run(resolver.query("nowhere.example", "A"))
    assert answer.kind is AnswerKind.NXDOMAIN and answer.ttl == 45


def test_addresses_ipv6_then_ipv4(resolver):
    assert run(resolver.addresses("mx1.example.org")) == ["::1", "127.0.0.11"]


def test_cname_is_followed(resolver):
    """RFC 1034 3.6.2: an alias resolves to its target's addresses."""
    answer = run(resolver.query("alias.example.org", "A"))
    assert answer.records == ("127.0.0.11",)
    assert answer.canonical_name == "mx1.example.org"


def test_txt(resolver):
    assert run(resolver.txt("example.org")) == ["v=spf1 mx -all"]


def test_truncated_udp_answer_retried_over_tcp(resolver, server):
    """RFC 7766 5: a TC answer makes the client retry over TCP."""
    assert run(resolver.txt("big.example")) == ["x" * 2000]
    transports = [t for n, ty, t in server.queries if n == "big.example"]
    assert transports[-2:] == ["udp", "tcp"]


def test_servfail_is_temporary(resolver, server):
    server.servfail("example.org")
    with pytest.raises(DnsTemporaryError):
        run(resolver.mx("example.org"))


def test_timeout_is_temporary(resolver, server):
    server.drop("example.org")
    started = time.monotonic()
    with pytest.raises(DnsTemporaryError) as info:
        run(resolver.mx("example.org"))
    assert info.value.reason == "timeout"
    assert time.monotonic() - started < 5


def test_one_family_failing_still_gives_the_other(resolver, server):
    """A server that fails AAAA but answers A still yields IPv4 addresses."""
    real = server.handle

    def fail_aaaa(wire: bytes, transport: str):
        import dns.message

        query = dns.message.from_wire(wire)
        if query.question[0].rdtype == 28:  # AAAA
            return None
        return real(wire, transport)

    server.handle = fail_aaaa  # type: ignore[method-assign]
    try:
        assert run(resolver.addresses("mx2.example.org")) == ["127.0.0.12"]
    finally:
        server.handle = real  # type: ignore[method-assign]


def test_invalid_name(resolver):
    with pytest.raises(DnsNameError):
        run(resolver.mx("a" * 64 + ".example"))


def test_international_domain_is_queried_as_a_labels(resolver, server):
    """RFC 5891 (IDNA 2008): U-labels are converted to A-labels before the query."""
    server.set("xn--bcher-kva.example", "MX", ["5 mx1.example.org"])
    assert run(resolver.mx("Bücher.example")).records == (MxRecord(5, "mx1.example.org"),)


def test_server_port_from_config(server):
    """delivery.dns_servers takes ip:port, so a server on a non-53 port is used."""
    cfg = DeliveryConfig(dns_servers=(server.server_spec,), dns_timeout=1.0)
    resolver = make_resolver(cfg)
    assert isinstance(resolver, CachingResolver)
    assert run(resolver.mx("example.org")).kind is MxKind.RECORDS


def test_cache_in_front_of_real_resolver(server):
    """Answers are cached for their TTL (RFC 1035 3.2.1); NXDOMAIN for the SOA
    negative TTL (RFC 2308 5)."""
    now = [1000.0]
    resolver = CachingResolver(DnsPythonResolver([server.server_spec], timeout=0.5),
                               clock=lambda: now[0])

    def count(name: str) -> int:
        return sum(1 for n, _, _ in server.queries if n == name)

    async def scenario() -> None:
        before = count("example.org"), count("nowhere.example")
        await resolver.mx("example.org")
        await resolver.mx("example.org")
        await resolver.mx("nowhere.example")
        await resolver.mx("nowhere.example")
        assert (count("example.org"), count("nowhere.example")) == (before[0] + 1, before[1] + 1)
        now[0] += 46  # past the negative TTL, within the positive one
        await resolver.mx("example.org")
        await resolver.mx("nowhere.example")
        assert (count("example.org"), count("nowhere.example")) == (before[0] + 1, before[1] + 2)
        now[0] += 300
        await resolver.mx("example.org")
        assert count("example.org") == before[0] + 2

    run(scenario())


def test_server_runs_as_a_module(tmp_path):
    """``python -m tests.support.dnsserver --zone file.json`` serves the zone."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    zone = tmp_path / "zone.json"
    zone.write_text(json.dumps({"bench.example": {"MX": ["10 mx.bench.example"]}}))
    root = Path(__file__).resolve().parents[3]
    env = dict(os.environ, PYTHONPATH=f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    proc = subprocess.Popen([sys.executable, "-m", "tests.support.dnsserver", "--zone",
                             str(zone), "--port", "0"], cwd=root, env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving DNS on 127.0.0.1:")
        spec = line.rsplit(" ", 1)[1].strip()
        result = run(DnsPythonResolver([spec], timeout=1.0).mx("bench.example"))
        assert result.records == (MxRecord(10, "mx.bench.example"),)
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_dnssec_resolver_reports_the_ad_bit() -> None:
    """RFC 4035 3.2.3 / RFC 6840 5.7: with dnssec the query asks for validation and
    the answer's AD bit becomes RecordSet.authenticated; without, nothing is trusted."""
    signed = DnsTestServer({"_25._tcp.mx.example.org": {"TLSA": ["3 1 1 " + "ab" * 32]},
                            "plain.example.org": {"A": ["127.0.0.30"]}},
                           authenticated=True).start()
    signed.unsigned.add("plain.example.org")
    try:
        async def go() -> tuple[bool, bool, bool, str]:
            validating = DnsPythonResolver([signed.server_spec], 2.0, dnssec=True)
            tlsa = await validating.query("_25._tcp.mx.example.org", "TLSA")
            plain = await validating.query("plain.example.org", "A")
            ordinary = DnsPythonResolver([signed.server_spec], 2.0)
            unasked = await ordinary.query("_25._tcp.mx.example.org", "TLSA")
            return tlsa.authenticated, plain.authenticated, unasked.authenticated, \
                tlsa.records[0]
        secure, plain, unasked, record = asyncio.run(go())
    finally:
        signed.stop()
    assert secure and not plain and not unasked
    assert record == "3 1 1 " + "ab" * 32
