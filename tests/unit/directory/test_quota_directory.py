"""Per-user quota in the directory: the schema upgrade of existing databases, the
user's own limits over the ``[mailbox]`` defaults, and the lookup cache."""

from __future__ import annotations

import multiprocessing
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from mailyard.config import Config, MailboxConfig
from mailyard.directory.api import DirectoryError
from mailyard.directory.sqlite import SCHEMA_VERSION, SqliteDirectory
from mailyard.store.quota import QuotaLimits
from tests.unit.directory.conftest import FAST_HASHER

# The database as version 1 wrote it (before quota).
VERSION_1 = """
CREATE TABLE domains (name TEXT PRIMARY KEY, created REAL NOT NULL);
CREATE TABLE users (
    address TEXT PRIMARY KEY, domain TEXT NOT NULL, password_hash TEXT NOT NULL,
    scram_salt BLOB, scram_iterations INTEGER, scram_stored_key BLOB,
    scram_server_key BLOB, created REAL NOT NULL, updated REAL NOT NULL);
CREATE INDEX users_domain ON users (domain);
CREATE TABLE aliases (
    address TEXT NOT NULL, position INTEGER NOT NULL, target TEXT NOT NULL,
    domain TEXT NOT NULL, created REAL NOT NULL, PRIMARY KEY (address, position));
CREATE INDEX aliases_domain ON aliases (domain);
PRAGMA user_version = 1;
"""


def version_1_database(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(VERSION_1)
    conn.execute("INSERT INTO users VALUES ('old@example.test', 'example.test', 'x', NULL,"
                 " NULL, NULL, NULL, 1.0, 1.0)")
    conn.commit()
    conn.close()


def columns(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[1] for r in conn.execute("PRAGMA table_info(users)")}
    finally:
        conn.close()


def test_a_version_1_database_is_upgraded_in_place(tmp_path: Path, config: Config) -> None:
    path = tmp_path / "directory.db"
    version_1_database(path)
    d = SqliteDirectory(path, config, hasher=FAST_HASHER)
    record = d.get_quota("old@example.test")  # the user is still there, on the default
    assert (record.storage_bytes, record.messages) == (None, None)
    assert record.limits == QuotaLimits()
    assert {"quota_storage", "quota_messages"} <= columns(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    conn.close()
    d.close()
    again = SqliteDirectory(path, config, hasher=FAST_HASHER)  # nothing applied twice
    assert again.get_quota("old@example.test").address == "old@example.test"
    again.close()


def _open_and_read(path: str, data_dir: str) -> str:
    config = Config(hostname="mx.example.test", data_dir=data_dir,
                    local_domains=("example.test",))
    d = SqliteDirectory(path, config, hasher=FAST_HASHER)
    try:
        return d.get_quota("old@example.test").address
    finally:
        d.close()


def _child(path: str, data_dir: str, out: multiprocessing.SimpleQueue[str]) -> None:
    try:
        out.put(_open_and_read(path, data_dir))
    except Exception as exc:  # reported to the parent, which fails the test
        out.put(f"error: {exc}")


def test_processes_upgrading_at_once_apply_the_migration_once(tmp_path: Path) -> None:
    """Four processes open a version-1 database at once (plain forked processes, each
    joined with a deadline and killed past it: a Pool's workers can outlive a test)."""
    path = tmp_path / "directory.db"
    version_1_database(path)
    ctx = multiprocessing.get_context("fork")
    out: multiprocessing.SimpleQueue[str] = ctx.SimpleQueue()
    procs = [ctx.Process(target=_child, args=(str(path), str(tmp_path), out))
             for _ in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        if proc.is_alive():
            proc.kill()
            proc.join()
    got = [out.get() for _ in range(sum(1 for p in procs if p.exitcode == 0))]
    assert got == ["old@example.test"] * 4


def test_a_new_database_has_the_quota_columns(tmp_path: Path,
                                              directory: SqliteDirectory) -> None:
    directory.add_user("alice@example.test", "pw")
    assert {"quota_storage", "quota_messages"} <= columns(directory.path)


def test_own_limits_over_the_configured_defaults(tmp_path: Path, config: Config) -> None:
    config = replace(config, mailbox=MailboxConfig(quota_storage=1 << 30, quota_messages=0))
    d = SqliteDirectory(tmp_path / "directory.db", config, hasher=FAST_HASHER)
    d.add_user("alice@example.test", "pw")
    assert d.quota_limits("alice@example.test") == QuotaLimits(1 << 30, None)
    record = d.set_quota("Alice@Example.test", messages=500)
    assert (record.storage_bytes, record.messages) == (None, 500)
    assert record.limits == QuotaLimits(1 << 30, 500)
    record = d.set_quota("alice@example.test", storage_bytes=0)  # 0: unlimited, own
    assert (record.storage_bytes, record.messages) == (0, 500)  # messages kept
    assert d.quota_limits("alice@example.test") == QuotaLimits(None, 500)
    d.set_quota("alice@example.test", storage_bytes=None, messages=None)  # defaults again
    assert d.get_quota("alice@example.test").limits == QuotaLimits(1 << 30, None)
    d.close()


def test_unknown_users_and_bad_values(directory: SqliteDirectory) -> None:
    assert directory.quota_limits("nobody@example.test") == QuotaLimits()
    with pytest.raises(DirectoryError) as info:
        directory.get_quota("nobody@example.test")
    assert info.value.code == "no_such_user"
    with pytest.raises(DirectoryError) as info:
        directory.set_quota("nobody@example.test", messages=1)
    assert info.value.code == "no_such_user"
    directory.add_user("alice@example.test", "pw")
    with pytest.raises(DirectoryError) as info:
        directory.set_quota("alice@example.test", storage_bytes=-1)
    assert info.value.code == "invalid_quota"


def test_a_change_by_another_connection_is_seen_after_refresh(tmp_path: Path,
                                                              config: Config) -> None:
    """An SMTP worker's directory caches lookups between refreshes (one per
    transaction); a limit set with the CLI is seen at the next one."""
    cli = SqliteDirectory(tmp_path / "directory.db", config, hasher=FAST_HASHER)
    cli.add_user("alice@example.test", "pw")
    worker = SqliteDirectory(tmp_path / "directory.db", config, hasher=FAST_HASHER,
                             refresh_each_lookup=False)
    assert worker.quota_limits("alice@example.test") == QuotaLimits()
    cli.set_quota("alice@example.test", messages=3)
    assert worker.quota_limits("alice@example.test") == QuotaLimits()  # cached
    worker.refresh()
    assert worker.quota_limits("alice@example.test") == QuotaLimits(None, 3)
    cli.close()
    worker.close()
