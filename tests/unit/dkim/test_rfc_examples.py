"""DKIM against the RFCs' own examples: RFC 6376 3.4.5 (canonicalization) and
RFC 8463 Appendix A (a message signed with ed25519-sha256 and rsa-sha256)."""

from __future__ import annotations

import asyncio
import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from mailyard.dkim.canon import BodyHasher, Canon, canon_header, relaxed_fields, split_header
from mailyard.dkim.record import public_key_text
from mailyard.dkim.result import DkimStatus
from mailyard.dkim.verify import Verification, verify_message
from mailyard.dns.static import StaticResolver

# RFC 6376 3.4.5: the example message, header and body.
EXAMPLE_HEADER = b"A: X\r\nB : Y\t\r\n\tZ  \r\n"
EXAMPLE_BODY = b" C \r\nD \t E\r\n\r\n\r\n"

# RFC 8463 A.3: the signed message, as published.
RFC8463_SIGNED = (
    b"DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n"
    b" d=football.example.com; i=@football.example.com;\r\n"
    b" q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n"
    b" subject : date : message-id : from : subject : date;\r\n"
    b" bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
    b" b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus\r\n"
    b" Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==\r\n"
    b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;\r\n"
    b" d=football.example.com; i=@football.example.com;\r\n"
    b" q=dns/txt; s=test; t=1528637909; h=from : to : subject :\r\n"
    b" date : message-id : from : subject : date;\r\n"
    b" bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
    b" b=F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3\r\n"
    b" DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOeS9mPYQTnGdaSGsgeefOsk2Jz\r\n"
    b" dA+L10TeYt9BgDfQNZtKdN1WO//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8=\r\n"
    b"From: Joe SixPack <joe@football.example.com>\r\n"
    b"To: Suzie Q <suzie@shopping.example.net>\r\n"
    b"Subject: Is dinner ready?\r\n"
    b"Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
    b"Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n"
    b"\r\n"
    b"Hi.\r\n"
    b"\r\n"
    b"We lost the game.  Are you hungry yet?\r\n"
    b"\r\n"
    b"Joe.\r\n"
    b"\r\n"
)
# RFC 8463 A.2: the key records.
RFC8463_ZONES = {
    "brisbane._domainkey.football.example.com": {
        "TXT": ["v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="]},
    "test._domainkey.football.example.com": {"TXT": [
        "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWR"
        "iGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutAC"
        "DfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3"
        "Ip3G+2kryOTIKT+l/K4w3QIDAQAB"]},
}
# RFC 8463 A.1: the Ed25519 private key (its seed).
RFC8463_SEED = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A="
NOW = 1_600_000_000.0


