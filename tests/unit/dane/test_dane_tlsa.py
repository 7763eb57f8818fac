"""DANE (RFC 7672) TLSA matching against certificate chains made in the test, and the
lookup rules of RFC 7672 2.2 over an in-memory resolver with the AD bit."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mailyard.dane.lookup import DaneState, host_dane, mx_secure
from mailyard.dane.tlsa import check_chain, name_matches, usable_records
from mailyard.dns import StaticResolver
from tests.support.certs import make_ca, self_signed


def der(path: str | Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(Path(path).read_text())


def spki(cert_der: bytes) -> bytes:
    return x509.load_der_x509_certificate(cert_der).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def tlsa(usage: int, selector: int, mtype: int, data: bytes) -> str:
    digest = {0: data, 1: hashlib.sha256(data).digest(), 2: hashlib.sha512(data).digest()}
    return f"{usage} {selector} {mtype} {digest[mtype].hex()}"


def test_rfc7672_3_1_3_only_dane_ta_and_dane_ee_records_are_usable() -> None:
    digest = "ab" * 32
    records = usable_records([f"0 0 1 {digest}", f"1 1 1 {digest}", f"2 0 1 {digest}",
                              f"3 1 1 {digest}", f"3 2 1 {digest}", f"3 1 3 {digest}",
                              "3 1 1 abcd", "junk"])
    assert [(r.usage, r.selector) for r in records] == [(2, 0), (3, 1)]


def test_rfc7672_3_1_1_dane_ee_matches_by_key_or_certificate_ignoring_name(tmp_path) -> None:
    """DANE-EE: a self-signed certificate for another name still matches."""
    leaf = der(self_signed(tmp_path, "unrelated.invalid")[0])
    for record in (tlsa(3, 1, 1, spki(leaf)), tlsa(3, 0, 1, leaf), tlsa(3, 1, 2, spki(leaf)),
                   tlsa(3, 0, 0, leaf)):
        verdict = check_chain(usable_records([record]), [leaf], ["mx.example.com"])
        assert verdict.ok, (record[:12], verdict)


def test_rfc7672_3_1_1_dane_ee_ignores_expiry(tmp_path) -> None:
    leaf = der(self_signed(tmp_path, "mx.example.com")[0])
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=3650)
    assert check_chain(usable_records([tlsa(3, 1, 1, spki(leaf))]), [leaf], [], later).ok


def test_dane_ee_mismatch_is_a_validation_failure(tmp_path) -> None:
    leaf = der(self_signed(tmp_path, "mx.example.com")[0])
    other = der(self_signed(tmp_path, "other.example.com")[0])
    verdict = check_chain(usable_records([tlsa(3, 1, 1, spki(other))]), [leaf],
                          ["mx.example.com"])
    assert not verdict.ok and verdict.failure == "validation-failure"


def test_rfc7672_3_2_2_dane_ta_matches_a_chain_certificate_and_checks_the_name(tmp_path) -> None:
    ca = make_ca(tmp_path)
    ca_der = ca.cert.public_bytes(serialization.Encoding.DER)
    leaf = der(ca.issue(tmp_path, "mx.example.com")[0])
    records = usable_records([tlsa(2, 1, 1, spki(ca_der))])
    assert check_chain(records, [leaf, ca_der], ["mx.example.com"]).ok
    wrong = check_chain(records, [leaf, ca_der], ["mx.other.example"])
    assert not wrong.ok and wrong.failure == "certificate-host-mismatch"
    # The trust anchor must be in the chain the server sent.
    assert not check_chain(records, [leaf], ["mx.example.com"]).ok


def test_dane_ta_needs_the_signature_of_the_anchor(tmp_path) -> None:
    """A leaf from another CA sent next to the anchor does not chain to it."""
    ca, other = make_ca(tmp_path, "Anchor CA"), make_ca(tmp_path, "Other CA")
    ca_der = ca.cert.public_bytes(serialization.Encoding.DER)
    leaf = der(other.issue(tmp_path, "mx.example.com")[0])
    verdict = check_chain(usable_records([tlsa(2, 0, 1, ca_der)]), [leaf, ca_der],
                          ["mx.example.com"])
    assert not verdict.ok and "not issued" in verdict.reason


def test_dane_ta_checks_expiry(tmp_path) -> None:
    ca = make_ca(tmp_path)
    ca_der = ca.cert.public_bytes(serialization.Encoding.DER)
    leaf = der(ca.issue(tmp_path, "mx.example.com")[0])
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=365)
    verdict = check_chain(usable_records([tlsa(2, 1, 1, spki(ca_der))]), [leaf, ca_der],
                          ["mx.example.com"], later)
    assert verdict.failure == "certificate-expired"


def test_rfc6125_wildcards_stand_for_one_label() -> None:
    assert name_matches(["*.example.com"], "mx.example.com")
    assert not name_matches(["*.example.com"], "a.mx.example.com")
    assert not name_matches(["*.example.com"], "example.com")


# --- lookups (RFC 7672 2.2) --------------------------------------------------------------
DIGEST = "cd" * 32
ZONES = {
    "example.com": {"MX": ["10 mx.example.com"]},
    "mx.example.com": {"A": ["192.0.2.1"]},
    "_25._tcp.mx.example.com": {"TLSA": [f"3 1 1 {DIGEST}"]},
    "plain.example.com": {"A": ["192.0.2.2"]},
    "unusable.example.com": {"A": ["192.0.2.3"]},
    "_25._tcp.unusable.example.com": {"TLSA": [f"1 1 1 {DIGEST}"]},
}


def test_rfc7672_2_2_lookup_states() -> None:
    async def go() -> None:
        resolver = StaticResolver(ZONES, authenticated=True)
        assert await mx_secure(resolver, "example.com")
        secure = await host_dane(resolver, "mx.example.com")
        assert secure.state is DaneState.SECURE and secure.records == (f"3 1 1 {DIGEST}",)
        assert (await host_dane(resolver, "plain.example.com")).state is DaneState.INSECURE
        assert (await host_dane(resolver, "unusable.example.com")).state is DaneState.UNUSABLE
        resolver.fail("_25._tcp.mx.example.com")
        assert (await host_dane(resolver, "mx.example.com")).state is DaneState.BOGUS
    asyncio.run(go())


def test_rfc7672_2_2_2_insecure_addresses_or_tlsa_mean_no_dane() -> None:
    async def go() -> None:
        resolver = StaticResolver(ZONES, authenticated=True)
        resolver.unsigned("mx.example.com")
        assert (await host_dane(resolver, "mx.example.com")).state is DaneState.INSECURE
        unsigned = StaticResolver(ZONES)
        assert not await mx_secure(unsigned, "example.com")
        assert (await host_dane(unsigned, "mx.example.com")).state is DaneState.INSECURE
    asyncio.run(go())
