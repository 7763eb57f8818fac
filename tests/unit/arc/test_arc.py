"""ARC (RFC 8617): chain validation (5.2) and sealing (5.1), with dkimpy as the
interop peer both ways, and broken chains as results."""

from __future__ import annotations

import asyncio

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mailyard.arc.chain import ArcSealer, ArcStatus, seal_message, validate_message
from mailyard.dkim.keys import dns_record
from mailyard.dns.static import StaticResolver

dkim = pytest.importorskip("dkim")

NOW = 1_790_000_000.0
MESSAGE = (b"From: Ada <ada@example.com>\r\nTo: list@lists.example.org\r\n"
           b"Subject: Weekly  notes\r\nDate: Tue, 1 Dec 2026 10:00:00 +0000\r\n"
           b"Message-ID: <m1@example.com>\r\n\r\nHi all,\r\n\r\nthe notes.\r\n")


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def zones(**keys: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> StaticResolver:
    return StaticResolver({f"{sel}._domainkey.{dom.replace('_', '.')}": {"TXT": [dns_record(k)]}
                           for name, k in keys.items() for sel, dom in [name.split("__")]})


def test_rfc8617_5_2_no_arc_fields_is_none() -> None:
    result = run(validate_message(MESSAGE, StaticResolver()))
    assert result.status is ArcStatus.NONE and result.instances == 0


def test_rfc8617_5_1_seal_then_seal_again_validates(rsa_key: rsa.RSAPrivateKey) -> None:
    ed = ed25519.Ed25519PrivateKey.generate()
    resolver = zones(arc__lists_example_org=rsa_key, fwd__relay_example_net=ed)
    first = ArcSealer("lists.example.org", "arc", rsa_key, "lists.example.org")
    set1 = run(seal_message(MESSAGE, first, resolver, "dkim=pass header.d=example.com", NOW))
    assert set1.startswith(b"ARC-Seal: i=1; a=rsa-sha256;") and b"cv=none" in set1
    assert b"\r\nARC-Authentication-Results: i=1; lists.example.org;" in set1
    once = set1 + MESSAGE.replace(b"Weekly  notes", b"[list] Weekly notes")
    # the list changed the subject after sealing: the AMS of set 1 no longer verifies
    assert run(validate_message(once, resolver, NOW)).status is ArcStatus.FAIL
    once = set1 + MESSAGE
    result = run(validate_message(once, resolver, NOW))
    assert (result.status, result.instances, result.domain) == (
        ArcStatus.PASS, 1, "lists.example.org")
    second = ArcSealer("relay.example.net", "fwd", ed, "relay.example.net")
    set2 = run(seal_message(once, second, resolver, "arc=pass", NOW))
    assert b"i=2" in set2 and b"cv=pass" in set2
    twice = set2 + once
    result = run(validate_message(twice, resolver, NOW))
    assert (result.status, result.instances) == (ArcStatus.PASS, 2), result


def test_dkimpy_validates_our_chain(rsa_key: rsa.RSAPrivateKey) -> None:
    resolver = zones(arc__lists_example_org=rsa_key)
    sealer = ArcSealer("lists.example.org", "arc", rsa_key, "lists.example.org")
    sealed = run(seal_message(MESSAGE, sealer, resolver, "dkim=none", NOW)) + MESSAGE
    record = dns_record(rsa_key).encode()

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        return record if name.rstrip(b".") == b"arc._domainkey.lists.example.org" else b""

    cv, _results, comment = dkim.arc_verify(sealed, dnsfunc=dnsfunc)
    assert cv == b"pass", comment


def test_ours_validates_dkimpy_chain(rsa_key: rsa.RSAPrivateKey) -> None:
    pem = rsa_key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    message = (b"Authentication-Results: lists.example.org; dkim=none\r\n" + MESSAGE)
    fields = dkim.arc_sign(message, b"arc", b"lists.example.org", pem, b"lists.example.org",
                           timestamp=str(int(NOW)))
    sealed = b"".join(fields) + message
    result = run(validate_message(sealed, zones(arc__lists_example_org=rsa_key), NOW))
    assert (result.status, result.instances) == (ArcStatus.PASS, 1), result


@pytest.mark.parametrize(("edit", "reason"), [
    ((b"cv=none", b"cv=pass"), "cv=pass"),  # 5.2 step: i=1 must be cv=none
    ((b"ARC-Seal: i=1", b"ARC-Seal: i=2"), "incomplete"),
    ((b"ARC-Authentication-Results: i=1", b"X-Removed: i=1"), "incomplete"),
    ((b"the notes.", b"the Notes."), "body hash"),
    ((b"Weekly  notes", b"Monthly notes"), "ARC-Message-Signature i=1: signature"),
    ((b"dkim=none", b"dkim=pass"), "ARC-Seal i=1: signature"),  # AAR is sealed
])
def test_rfc8617_5_2_broken_chains_fail(rsa_key: rsa.RSAPrivateKey, edit: tuple[bytes, bytes],
                                        reason: str) -> None:
    resolver = zones(arc__lists_example_org=rsa_key)
    sealer = ArcSealer("lists.example.org", "arc", rsa_key, "lists.example.org")
    sealed = run(seal_message(MESSAGE, sealer, resolver, "dkim=none", NOW)) + MESSAGE
    result = run(validate_message(sealed.replace(*edit, 1), resolver, NOW))
    assert result.status is ArcStatus.FAIL and reason in result.reason, result


def test_failed_chain_is_not_sealed_and_dns_failure_fails(rsa_key: rsa.RSAPrivateKey) -> None:
    resolver = zones(arc__lists_example_org=rsa_key)
    sealer = ArcSealer("lists.example.org", "arc", rsa_key, "lists.example.org")
    sealed = run(seal_message(MESSAGE, sealer, resolver, "dkim=none", NOW)) + MESSAGE
    broken = sealed.replace(b"the notes.", b"changed")
    assert run(seal_message(broken, sealer, resolver, "arc=fail", NOW)) == b""
    resolver.fail("arc._domainkey.lists.example.org")
    result = run(validate_message(sealed, resolver, NOW))
    assert result.status is ArcStatus.FAIL and "key lookup failed" in result.reason


@pytest.mark.parametrize("header", [
    b"ARC-Seal: garbage\r\n",
    b"ARC-Seal: i=1; a=rsa-sha256; cv=none; d=x.org; s=s; b=!!\r\n"
    b"ARC-Message-Signature: i=1; a=rsa-sha256; d=x.org; s=s; h=from; bh=AA==; b=AA==\r\n"
    b"ARC-Authentication-Results: i=1; x.org; none\r\n",
    b"ARC-Authentication-Results: no instance\r\n",
    b"ARC-Seal: i=99999; a=rsa-sha256\r\n",
    b"ARC-Seal: i=51; a=rsa-sha256; cv=pass; d=x.org; s=s; b=AA==\r\n",
])
def test_hostile_arc_fields_fail_without_exceptions(header: bytes) -> None:
    result = run(validate_message(header + MESSAGE, StaticResolver(), NOW))
    assert result.status is ArcStatus.FAIL and result.reason


@pytest.mark.parametrize(("edit", "reason"), [
    ((b"c=relaxed/relaxed", b"c=fancy/relaxed"), "unknown c="),
    ((b"c=relaxed/relaxed", b"c=relaxed/relaxed; l=abc"), "l= is not a number"),
])
def test_bad_ams_tags_give_reasons(rsa_key: rsa.RSAPrivateKey, edit: tuple[bytes, bytes],
                                   reason: str) -> None:
    resolver = zones(arc__lists_example_org=rsa_key)
    sealer = ArcSealer("lists.example.org", "arc", rsa_key, "lists.example.org")
    sealed = run(seal_message(MESSAGE, sealer, resolver, "dkim=none", NOW)) + MESSAGE
    result = run(validate_message(sealed.replace(*edit, 1), resolver, NOW))
    assert result.status is ArcStatus.FAIL and reason in result.reason, result
