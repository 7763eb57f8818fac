"""The DKIM key store: files and modes, the TXT record, two-selector rotation."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from mailyard.dkim.keys import KeyAlgorithm, KeyStore, KeyStoreError
from mailyard.dkim.record import KeyType, parse_key_record


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_create_writes_private_files_and_a_record_that_parses(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    key = store.create("Example.COM", "mailyard")
    assert key.domain == "example.com" and key.algorithm is KeyAlgorithm.RSA
    path = tmp_path / "dkim" / "example.com" / "mailyard.pem"
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700 and mode(tmp_path / "dkim") == 0o700
    assert mode(path.parent / "selectors.json") == 0o600
    record = parse_key_record(key.record)
    assert record.key_type is KeyType.RSA and record.bits == 2048
    assert key.record_name == "mailyard._domainkey.example.com"
    assert [k.selector for k in store.signing_keys("example.com")] == ["mailyard"]
    with pytest.raises(KeyStoreError, match="exists"):
        store.create("example.com", "mailyard")


def test_ed25519_second_key_signs_too(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    store.create("example.com", "rsa1")
    ed = store.create("example.com", "ed1", KeyAlgorithm.ED25519)
    assert parse_key_record(ed.record).key_type is KeyType.ED25519
    assert {k.algorithm for k in store.signing_keys("example.com")} == {
        KeyAlgorithm.RSA, KeyAlgorithm.ED25519}


def test_rotation_publishes_first_then_switches(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    store.create("example.com", "mailyard")
    ed = store.create("example.com", "ed1", KeyAlgorithm.ED25519)
    new = store.rotate("example.com", now=1_797_292_800)  # 15 December 2026
    assert new.selector == "y2026m12"
    again = store.rotate("example.com", now=1_797_292_800)
    assert again.selector == "y2026m12b"
    # Still signing with the old key until the switch.
    assert [k.selector for k in store.signing_keys("example.com")] == ["mailyard", "ed1"]
    state = store.activate("example.com", new.selector)
    assert state.active == ["ed1", "y2026m12"]
    assert state.retired == ["mailyard"] and state.pending == ["y2026m12b"]
    assert [k.selector for k in store.signing_keys("example.com")] == ["ed1", "y2026m12"]
    assert ed.selector in state.active
    with pytest.raises(KeyStoreError, match="not pending"):
        store.activate("example.com", "mailyard")


def test_no_keys_and_bad_names(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    assert store.signing_keys("example.com") == []
    assert store.signing_keys("../../etc") == []
    for domain, selector in (("../x", "s"), ("example.com", "a/b"), ("example.com", "")):
        with pytest.raises(KeyStoreError):
            store.create(domain, selector)


def test_unreadable_key_is_an_error_value(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    store.create("example.com", "s1", KeyAlgorithm.ED25519)
    (tmp_path / "dkim" / "example.com" / "s1.pem").write_text("garbage")
    with pytest.raises(KeyStoreError, match="cannot read"):
        KeyStore(tmp_path).signing_keys("example.com")

