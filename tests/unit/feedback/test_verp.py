"""VERP envelope senders: signed, case-insensitive tokens within the RFC 5321
4.5.3.1.1 local-part limit of 64 octets."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailyard.feedback.verp import (
    MAX_ID,
    MAX_LOCAL_PART,
    CampaignRecipient,
    TransactionalMessage,
    decode_token,
    encode_token,
    parse_verp_address,
    token_address,
    verp_address,
    verp_key,
)

KEY = verp_key(bytes(range(32)))
OTHER_KEY = verp_key(bytes(32))


def test_key_is_derived_per_purpose() -> None:
    assert KEY != OTHER_KEY and len(KEY) == 32
    assert verp_key(bytes(range(32))) == KEY


@given(st.integers(0, MAX_ID), st.integers(0, MAX_ID))
def test_campaign_round_trip_within_local_part_limit(campaign: int, contact: int) -> None:
    target = CampaignRecipient(campaign, contact)
    address = verp_address(target, KEY, "lists.example.org")
    local = address.rpartition("@")[0]
    assert len(local) <= MAX_LOCAL_PART  # RFC 5321 4.5.3.1.1
    assert local == local.lower() and local.isascii()
    assert parse_verp_address(address, KEY) == target


def test_largest_ids_fit() -> None:
    address = verp_address(CampaignRecipient(MAX_ID, MAX_ID), KEY, "example.org")
    assert len(address.rpartition("@")[0]) <= MAX_LOCAL_PART


def test_transactional_round_trip_with_queue_id() -> None:
    target = TransactionalMessage("0PZ4J5M8Q2W3E4R5T6Y")
    address = verp_address(target, KEY, "example.org")
    assert parse_verp_address(address, KEY) == target


def test_remote_case_folding_is_harmless() -> None:
    # RFC 5321 2.4: a relay may change the case of the local part.
    target = CampaignRecipient(17, 123456)
    address = verp_address(target, KEY, "Example.ORG")
    assert parse_verp_address(address.upper(), KEY) == target
    assert parse_verp_address(f"<{address}>", KEY) == target


def test_wrong_key_is_refused() -> None:
    address = verp_address(CampaignRecipient(1, 2), KEY, "example.org")
    assert parse_verp_address(address, OTHER_KEY) is None


def test_every_single_character_change_is_refused() -> None:
    token = encode_token(CampaignRecipient(5, 99), KEY)
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    for i, char in enumerate(token):
        for repl in alphabet:
            if repl != char:
                forged = token[:i] + repl + token[i + 1:]
                assert decode_token(forged, KEY) is None, forged


def test_forged_ids_with_recomputed_encoding_are_refused() -> None:
    raw = base64.b32decode(encode_token(CampaignRecipient(5, 99), KEY).upper() + "=" * 3)
    forged = bytes([raw[0], raw[1], raw[2] + 1]) + raw[3:]
    token = base64.b32encode(forged).decode().rstrip("=").lower()
    assert decode_token(token, KEY) is None


@pytest.mark.parametrize("token", [
    "", "!!!!", "a", "aaaaaaaa", "a" * 200, "ü" * 10, "abc=def", "0189",
])
def test_garbage_tokens(token: str) -> None:
    assert decode_token(token, KEY) is None


def test_non_canonical_trailing_bits_are_refused() -> None:
    token = encode_token(CampaignRecipient(1, 1), KEY)
    # the last character carries unused low bits: setting one decodes to the same bytes
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    last = alphabet.index(token[-1])
    variants = [token[:-1] + alphabet[last ^ bit] for bit in (1, 2, 4)]
    assert all(decode_token(v, KEY) is None for v in variants)


@pytest.mark.parametrize("address", [
    "news@lists.example.org",
    "bounces@lists.example.org",
    "bounces+@lists.example.org",
    "other+abcdefgh@lists.example.org",
    "no-at-sign",
    "",
    "<>",
])
def test_not_a_verp_address(address: str) -> None:
    assert parse_verp_address(address, KEY) is None


def test_custom_prefix() -> None:
    target = CampaignRecipient(3, 4)
    address = verp_address(target, KEY, "example.org", prefix="rt")
    assert address.startswith("rt+")
    assert parse_verp_address(address, KEY, prefix="RT") == target
    assert parse_verp_address(address, KEY) is None


def test_refused_when_encoding() -> None:
    with pytest.raises(ValueError):
        verp_address(TransactionalMessage("x" * 40), KEY, "example.org")
    with pytest.raises(ValueError):
        encode_token(CampaignRecipient(-1, 0), KEY)
    with pytest.raises(ValueError):
        encode_token(CampaignRecipient(0, MAX_ID + 1), KEY)
    with pytest.raises(ValueError):
        encode_token(TransactionalMessage("bad id\n"), KEY)


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz234567ABCXYZ", min_size=0, max_size=70))
def test_random_tokens_are_refused(token: str) -> None:
    # an 80-bit signature: a guessed token is accepted with probability 2**-80
    assert decode_token(token, KEY) is None
    assert parse_verp_address(f"bounces+{token}@lists.example.org", KEY) is None


@given(st.text(max_size=100))
def test_any_address_text_gives_a_target_or_none(address: str) -> None:
    assert parse_verp_address(address, KEY) is None


def test_token_address_is_the_verp_address() -> None:
    target = CampaignRecipient(12, 345678)
    token = encode_token(target, KEY)
    assert token_address(token, "b.example", prefix="bounces") == verp_address(
        target, KEY, "b.example", prefix="bounces")
    with pytest.raises(ValueError):
        token_address(token, "b.example", prefix="x" * MAX_LOCAL_PART)
