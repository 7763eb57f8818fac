"""The SQLite directory: administration, lookups, passwords, several processes."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from mailyard.config import Config
from mailyard.directory.api import Directory, DirectoryAdmin, DirectoryError
from mailyard.directory.scram import derive_credentials
from mailyard.directory.sqlite import SqliteDirectory

FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def other_instance(directory: SqliteDirectory, config: Config) -> SqliteDirectory:
    return SqliteDirectory(directory.path, config, hasher=FAST_HASHER)


def test_implements_the_protocols(directory: SqliteDirectory) -> None:
    d: Directory = directory
    admin: DirectoryAdmin = directory
    assert d is admin


def test_database_is_wal(directory: SqliteDirectory) -> None:
    directory.list_users()
    conn = sqlite3.connect(directory.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_connection_is_lazy(tmp_path: Path, config: Config) -> None:
    SqliteDirectory(tmp_path / "sub" / "directory.db", config)
    assert not (tmp_path / "sub").exists()


# --- domains ---------------------------------------------------------------------------
def test_local_domains_are_config_and_database(directory: SqliteDirectory) -> None:
    assert directory.is_local_domain("EXAMPLE.test.")
    assert not directory.is_local_domain("db.test")
    directory.add_domain("DB.test")
    assert directory.is_local_domain("db.test")
    listed = {d.name: (d.in_config, d.in_database) for d in directory.list_domains()}
    assert listed == {"example.test": (True, False), "config.test": (True, False),
                      "db.test": (False, True)}


def test_domain_errors(directory: SqliteDirectory) -> None:
    with pytest.raises(DirectoryError, match="already local"):
        directory.add_domain("example.test")
    directory.add_domain("db.test")
    with pytest.raises(DirectoryError, match="exists"):
        directory.add_domain("db.test")
    with pytest.raises(DirectoryError, match="bad domain"):
        directory.add_domain("bad_domain!.test")
    with pytest.raises(DirectoryError, match="configuration file"):
        directory.delete_domain("example.test")
    with pytest.raises(DirectoryError, match="no such domain"):
        directory.delete_domain("nowhere.test")


def test_delete_domain_refuses_while_in_use(directory: SqliteDirectory) -> None:
    directory.add_domain("db.test")
    directory.add_user("a@db.test", "pw")
    with pytest.raises(DirectoryError, match="1 user"):
        directory.delete_domain("db.test")
    directory.delete_user("a@db.test")
    directory.delete_domain("db.test")
    assert not directory.is_local_domain("db.test")


# --- users -----------------------------------------------------------------------------
def test_add_user_and_list(directory: SqliteDirectory) -> None:
    record = directory.add_user("Alice@Example.TEST", "pencil")
    assert record.address == "alice@example.test" and record.scram
    directory.add_user("bob@config.test", "pw")
    assert [u.address for u in directory.list_users()] == ["bob@config.test",
                                                            "alice@example.test"]
    assert [u.address for u in directory.list_users("example.test")] == ["alice@example.test"]


@pytest.mark.parametrize(("address", "message"), [
    ("alice", "bad address"),
    ("al ice@example.test", "dot-atom"),
    ("a..b@example.test", "dot-atom"),
    ("a/b@example.test", "mailbox name"),
    ("alice+x@example.test", "sub-address"),
    ("x" * 65 + "@example.test", "64"),
    ("alice@nope.test", "mailyard domain add nope.test"),
])
def test_add_user_rejects(directory: SqliteDirectory, address: str, message: str) -> None:
    with pytest.raises(DirectoryError, match=message):
        directory.add_user(address, "pw")


def test_add_user_twice(directory: SqliteDirectory) -> None:
    directory.add_user("alice@example.test", "pw")
    with pytest.raises(DirectoryError, match="user alice@example.test exists"):
        directory.add_user("ALICE@example.test", "pw")


def test_empty_password_refused(directory: SqliteDirectory) -> None:
    with pytest.raises(DirectoryError, match="empty password"):
        directory.add_user("alice@example.test", "")


def test_verify_password(directory: SqliteDirectory) -> None:
    directory.add_user("alice@example.test", "correct horse")
    assert directory.verify_password("alice@example.test", "correct horse")
    assert directory.verify_password("ALICE@Example.test", "correct horse")
    assert not directory.verify_password("alice@example.test", "Correct horse")
    assert not directory.verify_password("nobody@example.test", "correct horse")
    assert not directory.verify_password("alice+tag@example.test", "correct horse")


class CountingHasher(PasswordHasher):
    calls = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:  # noqa: A002
        CountingHasher.calls += 1
        return super().verify(hash, password)


def test_unknown_user_still_costs_a_verification(tmp_path: Path, config: Config) -> None:
    """No timing shortcut for unknown users: a dummy hash is verified instead."""
    d = SqliteDirectory(tmp_path / "directory.db", config,
                        hasher=CountingHasher(time_cost=1, memory_cost=8, parallelism=1))
    d.add_user("alice@example.test", "pw")
    CountingHasher.calls = 0
    assert not d.verify_password("nobody@example.test", "x")
    assert CountingHasher.calls == 1
    assert not d.verify_password("alice@example.test", "x")
    assert CountingHasher.calls == 2


def test_set_password_replaces_both_secrets(directory: SqliteDirectory) -> None:
    directory.add_user("alice@example.test", "old")
    before = directory.scram_credentials("alice@example.test")
    directory.set_password("alice@example.test", "new")
    assert not directory.verify_password("alice@example.test", "old")
    assert directory.verify_password("alice@example.test", "new")
    after = directory.scram_credentials("alice@example.test")
    assert before is not None and after is not None and before != after
    with pytest.raises(DirectoryError, match="no such user"):
        directory.set_password("nobody@example.test", "x")


def test_password_is_stored_as_argon2id(directory: SqliteDirectory) -> None:
    directory.add_user("alice@example.test", "secret")
    conn = sqlite3.connect(directory.path)
    stored = conn.execute("SELECT password_hash FROM users").fetchone()[0]
    conn.close()
    assert stored.startswith("$argon2id$") and "secret" not in stored


def test_outdated_hash_is_upgraded_on_login(tmp_path: Path, config: Config) -> None:
    weak = SqliteDirectory(tmp_path / "directory.db", config, hasher=FAST_HASHER)
    weak.add_user("alice@example.test", "pw")
    stronger = PasswordHasher(time_cost=2, memory_cost=16, parallelism=1)
    d = SqliteDirectory(tmp_path / "directory.db", config, hasher=stronger)
    assert d.verify_password("alice@example.test", "pw")
    conn = sqlite3.connect(d.path)
    stored = conn.execute("SELECT password_hash FROM users").fetchone()[0]
    conn.close()
    assert not stronger.check_needs_rehash(stored)
    assert d.verify_password("alice@example.test", "pw")


def test_scram_credentials_match_the_password(directory: SqliteDirectory) -> None:
    """RFC 5802 3 / RFC 7677: stored StoredKey and ServerKey derive from the password
    with the stored salt and iteration count (at least 4096)."""
    directory.add_user("alice@example.test", "pencil")
    creds = directory.scram_credentials("Alice@example.test")
    assert creds is not None and creds.iterations >= 4096
    assert derive_credentials("pencil", creds.salt, creds.iterations) == creds
    assert directory.scram_credentials("nobody@example.test") is None


def test_password_saslprep_cannot_prepare_has_no_scram(directory: SqliteDirectory) -> None:
    record = directory.add_user("alice@example.test", "pass\u0007word")
    assert not record.scram
    assert directory.scram_credentials("alice@example.test") is None
    assert directory.verify_password("alice@example.test", "pass\u0007word")


def test_delete_user(directory: SqliteDirectory) -> None:
    directory.add_user("alice@example.test", "pw")
    assert directory.recipient_exists("alice@example.test")
    directory.delete_user("Alice@example.test")
    assert not directory.recipient_exists("alice@example.test")
    with pytest.raises(DirectoryError, match="no such user"):
        directory.delete_user("alice@example.test")


# --- aliases and resolution ---------------------------------------------------------
def test_alias_crud(directory: SqliteDirectory) -> None:
    directory.add_user("alice@example.test", "pw")
    a = directory.add_alias("Team@example.test", ["alice@example.test", "Bob@Remote.ORG"])
    assert a.address == "team@example.test"
    assert a.targets == ("alice@example.test", "Bob@remote.org")
    a = directory.add_alias("team@example.test", ["carol@remote.org", "alice@EXAMPLE.test"])
    assert a.targets == ("alice@example.test", "Bob@remote.org", "carol@remote.org")
    directory.delete_alias("team@example.test", ["bob@remote.org"])
    assert directory.list_aliases()[0].targets == ("alice@example.test", "carol@remote.org")
    directory.delete_alias("team@example.test")
    assert directory.list_aliases() == []
    with pytest.raises(DirectoryError, match="no such alias"):
        directory.delete_alias("team@example.test")


def test_alias_errors(directory: SqliteDirectory) -> None:
    with pytest.raises(DirectoryError, match="not local"):
        directory.add_alias("x@nope.test", ["a@example.test"])
    with pytest.raises(DirectoryError, match="at least one target"):
        directory.add_alias("x@example.test", [])
    with pytest.raises(DirectoryError, match="bad address"):
        directory.add_alias("x@example.test", ["not an address"])
    with pytest.raises(DirectoryError, match="catch-all"):
        directory.add_alias("x@example.test", ["@config.test"])


def test_resolve_users_aliases_subaddress_roles(directory: SqliteDirectory) -> None:
    directory.add_user("alice@example.test", "pw")
    directory.add_alias("team@example.test", ["alice@example.test", "list@example.test"])
    directory.add_alias("list@example.test", ["team@example.test", "ext@remote.org"])
    assert directory.resolve("ALICE+News@example.test").mailboxes == ("alice@example.test",)
    res = directory.resolve("team@example.test")
    assert res.mailboxes == ("alice@example.test",) and res.external == ("ext@remote.org",)
    assert directory.resolve("postmaster@config.test").mailboxes == ("postmaster@config.test",)
    assert directory.resolve("abuse@example.test").mailboxes == ("postmaster@example.test",)
    assert directory.resolve("nobody@example.test").unknown


def test_catch_all_alias(directory: SqliteDirectory) -> None:
    directory.add_user("alice@example.test", "pw")
    directory.add_alias("@example.test", ["alice@example.test"])
    assert directory.recipient_exists("random@example.test")
    assert not directory.recipient_exists("random@config.test")


def test_recipient_exists(directory: SqliteDirectory) -> None:
    directory.add_user("alice@example.test", "pw")
    assert directory.recipient_exists("alice@example.test")
    assert directory.recipient_exists("Alice+x@EXAMPLE.test")
    assert directory.recipient_exists("postmaster@example.test")
    assert directory.recipient_exists("abuse@config.test")
    assert not directory.recipient_exists("bob@example.test")
    assert not directory.recipient_exists("alice@remote.org")  # not ours


def test_may_send_from(directory: SqliteDirectory) -> None:
    directory.add_user("alice@example.test", "pw")
    directory.add_user("bob@example.test", "pw")
    directory.add_alias("sales@example.test", ["alice@example.test", "x@remote.org"])
    directory.add_alias("info@config.test", ["sales@example.test"])
    can = directory.may_send_from
    assert can("alice@example.test", "alice@example.test")
    assert can("ALICE@example.test", "Alice+Tag@Example.Test")
    assert can("alice@example.test", "sales@example.test")
    assert can("alice@example.test", "info@config.test")  # alias of an alias
    assert not can("bob@example.test", "sales@example.test")
    assert not can("bob@example.test", "alice@example.test")
    assert not can("alice@example.test", "alice@remote.org")
    assert not can("alice@example.test", "postmaster@example.test")
    assert not can("nobody@example.test", "nobody@example.test")
    assert not can("alice@example.test", "")


# --- sharing between connections, threads and processes -----------------------------
def test_changes_by_another_connection_are_seen(directory: SqliteDirectory,
                                                config: Config) -> None:
    assert not directory.recipient_exists("late@example.test")  # now cached as unknown
    other = other_instance(directory, config)
    other.add_user("late@example.test", "pw")
    other.add_domain("late.test")
    assert directory.recipient_exists("late@example.test")
    assert directory.is_local_domain("late.test")
    other.close()


def test_refresh_once_per_transaction(directory: SqliteDirectory, config: Config) -> None:
    """An SMTP worker's directory checks for changes only at refresh() (once per mail
    transaction), and then sees everything committed before it."""
    smtpd = SqliteDirectory(directory.path, config, hasher=FAST_HASHER,
                            refresh_each_lookup=False)
    smtpd.refresh()
    assert not smtpd.recipient_exists("late@example.test")  # cached as unknown
    directory.add_user("late@example.test", "pw")
    directory.add_domain("late.test")
    assert not smtpd.recipient_exists("late@example.test")  # same transaction
    assert not smtpd.is_local_domain("late.test")
    smtpd.refresh()
    assert smtpd.recipient_exists("late@example.test")
    assert smtpd.is_local_domain("late.test")
    directory.delete_user("late@example.test")
    smtpd.refresh()
    assert not smtpd.recipient_exists("late@example.test")
    smtpd.close()


def test_threads_use_their_own_connections(directory: SqliteDirectory) -> None:
    directory.add_user("alice@example.test", "pw")
    errors: list[BaseException] = []

    def lookups() -> None:
        try:
            for _ in range(50):
                assert directory.recipient_exists("alice@example.test")
        except BaseException as exc:  # collected and re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=lookups) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []


def _child_adds_user(directory: SqliteDirectory) -> None:
    directory.add_user("child@example.test", "pw")
    assert directory.recipient_exists("alice@example.test")


def test_usable_after_fork(directory: SqliteDirectory) -> None:
    directory.add_user("alice@example.test", "pw")  # the parent's connection is open
    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=_child_adds_user, args=(directory,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    assert directory.recipient_exists("child@example.test")
    assert directory.verify_password("child@example.test", "pw")


def _child_opens(path: Path, config: Config, start: multiprocessing.synchronize.Barrier
                 ) -> None:
    directory = SqliteDirectory(path, config, hasher=FAST_HASHER)
    start.wait(10)
    assert not directory.recipient_exists("nobody@example.test")


def test_processes_opening_a_new_database_at_once(tmp_path: Path, config: Config) -> None:
    """SMTP workers and the dispatcher open a new data directory's database together;
    none of them may fail (switching to WAL does not wait for a busy database)."""
    ctx = multiprocessing.get_context("fork")
    for attempt in range(8):
        path = tmp_path / f"d{attempt}" / "directory.db"
        start = ctx.Barrier(3)
        children = [ctx.Process(target=_child_opens, args=(path, config, start))
                    for _ in range(3)]
        for child in children:
            child.start()
        for child in children:
            child.join(timeout=60)
        assert [c.exitcode for c in children] == [0, 0, 0], attempt


def test_database_file_is_private(directory: SqliteDirectory) -> None:
    directory.add_user("alice@example.test", "pw")
    assert directory.path.stat().st_mode & 0o777 == 0o600


def test_unusable_location_is_a_directory_error(tmp_path: Path, config: Config) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    d = SqliteDirectory(blocker / "directory.db", config, hasher=FAST_HASHER)
    with pytest.raises(DirectoryError, match="cannot open"):
        d.recipient_exists("alice@example.test")
