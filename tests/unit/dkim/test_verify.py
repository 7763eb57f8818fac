"""DKIM verification outcomes (RFC 6376 6.1, RFC 8301, RFC 8463): every case is a
result value, hostile input included, never an exception."""

from __future__ import annotations

import asyncio
import base64
import contextlib

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mailyard.dkim.keys import dns_record
from mailyard.dkim.result import DkimStatus
from mailyard.dkim.sign import Signer, sign_message
from mailyard.dkim.verify import VerifyPolicy, verify_message
from mailyard.dns.static import StaticResolver

NOW = 1_790_000_000.0
MESSAGE = (b"From: Ada <ada@example.com>\r\nTo: bob@example.net\r\nSubject: Hello\r\n"
           b"Date: Tue, 1 Dec 2026 10:00:00 +0000\r\nMessage-ID: <m1@example.com>\r\n\r\n"
           b"Hi  Bob,\r\n\r\nthe  report is attached.\r\n\r\n")


def zones(**records: str) -> StaticResolver:
    return StaticResolver({f"{sel}._domainkey.example.com": {"TXT": [text]}
                           for sel, text in records.items()})


def check(message: bytes, resolver: StaticResolver, **policy: int | bool) -> list[DkimStatus]:
    results = asyncio.run(verify_message(message, resolver, policy=VerifyPolicy(**policy),
                                         now=NOW))
    return [r.status for r in results]


def signed(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey, selector: str = "s1",
           message: bytes = MESSAGE, **options: object) -> bytes:
    signer = Signer("example.com", selector, key, **options)  # type: ignore[arg-type]
    return sign_message(message, [signer], NOW) + message


def test_unsigned_message_has_no_results() -> None:
    assert check(MESSAGE, zones()) == []


def test_rsa_and_ed25519_pass(rsa_key: rsa.RSAPrivateKey,
                              ed_key: ed25519.Ed25519PrivateKey) -> None:
    both = sign_message(MESSAGE, [Signer("example.com", "r", rsa_key),
                                  Signer("example.com", "e", ed_key)], NOW) + MESSAGE
    assert check(both, zones(r=dns_record(rsa_key), e=dns_record(ed_key))) == [
        DkimStatus.PASS, DkimStatus.PASS]


@pytest.mark.parametrize("canon", ["simple", "relaxed"])
def test_all_canonicalizations_pass(rsa_key: rsa.RSAPrivateKey, canon: str) -> None:
    from mailyard.dkim.canon import Canon
    for body in (Canon.SIMPLE, Canon.RELAXED):
        message = signed(rsa_key, header_canon=Canon(canon), body_canon=body)
        assert check(message, zones(s1=dns_record(rsa_key))) == [DkimStatus.PASS]


def test_relaxed_survives_whitespace_changes_simple_does_not(
        rsa_key: rsa.RSAPrivateKey) -> None:
    from mailyard.dkim.canon import Canon
    resolver = zones(s1=dns_record(rsa_key))
    relaxed = signed(rsa_key).replace(b"Subject: Hello", b"Subject:   Hello ")
    assert check(relaxed, resolver) == [DkimStatus.PASS]
    simple = signed(rsa_key, header_canon=Canon.SIMPLE, body_canon=Canon.SIMPLE)
    assert check(simple.replace(b"Hi  Bob", b"Hi Bob"), resolver) == [DkimStatus.FAIL]


def test_rfc6376_3_3_revoked_key_is_permerror(rsa_key: rsa.RSAPrivateKey) -> None:
    assert check(signed(rsa_key), zones(s1="v=DKIM1; k=rsa; p=")) == [DkimStatus.PERMERROR]


def test_rfc8301_3_1_rsa_sha1_fails(rsa_key: rsa.RSAPrivateKey) -> None:
    message = signed(rsa_key).replace(b"a=rsa-sha256", b"a=rsa-sha1", 1)
    results = asyncio.run(verify_message(message, zones(s1=dns_record(rsa_key)), now=NOW))
    assert results[0].status is DkimStatus.FAIL
    assert "RFC 8301" in results[0].reason


def test_rfc8301_3_2_short_rsa_key_fails() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    resolver = zones(s1=dns_record(small))
    assert check(signed(small), resolver) == [DkimStatus.PASS]
    assert check(signed(small), resolver, min_rsa_bits=2048) == [DkimStatus.FAIL]


def test_rfc6376_3_5_expired_signature_fails(rsa_key: rsa.RSAPrivateKey) -> None:
    message = signed(rsa_key, expiry=60)
    resolver = zones(s1=dns_record(rsa_key))
    assert check(message, resolver) == [DkimStatus.PASS]
    results = asyncio.run(verify_message(message, resolver, now=NOW + 61))
    assert results[0].status is DkimStatus.FAIL and "expired" in results[0].reason


