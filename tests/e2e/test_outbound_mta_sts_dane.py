"""MX delivery under MTA-STS (RFC 8461) and DANE (RFC 7672), over real sockets: the
loopback DNS server (with the AD bit for DANE), a policy served over HTTPS on port 443
of a loopback address with a test CA, and TLS-capable fake MX hosts on other loopback
addresses.  Delivery is Mailyard's own outbound engine (routing, TLS policy,
connection pool, SMTP client); TLS-RPT counts are read back from its store."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import random
import ssl
from pathlib import Path

import pytest
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mailyard.config import Config, DaneConfig, DeliveryConfig, MtaStsConfig
from mailyard.delivery.outbound import OutboundDelivery
from mailyard.envelope import Envelope, Recipient
from mailyard.queue.api import AttemptStatus, QueuedRecipient, QueueEntry, RecipientState
from mailyard.tls import server_context
from mailyard.tlsrpt.store import TlsOutcomes
from tests.support.certs import make_ca
from tests.support.dnsserver import DnsTestServer
from tests.support.fake_smtp import FakeSmtpServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90),
              pytest.mark.skipif(os.geteuid() != 0, reason="serves HTTPS on port 443")]

CONTENT = b"Subject: t\r\n\r\nhello\r\n"
POLICY_ID = "20261201"


def policy(mode: str, *mx: str) -> bytes:
    lines = ["version: STSv1", f"mode: {mode}", *(f"mx: {m}" for m in mx), "max_age: 86400"]
    return "".join(line + "\r\n" for line in lines).encode()


class Net:
    """Loopback addresses of one test: .1 DNS-named policy host, .2 and .3 MX hosts."""

    def __init__(self) -> None:
        prefix = f"127.{random.randint(20, 250)}.{random.randint(1, 250)}"
        self.https, self.mx1, self.mx2 = f"{prefix}.1", f"{prefix}.2", f"{prefix}.3"


async def serve_policy(address: str, context: ssl.SSLContext, body: bytes,
                       content_type: str = "text/plain") -> asyncio.base_events.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: " + content_type.encode() +
                         b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()
    return await asyncio.start_server(handle, address, 443, ssl=context)


def entry() -> QueueEntry:
    env = Envelope("s@origin.test", (Recipient("r@dest.test"),))
    return QueueEntry("Q1", env, len(CONTENT), 0.0,
                      (QueuedRecipient(0, "r@dest.test", RecipientState.PENDING),))


async def deliver(config: Config) -> tuple[AttemptStatus, str]:
    outbound = OutboundDelivery(config)
    try:
        (result,) = await outbound.deliver(entry(), "dest.test", list(entry().recipients),
                                           lambda: io.BytesIO(CONTENT))
    finally:
        await outbound.close()
    return result.status, str(result.reply.reply)


def config_for(tmp_path: Path, dns: DnsTestServer, port: int, ca_file: str,
               dane: bool = False) -> Config:
    return Config(hostname="client.test", data_dir=str(tmp_path), delivery=DeliveryConfig(
        dns_servers=(dns.server_spec,), dns_timeout=2.0, smtp_port=port, connect_timeout=5.0,
        command_timeout=5.0, data_timeout=5.0),
        mta_sts=MtaStsConfig(ca_file=ca_file), dane=DaneConfig(enabled=dane))


def outcomes(tmp_path: Path) -> list[tuple[str, str, str, int]]:
    store = TlsOutcomes(tmp_path / "tls-rpt.db")
    try:
        return [(r.policy_type, r.mx_host, r.result, r.count) for r in store.rows()]
    finally:
        store.close()


@pytest.fixture
def world(tmp_path):
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


def tls_mx(ca, tmp_path: Path, name: str, host: str, port: int = 0) -> FakeSmtpServer:
    return FakeSmtpServer(starttls="ok", ssl_context=server_context(*ca.issue(tmp_path, name)),
                          host=host, bind_port=port)


def test_enforce_skips_an_mx_host_the_policy_does_not_list(world, tmp_path) -> None:
    """MX 10 mx2 (valid certificate, not in the policy), MX 20 mx1 (in it): the mail
    goes to mx1 only, over verified TLS."""
    net, ca, dns = world
    dns.set("dest.test", "MX", ["10 mx2.dest.test", "20 mx1.dest.test"])

    async def go():
        https = await serve_policy(net.https, server_context(*ca.issue(
            tmp_path, "mta-sts.dest.test")), policy("enforce", "mx1.dest.test"))
        async with tls_mx(ca, tmp_path, "mx1.dest.test", net.mx1) as mx1, \
                tls_mx(ca, tmp_path, "mx2.dest.test", net.mx2, mx1.port) as mx2:
            status, reply = await deliver(config_for(tmp_path, dns, mx1.port,
                                                     str(ca.cert_file)))
            https.close()
            return status, reply, mx1, mx2
    status, reply, mx1, mx2 = asyncio.run(go())
    assert status is AttemptStatus.DELIVERED, reply
    assert len(mx1.messages) == 1 and "STARTTLS" in mx1.commands
    assert mx2.connections == 0
    assert ("sts", "mx2.dest.test", "validation-failure", 1) in outcomes(tmp_path)
    assert ("sts", "mx1.dest.test", "", 1) in outcomes(tmp_path)


def test_enforce_defers_when_the_mx_host_offers_no_tls(world, tmp_path) -> None:
    net, ca, dns = world
    dns.set("dest.test", "MX", ["10 mx1.dest.test"])

    async def go():
        https = await serve_policy(net.https, server_context(*ca.issue(
            tmp_path, "mta-sts.dest.test")), policy("enforce", "mx1.dest.test"))
        async with FakeSmtpServer(host=net.mx1) as mx1:
            status, reply = await deliver(config_for(tmp_path, dns, mx1.port,
                                                     str(ca.cert_file)))
            https.close()
            return status, reply, mx1
    status, reply, mx1 = asyncio.run(go())
    assert status is AttemptStatus.DEFERRED and reply.startswith("451 4.7."), reply
    assert mx1.messages == []
    assert ("sts", "mx1.dest.test", "starttls-not-supported", 1) in outcomes(tmp_path)


def test_enforce_defers_when_the_certificate_does_not_name_the_mx(world, tmp_path) -> None:
    net, ca, dns = world
    dns.set("dest.test", "MX", ["10 mx1.dest.test"])

    async def go():
        https = await serve_policy(net.https, server_context(*ca.issue(
            tmp_path, "mta-sts.dest.test")), policy("enforce", "mx1.dest.test"))
        async with tls_mx(ca, tmp_path, "elsewhere.test", net.mx1) as mx1:
            status, reply = await deliver(config_for(tmp_path, dns, mx1.port,
                                                     str(ca.cert_file)))
            https.close()
            return status, reply, mx1
    status, reply, mx1 = asyncio.run(go())
    assert status is AttemptStatus.DEFERRED and reply.startswith("451 4.7.5"), reply
    assert mx1.messages == []
    assert ("sts", "mx1.dest.test", "certificate-host-mismatch", 1) in outcomes(tmp_path)


def test_testing_mode_delivers_without_tls_and_reports(world, tmp_path) -> None:
    net, ca, dns = world
    dns.set("dest.test", "MX", ["10 mx1.dest.test"])

    async def go():
        https = await serve_policy(net.https, server_context(*ca.issue(
            tmp_path, "mta-sts.dest.test")), policy("testing", "mx1.dest.test"))
        async with FakeSmtpServer(host=net.mx1) as mx1:
            status, reply = await deliver(config_for(tmp_path, dns, mx1.port,
                                                     str(ca.cert_file)))
            https.close()
            return status, reply, mx1
    status, reply, mx1 = asyncio.run(go())
    assert status is AttemptStatus.DELIVERED, reply
    assert len(mx1.messages) == 1
    assert ("sts", "mx1.dest.test", "starttls-not-supported", 1) in outcomes(tmp_path)


def test_policy_of_the_wrong_content_type_is_not_used(world, tmp_path) -> None:
    """RFC 8461 3.3: not text/plain -> no policy: opportunistic delivery in clear."""
    net, ca, dns = world
    dns.set("dest.test", "MX", ["10 mx1.dest.test"])

    async def go():
        https = await serve_policy(net.https, server_context(*ca.issue(
            tmp_path, "mta-sts.dest.test")), policy("enforce", "other.test"), "text/html")
        async with FakeSmtpServer(host=net.mx1) as mx1:
            status, reply = await deliver(config_for(tmp_path, dns, mx1.port,
                                                     str(ca.cert_file)))
            https.close()
            return status, reply
    status, reply = asyncio.run(go())
    assert status is AttemptStatus.DELIVERED, reply
    assert ("sts", "", "sts-policy-fetch-error", 1) in outcomes(tmp_path)


# --- DANE --------------------------------------------------------------------------------
def spki_sha256(cert_file: str) -> str:
    cert = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


@pytest.mark.parametrize(("matching", "loop"), [(True, "asyncio"), (False, "asyncio"),
                                               (True, "uvloop")])
def test_dane_ee_record_decides_over_the_certificate(world, tmp_path, matching, loop) -> None:
    """A certificate for another name from no known CA: DANE-EE(3) accepts it when the
    validated TLSA record matches its key, and defers 4.7.5 when it does not (under
    uvloop too, which ``mailyard serve`` uses: the chain is read from its TLS object)."""
    net, ca, dns = world
    dns.authenticated = True
    dns.set("dest.test", "MX", ["10 mx1.dest.test"])
    dns.set("_mta-sts.dest.test", "TXT", [])
    other = make_ca(tmp_path, "Unknown CA")
    cert_key = other.issue(tmp_path, "whatever.invalid")
    digest = spki_sha256(cert_key[0]) if matching else "00" * 32
    dns.set("_25._tcp.mx1.dest.test", "TLSA", [f"3 1 1 {digest}"])

    async def go():
        async with FakeSmtpServer(starttls="ok", ssl_context=server_context(*cert_key),
                                  host=net.mx1) as mx1:
            status, reply = await deliver(config_for(tmp_path, dns, mx1.port, "",
                                                     dane=True))
            return status, reply, mx1
    factory = uvloop.new_event_loop if loop == "uvloop" else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        status, reply, mx1 = runner.run(go())
    if matching:
        assert status is AttemptStatus.DELIVERED, reply
        assert len(mx1.messages) == 1
        assert ("tlsa", "mx1.dest.test", "", 1) in outcomes(tmp_path)
    else:
        assert status is AttemptStatus.DEFERRED and reply.startswith("451 4.7.5"), reply
        assert "DANE" in reply and mx1.messages == []
        assert ("tlsa", "mx1.dest.test", "validation-failure", 1) in outcomes(tmp_path)


def test_dane_is_not_used_without_the_ad_bit(world, tmp_path) -> None:
    """The same mismatching TLSA record from a resolver that does not validate: no
    DANE, opportunistic TLS delivers."""
    net, ca, dns = world
    dns.set("dest.test", "MX", ["10 mx1.dest.test"])
    dns.set("_mta-sts.dest.test", "TXT", [])
    dns.set("_25._tcp.mx1.dest.test", "TLSA", [f"3 1 1 {'00' * 32}"])

    async def go():
        async with tls_mx(ca, tmp_path, "mx1.dest.test", net.mx1) as mx1:
            status, reply = await deliver(config_for(tmp_path, dns, mx1.port, "",
                                                     dane=True))
            return status, reply
    status, reply = asyncio.run(go())
    assert status is AttemptStatus.DELIVERED, reply


@pytest.mark.parametrize(("name", "delivered"), [("mx1.dest.test", True),
                                                 ("other.dest.test", False)])
def test_dane_ta_record_anchors_the_chain_and_names_are_checked(world, tmp_path, name,
                                                                delivered) -> None:
    """DANE-TA(2): the server sends its CA in the chain, the TLSA record matches that CA
    (no system trust involved), and the leaf must name the MX host (RFC 7672 3.2.2)."""
    net, _, dns = world
    dns.authenticated = True
    dns.set("dest.test", "MX", ["10 mx1.dest.test"])
    dns.set("_mta-sts.dest.test", "TXT", [])
    private = make_ca(tmp_path, "Private CA")
    cert_file, key_file = private.issue(tmp_path, name)
    chain = tmp_path / "chain.pem"
    chain.write_bytes(Path(cert_file).read_bytes() + Path(private.cert_file).read_bytes())
    ca_der = private.cert.public_bytes(serialization.Encoding.DER)
    dns.set("_25._tcp.mx1.dest.test", "TLSA", [f"2 0 1 {hashlib.sha256(ca_der).hexdigest()}"])

    async def go():
        async with FakeSmtpServer(starttls="ok", ssl_context=server_context(str(chain), key_file),
                                  host=net.mx1) as mx1:
            status, reply = await deliver(config_for(tmp_path, dns, mx1.port, "", dane=True))
            return status, reply, mx1
    status, reply, mx1 = asyncio.run(go())
    if delivered:
        assert status is AttemptStatus.DELIVERED, reply
    else:
        assert status is AttemptStatus.DEFERRED and "4.7.5" in reply, reply
        assert ("tlsa", "mx1.dest.test", "certificate-host-mismatch", 1) in outcomes(tmp_path)