def body_hash(body: bytes, canon: Canon, pieces: int = 1) -> bytes:
    hasher = BodyHasher(canon)
    step = max(1, len(body) // pieces)
    for i in range(0, len(body), step):
        hasher.update(body[i:i + step])
    return hasher.digest()


def sha(text: bytes) -> bytes:
    return hashlib.sha256(text).digest()


def test_rfc6376_3_4_5_relaxed_header() -> None:
    fields = split_header(EXAMPLE_HEADER)
    assert b"".join(canon_header(f.raw, Canon.RELAXED) for f in fields) == b"a:X\r\nb:Y Z\r\n"


RELAXED_CASES = [
    EXAMPLE_HEADER,
    b"Subject:\r\n  folded  \t at\r\n\tthe start \r\n \r\n",
    b"To:\r\nX-Empty: \t \r\nFrom:a\t\tb:  c \r\n",
    b"x-odd : \t value\r\n\t  \r\nDate: Tue,  1 Dec 2026\r\n",
    b"Bare: cr\r and lf\n inside \r\nNext: x\r\n",
    b"Name With Space: kept\r\nNoColon\r\nFolded\r\n name: v\r\n",
]


@pytest.mark.parametrize("header", RELAXED_CASES)
def test_rfc6376_3_4_2_relaxed_fields_at_once(header: bytes) -> None:
    """The run over several fields gives the octets of 3.4.2 field by field."""
    fields = split_header(header)
    expected = b"".join(canon_header(f.raw, Canon.RELAXED) for f in fields)
    assert relaxed_fields([f.name for f in fields], [f.raw for f in fields]) == expected
    for f in fields:
        assert relaxed_fields([f.name], [f.raw]) == canon_header(f.raw, Canon.RELAXED)
        # without its CRLF (a signature field whose b= value, last, was removed)
        assert relaxed_fields([f.name], [f.raw[:-2]]) == canon_header(f.raw[:-2], Canon.RELAXED)
    assert relaxed_fields([], []) == b""


def test_rfc6376_3_4_5_simple_header() -> None:
    fields = split_header(EXAMPLE_HEADER)
    assert b"".join(canon_header(f.raw, Canon.SIMPLE) for f in fields) == EXAMPLE_HEADER


@pytest.mark.parametrize("pieces", [1, 2, 3, len(EXAMPLE_BODY)])
def test_rfc6376_3_4_5_bodies_in_any_pieces(pieces: int) -> None:
    assert body_hash(EXAMPLE_BODY, Canon.RELAXED, pieces) == sha(b" C\r\nD E\r\n")
    assert body_hash(EXAMPLE_BODY, Canon.SIMPLE, pieces) == sha(b" C \r\nD \t E\r\n")


@pytest.mark.parametrize("run", [2, 7, 8, 9, 15, 16, 17, 115, 1000])
def test_rfc6376_3_4_4_relaxed_body_runs_of_any_length(run: int) -> None:
    # 3.4.4: every run of WSP is one SP, and none is left before a CRLF; a text part
    # laid out in columns has runs of a hundred blanks, mixed with tabs here.
    gap = (b" \t" * run)[:run]
    body = b"a" + gap + b"b" + gap + b"\r\n" + gap + b"c" + b" " * run + b"d\r\n"
    assert body_hash(body, Canon.RELAXED) == sha(b"a b\r\n c d\r\n")
    assert body_hash(body, Canon.RELAXED, 7) == sha(b"a b\r\n c d\r\n")


def test_rfc6376_3_4_3_and_3_4_4_empty_bodies() -> None:
    # 3.4.3: simple makes an empty body one CRLF; 3.4.4: relaxed leaves it empty.
    assert body_hash(b"", Canon.SIMPLE) == sha(b"\r\n")
    assert body_hash(b"\r\n\r\n", Canon.SIMPLE) == sha(b"\r\n")
    assert body_hash(b"", Canon.RELAXED) == sha(b"")
    assert body_hash(b" \r\n\t\r\n", Canon.RELAXED) == sha(b"")
    # A last line without CRLF gets one (both).
    assert body_hash(b"a  b ", Canon.RELAXED) == sha(b"a b\r\n")
    assert body_hash(b"a  b ", Canon.SIMPLE) == sha(b"a  b \r\n")
    # Empty lines inside the body are kept, only the trailing ones go.
    assert body_hash(b"a\r\n\r\n\r\nb\r\n\r\n", Canon.SIMPLE) == sha(b"a\r\n\r\n\r\nb\r\n")


def test_rfc6376_3_5_l_limits_the_hashed_octets() -> None:
    hasher = BodyHasher(Canon.SIMPLE, limit=5)
    hasher.update(b"Hello world\r\n")
    assert hasher.digest() == hashlib.sha256(b"Hello").digest()
    assert hasher.length == 13


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_rfc8463_a3_both_signatures_verify() -> None:
    results = run(verify_message(RFC8463_SIGNED, StaticResolver(RFC8463_ZONES), now=NOW))
    assert [(r.status, r.selector, r.algorithm) for r in results] == [
        (DkimStatus.PASS, "brisbane", "ed25519-sha256"),
        (DkimStatus.PASS, "test", "rsa-sha256")]
    assert results[0].domain == "football.example.com"
    assert results[0].identity == "@football.example.com"


def test_rfc8463_a3_body_hash() -> None:
    body = RFC8463_SIGNED.split(b"\r\n\r\n", 1)[1]
    hasher = BodyHasher(Canon.RELAXED)
    hasher.update(body)
    assert base64.b64encode(hasher.digest()) == b"2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8="


def test_rfc8463_a1_private_key_matches_a2_record() -> None:
    key = ed25519.Ed25519PrivateKey.from_private_bytes(base64.b64decode(RFC8463_SEED))
    assert public_key_text(key.public_key()) == "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="


def test_rfc8463_a3_signed_data_oversigned_names_add_nothing() -> None:
    header = RFC8463_SIGNED.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    verification = Verification(header)
    first = verification._candidates[0]
    assert first.signature is not None
    data = verification.signed_data(first.field, first.signature)
    assert data == (
        b"from:Joe SixPack <joe@football.example.com>\r\n"
        b"to:Suzie Q <suzie@shopping.example.net>\r\n"
        b"subject:Is dinner ready?\r\n"
        b"date:Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
        b"message-id:<20030712040037.46341.5F8J@football.example.com>\r\n"
        b"dkim-signature:v=1; a=ed25519-sha256; c=relaxed/relaxed; d=football.example.com;"
        b" i=@football.example.com; q=dns/txt; s=brisbane; t=1528637909; h=from : to :"
        b" subject : date : message-id : from : subject : date;"
        b" bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=; b=")


@pytest.mark.parametrize(("old", "new"), [
    (b"hungry", b"angry"),  # the body
    (b"dinner", b"lunch"),  # a signed field
    (b"From: Joe", b"From: Mallory <m@evil.example>\r\nFrom: Joe"),  # oversigned From
])
def test_rfc8463_a3_tampering_fails(old: bytes, new: bytes) -> None:
    message = RFC8463_SIGNED.replace(old, new, 1)
    results = run(verify_message(message, StaticResolver(RFC8463_ZONES), now=NOW))
    assert [r.status for r in results] == [DkimStatus.FAIL, DkimStatus.FAIL]


def test_rfc8463_a3_unsigned_field_may_be_added() -> None:
    message = RFC8463_SIGNED.replace(b"Message-ID:", b"X-Mailer: any\r\nMessage-ID:", 1)
    results = run(verify_message(message, StaticResolver(RFC8463_ZONES), now=NOW))
    assert [r.status for r in results] == [DkimStatus.PASS, DkimStatus.PASS]