def test_future_timestamp_is_permerror(rsa_key: rsa.RSAPrivateKey) -> None:
    message = signed(rsa_key)
    results = asyncio.run(verify_message(message, zones(s1=dns_record(rsa_key)),
                                         now=NOW - 3600))
    assert results[0].status is DkimStatus.PERMERROR


def test_dns_failure_is_temperror(rsa_key: rsa.RSAPrivateKey) -> None:
    resolver = zones(s1=dns_record(rsa_key))
    resolver.fail("s1._domainkey.example.com")
    assert check(signed(rsa_key), resolver) == [DkimStatus.TEMPERROR]


def test_missing_key_is_permerror(rsa_key: rsa.RSAPrivateKey) -> None:
    assert check(signed(rsa_key), zones()) == [DkimStatus.PERMERROR]


def test_key_type_mismatch_and_key_flags(rsa_key: rsa.RSAPrivateKey,
                                         ed_key: ed25519.Ed25519PrivateKey) -> None:
    message = signed(ed_key)
    assert check(message, zones(s1=dns_record(rsa_key))) == [DkimStatus.PERMERROR]
    record = dns_record(ed_key)
    assert check(message, zones(s1=record + "; h=sha1")) == [DkimStatus.PERMERROR]
    assert check(message, zones(s1=record + "; s=tlsrpt")) == [DkimStatus.PERMERROR]
    results = asyncio.run(verify_message(message, zones(s1=record + "; t=y"), now=NOW))
    assert results[0].status is DkimStatus.PASS and results[0].testing


def test_t_s_flag_refuses_subdomain_identity(ed_key: ed25519.Ed25519PrivateKey) -> None:
    message = signed(ed_key).replace(b"d=example.com;", b"d=example.com; i=@sub.example.com;",
                                     1)
    # the signature no longer matches either way; t=s makes it a permerror before that
    assert check(message, zones(s1=dns_record(ed_key) + "; t=s")) == [DkimStatus.PERMERROR]


def test_rfc6376_8_2_l_tag_reports_unsigned_body() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    signature = sign_message(MESSAGE, [Signer("example.com", "s1", key)], NOW)
    body = MESSAGE.split(b"\r\n\r\n", 1)[1]
    # a signature with l= covering the first 10 canonical octets, made by hand
    from mailyard.dkim.canon import BodyHasher, Canon, split_header
    from mailyard.dkim.crypto import sign_data
    from mailyard.dkim.verify import signed_header_data
    hasher = BodyHasher(Canon.RELAXED, limit=10)
    hasher.update(body)
    bh = base64.b64encode(hasher.digest()).decode()
    unsigned = (f"DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=example.com;"
                f" s=s1; l=10; h=from; bh={bh}; b=").encode()
    header = MESSAGE.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    data = signed_header_data(split_header(header), [b"from"], Canon.RELAXED, unsigned)
    field = unsigned + base64.b64encode(sign_data(key, data)) + b"\r\n"
    resolver = zones(s1=dns_record(key))
    results = asyncio.run(verify_message(field + MESSAGE + b"appended\r\n", resolver, now=NOW))
    assert results[0].status is DkimStatus.PASS
    whole = BodyHasher(Canon.RELAXED)
    whole.update(body + b"appended\r\n")
    whole.digest()
    assert results[0].unsigned_body == whole.length - 10 > 0
    assert check(field + MESSAGE, resolver, accept_partial_body=False) == [DkimStatus.POLICY]
    assert signature  # the ordinary signature has no l=
    assert b"l=" not in signature


def test_max_signatures_limits_the_work(rsa_key: rsa.RSAPrivateKey) -> None:
    one = sign_message(MESSAGE, [Signer("example.com", "s1", rsa_key)], NOW)
    resolver = zones(s1=dns_record(rsa_key))
    assert check(one * 20 + MESSAGE, resolver, max_signatures=3) == [DkimStatus.PASS] * 3
    assert len(resolver.queries) == 3


