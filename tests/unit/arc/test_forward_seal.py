"""mailyard.arc.forward: the ARC Set of a forwarded copy (RFC 8617 5.1), validated the
way the next hop does."""

from __future__ import annotations

import asyncio

from cryptography.hazmat.primitives.asymmetric import rsa

from mailyard.arc.chain import ArcSealer, ArcStatus, validate_message
from mailyard.arc.forward import forward_seal, our_results
from mailyard.dkim.keys import dns_record
from mailyard.dns import StaticResolver

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
SEALER = ArcSealer("alias.example", "sel", KEY, "mx.alias.example")
RESOLVER = StaticResolver({"sel._domainkey.alias.example": {"TXT": [dns_record(KEY)]}})
MESSAGE = (b"Authentication-Results: mx.alias.example;\r\n\tspf=pass "
           b"smtp.mailfrom=sender.example;\r\n\tdkim=pass header.d=sender.example\r\n"
           b"Authentication-Results: evil.example; dmarc=pass header.from=bank.example\r\n"
           b"From: bob@sender.example\r\nTo: fwd@alias.example\r\nSubject: hi\r\n"
           b"Date: Tue, 01 Dec 2026 10:00:00 +0000\r\nMessage-ID: <1@sender.example>\r\n"
           b"\r\nhello\r\n")
NOW = 1_796_000_000.0


def test_only_our_authentication_results_are_carried() -> None:
    """RFC 8601 5: only the field with our authserv-id is ours to trust."""
    header = MESSAGE.split(b"\r\n\r\n")[0] + b"\r\n"
    assert [r.method for r in our_results(header, "mx.alias.example")] == ["spf", "dkim"]
    assert our_results(header, "other.example") == ()


def test_first_seal_validates_and_carries_our_results() -> None:
    fields = asyncio.run(forward_seal(MESSAGE, SEALER, RESOLVER, NOW))
    assert fields.startswith(b"ARC-Seal: i=1; a=rsa-sha256;")
    aar = fields[fields.index(b"ARC-Authentication-Results:"):]
    assert aar.startswith(b"ARC-Authentication-Results: i=1; mx.alias.example;\r\n\tspf=pass")
    assert b"dkim=pass header.d=sender.example" in aar and b"arc=none" in aar
    assert b"bank.example" not in aar
    chain = asyncio.run(validate_message(fields + MESSAGE, RESOLVER, NOW))
    assert chain.status is ArcStatus.PASS and chain.instances == 1


def test_a_second_forward_extends_the_chain() -> None:
    """RFC 8617 5.1.1: the next sealer sees cv=pass and says so (arc=pass in its AAR)."""
    first = asyncio.run(forward_seal(MESSAGE, SEALER, RESOLVER, NOW)) + MESSAGE
    second = asyncio.run(forward_seal(first, SEALER, RESOLVER, NOW + 60))
    assert second.startswith(b"ARC-Seal: i=2;") and b"cv=pass" in second
    assert b"arc=pass" in second
    chain = asyncio.run(validate_message(second + first, RESOLVER, NOW + 60))
    assert chain.status is ArcStatus.PASS and chain.instances == 2


def test_a_broken_chain_is_not_sealed() -> None:
    first = asyncio.run(forward_seal(MESSAGE, SEALER, RESOLVER, NOW)) + MESSAGE
    tampered = first.replace(b"hello", b"HELLO")
    assert asyncio.run(forward_seal(tampered, SEALER, RESOLVER, NOW)) == b""
