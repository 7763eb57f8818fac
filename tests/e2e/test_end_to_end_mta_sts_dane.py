"""End-to-end transports (``mode = "end-to-end"``, routed by MX) under MTA-STS (RFC
8461) and DANE (RFC 7672): the same policy as queued MX delivery, over real sockets
(the loopback DNS server, the policy over HTTPS on port 443 of a loopback address,
TLS-capable fake MX hosts).  A host the policy forbids is never used; when no host
is left the message stays queued (the sender gets the ordinary answer) rather than
going out in clear; TLS-RPT counts the sessions."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from mailyard.config import (
    Config,
    DaneConfig,
    DeliveryConfig,
    MtaStsConfig,
    TransportMode,
    TransportRoute,
)
from mailyard.delivery.now import EndToEndDelivery
from mailyard.envelope import Envelope, Recipient
from mailyard.queue.spool import FileSpool
from mailyard.queue.threaded import ThreadedSpool
from mailyard.tls import server_context
from mailyard.tlsrpt.store import TlsOutcomes
from tests.e2e.test_outbound_mta_sts_dane import (
    POLICY_ID,
    Net,
    policy,
    serve_policy,
    spki_sha256,
    tls_mx,
)
from tests.support.certs import make_ca
from tests.support.dnsserver import DnsTestServer
from tests.support.fake_smtp import FakeSmtpServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90),
              pytest.mark.skipif(os.geteuid() != 0, reason="serves HTTPS on port 443")]

CONTENT = b"From: s@origin.test\r\nSubject: t\r\n\r\nhello\r\n"
ENVELOPE = Envelope("s@origin.test", (Recipient("r@dest.test"),))


@pytest.fixture
def world(tmp_path):  # type: ignore[no-untyped-def]
    """The loopback addresses, a test CA and the DNS server with the MTA-STS names."""
    net = Net()
    ca = make_ca(tmp_path)
    zones = {
        "_mta-sts.dest.test": {"TXT": [f"v=STSv1; id={POLICY_ID}"]},
        "mta-sts.dest.test": {"A": [net.https]},
        "mx1.dest.test": {"A": [net.mx1]},
        "mx2.dest.test": {"A": [net.mx2]},
    }
    with DnsTestServer(zones) as dns:
        yield net, ca, dns


def config_for(tmp_path: Path, dns, port: int, ca_file: str,  # type: ignore[no-untyped-def]
               dane: bool = False) -> Config:
    route = TransportRoute(domain="dest.test", mode=TransportMode.END_TO_END)
    return Config(hostname="client.test", data_dir=str(tmp_path), delivery=DeliveryConfig(
        dns_servers=(dns.server_spec,), dns_timeout=2.0, smtp_port=port, connect_timeout=5.0,
        command_timeout=5.0, data_timeout=5.0, transports=(route,)),
        mta_sts=MtaStsConfig(ca_file=ca_file), dane=DaneConfig(enabled=dane))


async def relay(config: Config, tmp_path: Path) -> tuple[str | None, list[str]]:
    """Queue the message, relay it end to end: (the sender's reply or None when it
    stays queued, the queue ids left)."""
    spool = FileSpool(tmp_path / "queue", "client.test")
    queue = ThreadedSpool(spool)
    now = EndToEndDelivery(config, queue)
    try:
        assert now.applies(ENVELOPE)
        qid = await queue.enqueue(ENVELOPE, CONTENT)
        reply = await now.deliver(qid, ENVELOPE)
        left = [e.qid for e in spool.list()]
    finally:
        await now.close()
        queue.close()
    return (None if reply is None else str(reply)), left


def outcomes(tmp_path: Path) -> list[tuple[str, str, str, int]]:
    store = TlsOutcomes(tmp_path / "tls-rpt.db")
    try:
        return [(r.policy_type, r.mx_host, r.result, r.count) for r in store.rows()]
    finally:
        store.close()


def test_enforce_uses_only_the_hosts_the_policy_lists(world, tmp_path) -> None:
    net, ca, dns = world
    dns.set("dest.test", "MX", ["10 mx2.dest.test", "20 mx1.dest.test"])

    async def go():  # type: ignore[no-untyped-def]
        https = await serve_policy(net.https, server_context(*ca.issue(
            tmp_path, "mta-sts.dest.test")), policy("enforce", "mx1.dest.test"))
        async with tls_mx(ca, tmp_path, "mx1.dest.test", net.mx1) as mx1, \
                tls_mx(ca, tmp_path, "mx2.dest.test", net.mx2, mx1.port) as mx2:
            result = await relay(config_for(tmp_path, dns, mx1.port, str(ca.cert_file)),
                                 tmp_path)
            https.close()
            return result, mx1, mx2
    (reply, left), mx1, mx2 = asyncio.run(go())
    assert reply is not None and reply.startswith("250 ") and "next hop" in reply, reply
    assert left == []
    assert len(mx1.messages) == 1 and "STARTTLS" in mx1.commands
    assert mx2.connections == 0
    assert ("sts", "mx2.dest.test", "validation-failure", 1) in outcomes(tmp_path)
    assert ("sts", "mx1.dest.test", "", 1) in outcomes(tmp_path)


def test_enforce_without_tls_keeps_the_message_queued(world, tmp_path) -> None:
    """The MX host offers no STARTTLS: nothing goes out in clear, the message stays
    in the queue for the dispatcher (which applies the same policy)."""
    net, ca, dns = world
    dns.set("dest.test", "MX", ["10 mx1.dest.test"])

    async def go():  # type: ignore[no-untyped-def]
        https = await serve_policy(net.https, server_context(*ca.issue(
            tmp_path, "mta-sts.dest.test")), policy("enforce", "mx1.dest.test"))
        async with FakeSmtpServer(host=net.mx1) as mx1:
            result = await relay(config_for(tmp_path, dns, mx1.port, str(ca.cert_file)),
                                 tmp_path)
            https.close()
            return result, mx1
    (reply, left), mx1 = asyncio.run(go())
    assert reply is None and len(left) == 1
    assert mx1.messages == []
    assert ("sts", "mx1.dest.test", "starttls-not-supported", 1) in outcomes(tmp_path)


@pytest.mark.parametrize("matching", [True, False])
def test_dane_ee_record_decides(world, tmp_path, matching: bool) -> None:
    """DANE-EE(3) over a validated TLSA record: a certificate from no known CA is
    accepted when its key matches; a mismatch keeps the message queued."""
    net, ca, dns = world
    dns.authenticated = True
    dns.set("dest.test", "MX", ["10 mx1.dest.test"])
    dns.set("_mta-sts.dest.test", "TXT", [])
    other = make_ca(tmp_path, "Unknown CA")
    cert_key = other.issue(tmp_path, "whatever.invalid")
    digest = spki_sha256(cert_key[0]) if matching else "00" * 32
    dns.set("_25._tcp.mx1.dest.test", "TLSA", [f"3 1 1 {digest}"])

    async def go():  # type: ignore[no-untyped-def]
        async with FakeSmtpServer(starttls="ok", ssl_context=server_context(*cert_key),
                                  host=net.mx1) as mx1:
            result = await relay(config_for(tmp_path, dns, mx1.port, "", dane=True), tmp_path)
            return result, mx1
    (reply, left), mx1 = asyncio.run(go())
    if matching:
        assert reply is not None and reply.startswith("250 "), reply
        assert len(mx1.messages) == 1 and left == []
        assert ("tlsa", "mx1.dest.test", "", 1) in outcomes(tmp_path)
    else:
        assert reply is None and len(left) == 1 and mx1.messages == []
        assert ("tlsa", "mx1.dest.test", "validation-failure", 1) in outcomes(tmp_path)