@pytest.mark.parametrize("field", [
    b"DKIM-Signature: garbage\r\n",
    b"DKIM-Signature: v=1; a=rsa-sha256\r\n",
    b"DKIM-Signature: v=2; a=rsa-sha256; b=AA==; bh=AA==; d=x.org; h=from; s=s\r\n",
    b"DKIM-Signature: v=1; a=rsa-md5; b=AA==; bh=AA==; d=x.org; h=from; s=s\r\n",
    b"DKIM-Signature: v=1; a=rsa-sha256; b=!!; bh=AA==; d=x.org; h=from; s=s\r\n",
    b"DKIM-Signature: v=1; a=rsa-sha256; b=AA==; bh=AA==; d=x.org; h=to; s=s\r\n",
    b"DKIM-Signature: v=1; v=1; a=rsa-sha256; b=AA==; bh=AA==; d=x.org; h=from; s=s\r\n",
    b"DKIM-Signature: v=1; a=rsa-sha256; b=AA==; bh=AA==; d=x.org; h=from; s=s; "
    b"i=@evil.example\r\n",
    b"DKIM-Signature: v=1; a=rsa-sha256; b=AA==; bh=AA==; d=x.org; h=from; s=s; x=abc\r\n",
    b"DKIM-Signature: v=1; a=rsa-sha256; b=AA==; bh=AA==; d=\xff\xfe; h=from; s=s\r\n",
    b"DKIM-Signature: v=1; a=rsa-sha256; b=AA==; bh=AA==; d=x.org; h=from; s=s; "
    b"c=fancy/simple\r\n",
    b"DKIM-Signature: v=1; a=rsa-sha256; b=AA==; bh=AA==; d=x.org; h=from; s=s; "
    b"t=100; x=50\r\n",
    b"DKIM-Signature: v=1; a=rsa-sha256; b=" + b"A" * 100_000 + b"; bh=AA==; d=x.org;"
    b" h=from; s=s\r\n",
    b"DKIM-Signature:\r\n",
    b"DKIM-Signature: v=1; a=rsa-sha256; b=AA==; bh=AA==; d=x.org; h=from; s=..\r\n",
])
def test_malformed_signatures_are_permerrors(field: bytes) -> None:
    assert check(field + MESSAGE, zones()) == [DkimStatus.PERMERROR]


@pytest.mark.parametrize("record", [
    "v=DKIM1; k=rsa; p=not base64!",
    "v=DKIM1; k=rsa; p=AAAA",  # base64, but not a key
    "v=DKIM1; k=ed25519; p=AAAA",  # not 32 bytes
    "v=DKIM1; k=dsa; p=AAAA",
    "v=DKIM2; p=AAAA",
    "v=DKIM1; k=rsa",
    "v=DKIM1; p=" + "A" * 20_000,
    "\x00\xff garbage",
    "",
])
def test_malformed_key_records_are_permerrors(rsa_key: rsa.RSAPrivateKey, record: str) -> None:
    assert check(signed(rsa_key), zones(s1=record)) == [DkimStatus.PERMERROR]


def test_tampered_b_value_fails(rsa_key: rsa.RSAPrivateKey) -> None:
    message = signed(rsa_key)
    start = message.index(b"b=", message.index(b"bh=") + 3) + 2
    flipped = b"B" if message[start:start + 1] != b"B" else b"C"
    tampered = message[:start] + flipped + message[start + 1:]
    assert check(tampered, zones(s1=dns_record(rsa_key))) == [DkimStatus.FAIL]


def test_huge_header_and_message_without_body(rsa_key: rsa.RSAPrivateKey) -> None:
    resolver = zones(s1=dns_record(rsa_key))
    big = b"X-Filler: " + b"a" * 200 + (b"\r\n " + b"b" * 200) * 5000 + b"\r\n"
    message = signed(rsa_key, message=big + MESSAGE)
    assert check(message, resolver) == [DkimStatus.PASS]
    headers_only = MESSAGE.split(b"\r\n\r\n")[0] + b"\r\n"
    assert check(signed(rsa_key, message=headers_only), resolver) == [DkimStatus.PASS]


def test_mutated_messages_and_records_give_results_not_exceptions() -> None:
    """Random damage to a signed message and to its key record (bytes changed, cut,
    tag characters inserted): every outcome is a result value."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from mailyard.dkim.record import KeyRecordError, parse_key_record

    key = ed25519.Ed25519PrivateKey.generate()
    base = signed(key)
    record = dns_record(key).encode()
    resolver = zones(s1=dns_record(key))
    edit = st.tuples(st.integers(0, 10_000), st.integers(0, 8),
                     st.sampled_from([b"", b";", b"=", b"\r\n", b"\r\n\t", b":", b"\xff",
                                      b"b=", b"l=9", b"x=1", b"a=rsa-sha1"]))

    def damaged(data: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
        for at, cut, insert in edits:
            at %= len(data) or 1
            data = data[:at] + insert + data[at + cut:]
        return data

    @settings(max_examples=300, deadline=None)
    @given(st.lists(edit, min_size=1, max_size=5))
    def check_one(edits: list[tuple[int, int, bytes]]) -> None:
        results = asyncio.run(verify_message(damaged(base, edits), resolver, now=NOW))
        assert all(isinstance(r.status, DkimStatus) for r in results)
        with contextlib.suppress(KeyRecordError):  # a refused record is a value too
            parse_key_record(damaged(record, edits))

    check_one()
