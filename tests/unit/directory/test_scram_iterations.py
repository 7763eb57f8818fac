"""SCRAM-SHA-256 keys follow ``[auth] scram_iterations``: stored with their iteration
count, brought up to the configured count at the next password login, and not stored
at all when the count is 0."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

from argon2 import PasswordHasher

from mailyard.config import AuthConfig, Config
from mailyard.directory.scram import derive_credentials
from mailyard.directory.sqlite import SqliteDirectory

FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def _with_iterations(config: Config, n: int) -> Config:
    return dataclasses.replace(config, auth=AuthConfig(scram_iterations=n))


def _stored(path: Path) -> tuple[object, ...]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT scram_iterations, scram_salt IS NOT NULL, "
                            "scram_stored_key IS NOT NULL, scram_server_key IS NOT NULL "
                            "FROM users").fetchone()
    finally:
        conn.close()


def test_default_is_far_above_the_rfc_minimum(tmp_path: Path, config: Config) -> None:
    assert config.auth.scram_iterations == 100_000
    d = SqliteDirectory(tmp_path / "directory.db", config, hasher=FAST_HASHER)
    d.add_user("alice@example.test", "pencil")
    creds = d.scram_credentials("alice@example.test")
    assert creds is not None and creds.iterations == 100_000
    assert derive_credentials("pencil", creds.salt, 100_000) == creds
    d.close()


def test_existing_keys_keep_their_count_and_are_upgraded_at_login(
        tmp_path: Path, config: Config) -> None:
    path = tmp_path / "directory.db"
    old = SqliteDirectory(path, _with_iterations(config, 4096), hasher=FAST_HASHER)
    old.add_user("alice@example.test", "pencil")
    old.close()
    assert _stored(path)[0] == 4096

    d = SqliteDirectory(path, _with_iterations(config, 20_000), hasher=FAST_HASHER)
    creds = d.scram_credentials("alice@example.test")
    assert creds is not None and creds.iterations == 4096  # still usable as stored
    assert derive_credentials("pencil", creds.salt, 4096) == creds
    assert not d.verify_password("alice@example.test", "wrong")
    assert _stored(path)[0] == 4096  # a failed login changes nothing
    assert d.verify_password("alice@example.test", "pencil")
    creds = d.scram_credentials("alice@example.test")
    assert creds is not None and creds.iterations == 20_000
    assert derive_credentials("pencil", creds.salt, 20_000) == creds
    d.close()


def test_zero_stores_no_scram_keys(tmp_path: Path, config: Config) -> None:
    path = tmp_path / "directory.db"
    d = SqliteDirectory(path, _with_iterations(config, 0), hasher=FAST_HASHER)
    record = d.add_user("alice@example.test", "pencil")
    assert not record.scram
    assert _stored(path) == (None, False, False, False)
    assert d.scram_credentials("alice@example.test") is None
    assert d.verify_password("alice@example.test", "pencil")
    d.set_password("alice@example.test", "pencil-2")
    assert _stored(path) == (None, False, False, False)
    assert [u.scram for u in d.list_users()] == [False]
    d.close()


def test_turning_scram_off_drops_keys_at_login_and_on_brings_them_back(
        tmp_path: Path, config: Config) -> None:
    path = tmp_path / "directory.db"
    on = SqliteDirectory(path, _with_iterations(config, 4096), hasher=FAST_HASHER)
    on.add_user("alice@example.test", "pencil")
    on.close()
    off = SqliteDirectory(path, _with_iterations(config, 0), hasher=FAST_HASHER)
    assert off.scram_credentials("alice@example.test") is None  # not used while off
    assert off.verify_password("alice@example.test", "pencil")
    assert _stored(path) == (None, False, False, False)  # and gone after a login
    off.close()
    again = SqliteDirectory(path, _with_iterations(config, 8192), hasher=FAST_HASHER)
    assert again.scram_credentials("alice@example.test") is None
    assert again.verify_password("alice@example.test", "pencil")
    assert _stored(path) == (8192, True, True, True)
    again.close()


def test_password_saslprep_refuses_is_not_rewritten_at_every_login(
        tmp_path: Path, config: Config) -> None:
    path = tmp_path / "directory.db"
    d = SqliteDirectory(path, config, hasher=FAST_HASHER)
    d.add_user("alice@example.test", "pass\u0007word")
    conn = sqlite3.connect(path)
    before = conn.execute("SELECT updated FROM users").fetchone()[0]
    assert d.verify_password("alice@example.test", "pass\u0007word")
    assert conn.execute("SELECT updated FROM users").fetchone()[0] == before
    conn.close()
    d.close()
