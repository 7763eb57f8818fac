"""The embedded user directory: domains, users and aliases in one SQLite database.

``<data_dir>/directory.db`` is shared by every process (SMTP workers, the delivery
dispatcher, the CLI): WAL journal, a busy timeout, and one connection per process and
thread, opened on first use, so an object built before ``fork()`` is safe to use after
it.  Lookups on the RCPT path are cached per connection; the cache is dropped as soon
as ``PRAGMA data_version`` shows another connection committed.  By default that is
checked at every lookup, so a user added with the CLI is visible on the next one.  An
SMTP worker builds its directory with ``refresh_each_lookup=False`` and checks once
per mail transaction instead (:meth:`SqliteDirectory.refresh`, which smtpd calls at
MAIL and VRFY): that keeps SQLite, and the interpreter lock each call gives up, off
the RCPT path.

Passwords are stored as argon2id hashes (argon2-cffi) and, for SCRAM-SHA-256, as the
RFC 5802 StoredKey/ServerKey pair computed when the password is set, with the
iteration count of ``[auth] scram_iterations`` stored next to it (0: no SCRAM keys).
A successful password check brings an outdated hash or SCRAM iteration count up to
the configured one.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from mailyard.config import Config
from mailyard.directory import expand as expansion
from mailyard.directory.addresses import (
    address_key,
    base_address,
    check_address,
    check_domain,
    check_target,
    domain_key,
    split_key,
)
from mailyard.directory.api import (
    AliasRecord,
    DirectoryError,
    DomainRecord,
    QuotaRecord,
    Resolution,
    ScramCredentials,
    UserRecord,
)
from mailyard.directory.scram import SaslprepError, new_credentials, saslprep
from mailyard.fs import create_private_database, disk_full
from mailyard.store.quota import Keep, QuotaLimits

SCHEMA_VERSION = 2
BUSY_TIMEOUT_MS = 10_000
CACHE_LIMIT = 4096

_SCHEMA = """
CREATE TABLE IF NOT EXISTS domains (
    name TEXT PRIMARY KEY,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS users (
    address TEXT PRIMARY KEY,
    domain TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    scram_salt BLOB,
    scram_iterations INTEGER,
    scram_stored_key BLOB,
    scram_server_key BLOB,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS users_domain ON users (domain);
CREATE TABLE IF NOT EXISTS aliases (
    address TEXT NOT NULL,
    position INTEGER NOT NULL,
    target TEXT NOT NULL,
    domain TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (address, position)
);
CREATE INDEX IF NOT EXISTS aliases_domain ON aliases (domain);
"""

# Schema changes after version 1, applied in order to a database at an older version
# (one transaction with the version bump, so two processes never apply one twice).
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    # Per-user quota (RFC 9208 STORAGE in octets, MESSAGE): NULL is the configured
    # default, 0 unlimited.
    2: ("ALTER TABLE users ADD COLUMN quota_storage INTEGER",
        "ALTER TABLE users ADD COLUMN quota_messages INTEGER"),
}

# Connections inherited from a parent process must never be used or closed in the
# child (SQLite forbids it); they are parked here so garbage collection leaves them be.
_INHERITED: list[sqlite3.Connection] = []


@dataclass
class _ConnectionState:
    """One process+thread's connection and the lookups cached on it."""

    pid: int
    conn: sqlite3.Connection
    data_version: int = -1
    domains: frozenset[str] | None = None
    resolutions: dict[str, Resolution] = field(default_factory=dict)
    quotas: dict[str, QuotaLimits] = field(default_factory=dict)


class SqliteDirectory:
    """The Directory protocol (``directory.api``) plus the DirectoryAdmin operations."""

    def __init__(self, path: Path | str, config: Config, *,
                 hasher: PasswordHasher | None = None,
                 scram_iterations: int | None = None,
                 refresh_each_lookup: bool = True) -> None:
        self.path = Path(path)
        self.refresh_each_lookup = refresh_each_lookup
        self.config_domains = frozenset(domain_key(d) for d in config.local_domains)
        self.config_primary = domain_key(config.local_domains[0]) if config.local_domains else ""
        self.hasher = hasher or PasswordHasher()  # argon2id, RFC 9106 parameters
        # PBKDF2 iterations for new SCRAM keys; 0: store none (SCRAM is not offered).
        self.scram_iterations = (config.auth.scram_iterations if scram_iterations is None
                                 else scram_iterations)
        self.default_quota = QuotaLimits.from_settings(config.mailbox.quota_storage,
                                                       config.mailbox.quota_messages)
        self._local = threading.local()
        self._dummy_hash: str | None = None

    # --- connections ---------------------------------------------------------------
    def _state(self) -> _ConnectionState:
        state: _ConnectionState | None = getattr(self._local, "state", None)
        if state is None or state.pid != os.getpid():
            if state is not None:
                _INHERITED.append(state.conn)
            state = _ConnectionState(os.getpid(), self._connect())
            self._local.state = state
        return state

    def _connect(self) -> sqlite3.Connection:
        _create_private(self.path)
        with _database_errors():
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True,
                                   timeout=BUSY_TIMEOUT_MS / 1000)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            _use_wal(conn)
            conn.execute("PRAGMA synchronous = FULL")
            if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                _upgrade(conn)
            return conn

    def _conn(self) -> sqlite3.Connection:
        return self._state().conn

    def _fresh_state(self) -> _ConnectionState:
        """The connection state, with its caches dropped if anyone else has written
        (checked here, or only in :meth:`refresh`)."""
        state = self._state()
        if self.refresh_each_lookup or state.data_version < 0:
            self._check_version(state)
        return state

    def refresh(self) -> None:
        """Drop the cached lookups if another connection committed since the last check."""
        self._check_version(self._state())

    @staticmethod
    def _check_version(state: _ConnectionState) -> None:
        with _database_errors():
            version = state.conn.execute("PRAGMA data_version").fetchone()[0]
        if version != state.data_version:
            state.data_version = version
            state.domains = None
            state.resolutions.clear()
            state.quotas.clear()

    def _changed(self) -> None:
        """After a write on this connection (its own data_version does not move)."""
        state = self._state()
        state.domains = None
        state.resolutions.clear()
        state.quotas.clear()

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        state: _ConnectionState | None = getattr(self._local, "state", None)
        if state is not None and state.pid == os.getpid():
            state.conn.close()
        self._local.state = None

    # --- lookups (the Directory protocol) -------------------------------------------
    def local_domains(self) -> frozenset[str]:
        state = self._fresh_state()
        if state.domains is None:
            with _database_errors():
                rows = state.conn.execute("SELECT name FROM domains").fetchall()
            state.domains = self.config_domains | {r[0] for r in rows}
        return state.domains

    def is_local_domain(self, domain: str) -> bool:
        return domain_key(domain) in self.local_domains()

    def primary_domain(self) -> str | None:
        if self.config_primary:
            return self.config_primary
        state = self._fresh_state()
        with _database_errors():
            row = state.conn.execute(
                "SELECT name FROM domains ORDER BY created, name LIMIT 1").fetchone()
        return row[0] if row else None

    def resolve(self, address: str) -> Resolution:
        key = address.strip()
        state = self._fresh_state()
        cached = state.resolutions.get(key)
        if cached is not None:
            return cached
        result = expansion.expand(key, _Lookups(self, state.conn))
        if len(state.resolutions) >= CACHE_LIMIT:
            state.resolutions.clear()
        state.resolutions[key] = result
        return result

    def recipient_exists(self, address: str) -> bool:
        _, domain = split_key(address_key(address))
        return self.is_local_domain(domain) and self.resolve(address).exists

    def verify_password(self, username: str, password: str) -> bool:
        key = address_key(username)
        with _database_errors():
            row = self._conn().execute(
                "SELECT password_hash, scram_iterations FROM users WHERE address = ?",
                (key,)).fetchone()
        if row is None:
            self._verify(self._dummy(), password)  # same work for unknown users
            return False
        if not self._verify(row[0], password):
            return False
        if self.hasher.check_needs_rehash(row[0]) or self._scram_outdated(row[1], password):
            self._store_password(key, password)
        return True

    def _scram_outdated(self, stored_iterations: int | None, password: str) -> bool:
        """The stored SCRAM keys do not follow ``scram_iterations`` (keys made with
        another count, keys kept although SCRAM is off, or none although it is on)."""
        if stored_iterations is not None:
            return stored_iterations != self.scram_iterations
        return self.scram_iterations > 0 and self._scram_possible(password)

    def _verify(self, stored: str, password: str) -> bool:
        try:
            return self.hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = self.hasher.hash(os.urandom(16).hex())
        return self._dummy_hash

    def scram_credentials(self, username: str) -> ScramCredentials | None:
        if not self.scram_iterations:
            return None  # SCRAM is off: keys left from before are not used
        with _database_errors():
            row = self._conn().execute(
                "SELECT scram_salt, scram_iterations, scram_stored_key, scram_server_key "
                "FROM users WHERE address = ?", (address_key(username),)).fetchone()
        if row is None or row[0] is None:
            return None
        return ScramCredentials(salt=bytes(row[0]), iterations=int(row[1]),
                                stored_key=bytes(row[2]), server_key=bytes(row[3]))

    def may_send_from(self, username: str, address: str) -> bool:
        user = address_key(username)
        sender = address_key(address)
        if not address.strip() or not self._user_exists(self._conn(), user):
            return False
        if sender == user or base_address(sender) == user:
            return True
        _, domain = split_key(sender)
        return self.is_local_domain(domain) and user in self.resolve(address).mailboxes

    def _user_exists(self, conn: sqlite3.Connection, key: str) -> bool:
        with _database_errors():
            return conn.execute("SELECT 1 FROM users WHERE address = ?",
                                (key,)).fetchone() is not None

    def quota_limits(self, address: str) -> QuotaLimits:
        key = address_key(address)
        state = self._fresh_state()
        cached = state.quotas.get(key)
        if cached is not None:
            return cached
        with _database_errors():
            row = state.conn.execute(
                "SELECT quota_storage, quota_messages FROM users WHERE address = ?",
                (key,)).fetchone()
        limits = QuotaLimits() if row is None else self._limits(row[0], row[1])
        if len(state.quotas) >= CACHE_LIMIT:
            state.quotas.clear()
        state.quotas[key] = limits
        return limits

    def _limits(self, storage: int | None, messages: int | None) -> QuotaLimits:
        default = self.default_quota
        return QuotaLimits(default.storage_bytes if storage is None else storage or None,
                           default.messages if messages is None else messages or None)

    # --- domains -------------------------------------------------------------------
    def add_domain(self, domain: str) -> None:
        name = check_domain(domain)
        if name in self.config_domains:
            raise DirectoryError(f"domain {name} is already local (config local_domains)",
                                 code="domain_in_config")
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM domains WHERE name = ?", (name,)).fetchone():
                raise DirectoryError(f"domain {name} exists", code="domain_exists")
            conn.execute("INSERT INTO domains (name, created) VALUES (?, ?)",
                         (name, time.time()))

    def delete_domain(self, domain: str) -> None:
        name = domain_key(domain)
        with self._write() as conn:
            if not conn.execute("SELECT 1 FROM domains WHERE name = ?", (name,)).fetchone():
                if name in self.config_domains:
                    raise DirectoryError(
                        f"domain {name} is listed in the configuration file "
                        "(local_domains); remove it there", code="domain_in_config")
                raise DirectoryError(f"no such domain: {name}", code="no_such_domain")
            if name not in self.config_domains:
                users = conn.execute("SELECT COUNT(*) FROM users WHERE domain = ?",
                                     (name,)).fetchone()[0]
                aliases = conn.execute(
                    "SELECT COUNT(DISTINCT address) FROM aliases WHERE domain = ?",
                    (name,)).fetchone()[0]
                if users or aliases:
                    raise DirectoryError(
                        f"domain {name} still has {users} user(s) and {aliases} alias(es); "
                        "delete them first", code="domain_not_empty")
            conn.execute("DELETE FROM domains WHERE name = ?", (name,))

    def list_domains(self) -> list[DomainRecord]:
        with _database_errors():
            db = {r[0] for r in self._conn().execute("SELECT name FROM domains")}
        return [DomainRecord(name, name in self.config_domains, name in db)
                for name in sorted(db | self.config_domains)]

    # --- users ---------------------------------------------------------------------
    def add_user(self, address: str, password: str) -> UserRecord:
        key = check_address(address, mailbox=True)
        self._require_local(key)
        _check_password(password)
        now = time.time()
        with self._write() as conn:
            if self._user_exists(conn, key):
                raise DirectoryError(f"user {key} exists", code="user_exists")
            conn.execute(
                "INSERT INTO users (address, domain, password_hash, created, updated) "
                "VALUES (?, ?, '', ?, ?)", (key, split_key(key)[1], now, now))
            self._write_password(conn, key, password)
        return UserRecord(key, now, self.scram_iterations > 0 and self._scram_possible(password))

    def set_password(self, address: str, password: str) -> None:
        key = address_key(address)
        _check_password(password)
        with self._write() as conn:
            if not self._user_exists(conn, key):
                raise DirectoryError(f"no such user: {key}", code="no_such_user")
            self._write_password(conn, key, password)

    def _store_password(self, key: str, password: str) -> None:
        with self._write() as conn:
            self._write_password(conn, key, password)

    def _write_password(self, conn: sqlite3.Connection, key: str, password: str) -> None:
        scram: ScramCredentials | None = None
        if self.scram_iterations:
            # On SaslprepError PLAIN/LOGIN still work; SCRAM cannot be offered for it.
            with contextlib.suppress(SaslprepError):
                scram = new_credentials(password, self.scram_iterations)
        conn.execute(
            "UPDATE users SET password_hash = ?, scram_salt = ?, scram_iterations = ?, "
            "scram_stored_key = ?, scram_server_key = ?, updated = ? WHERE address = ?",
            (self.hasher.hash(password),
             scram.salt if scram else None, scram.iterations if scram else None,
             scram.stored_key if scram else None, scram.server_key if scram else None,
             time.time(), key))

    @staticmethod
    def _scram_possible(password: str) -> bool:
        try:
            saslprep(password)
        except SaslprepError:
            return False
        return True

    def delete_user(self, address: str) -> None:
        key = address_key(address)
        with self._write() as conn:
            if conn.execute("DELETE FROM users WHERE address = ?", (key,)).rowcount == 0:
                raise DirectoryError(f"no such user: {key}", code="no_such_user")

    def list_users(self, domain: str | None = None) -> list[UserRecord]:
        sql = "SELECT address, created, scram_salt IS NOT NULL FROM users"
        params: tuple[str, ...] = ()
        if domain:
            sql += " WHERE domain = ?"
            params = (domain_key(domain),)
        with _database_errors():
            rows = self._conn().execute(sql + " ORDER BY domain, address", params).fetchall()
        return [UserRecord(r[0], r[1], bool(r[2])) for r in rows]

    # --- quota ---------------------------------------------------------------------
    def get_quota(self, address: str) -> QuotaRecord:
        key = address_key(address)
        with _database_errors():
            row = self._conn().execute(
                "SELECT quota_storage, quota_messages FROM users WHERE address = ?",
                (key,)).fetchone()
        if row is None:
            raise DirectoryError(f"no such user: {key}", code="no_such_user")
        return QuotaRecord(key, row[0], row[1], self._limits(row[0], row[1]))

    def set_quota(self, address: str, *, storage_bytes: int | None | Keep = Keep.KEEP,
                  messages: int | None | Keep = Keep.KEEP) -> QuotaRecord:
        key = address_key(address)
        for name, value in (("storage", storage_bytes), ("messages", messages)):
            if isinstance(value, int) and value < 0:
                raise DirectoryError(f"the {name} limit must not be negative",
                                     code="invalid_quota")
        with self._write() as conn:
            row = conn.execute("SELECT quota_storage, quota_messages FROM users"
                               " WHERE address = ?", (key,)).fetchone()
            if row is None:
                raise DirectoryError(f"no such user: {key}", code="no_such_user")
            storage = row[0] if isinstance(storage_bytes, Keep) else storage_bytes
            count = row[1] if isinstance(messages, Keep) else messages
            conn.execute("UPDATE users SET quota_storage = ?, quota_messages = ?, updated = ?"
                         " WHERE address = ?", (storage, count, time.time(), key))
        return QuotaRecord(key, storage, count, self._limits(storage, count))

    # --- aliases -------------------------------------------------------------------
    def add_alias(self, address: str, targets: list[str] | tuple[str, ...]) -> AliasRecord:
        """Create the alias, or add targets to an existing one (duplicates ignored)."""
        key = _alias_key(address)
        domain = key.rpartition("@")[2]
        self._require_local(f"x@{domain}")
        if not targets:
            raise DirectoryError(f"alias {key}: give at least one target",
                                 code="alias_without_target")
        checked = [check_target(t) for t in targets]
        if not key.startswith("@") and any(t.startswith("@") for t in checked):
            raise DirectoryError(
                f"alias {key}: an '@domain' target is only allowed for a catch-all "
                f"alias (@{domain})", code="invalid_target")
        now = time.time()
        with self._write() as conn:
            rows = conn.execute("SELECT position, target FROM aliases WHERE address = ?",
                                (key,)).fetchall()
            have = {address_key(r[1]) for r in rows}
            position = max((r[0] for r in rows), default=-1) + 1
            for target in checked:
                if address_key(target) in have:
                    continue
                have.add(address_key(target))
                conn.execute("INSERT INTO aliases (address, position, target, domain, created)"
                             " VALUES (?, ?, ?, ?, ?)", (key, position, target, domain, now))
                position += 1
        record = self._alias(key)
        assert record is not None
        return record

    def delete_alias(self, address: str, targets: list[str] | tuple[str, ...] = ()) -> None:
        """Delete the alias, or only the given targets of it."""
        key = _alias_key(address)
        with self._write() as conn:
            if not targets:
                if conn.execute("DELETE FROM aliases WHERE address = ?", (key,)).rowcount == 0:
                    raise DirectoryError(f"no such alias: {key}", code="no_such_alias")
                return
            rows = conn.execute("SELECT position, target FROM aliases WHERE address = ?",
                                (key,)).fetchall()
            if not rows:
                raise DirectoryError(f"no such alias: {key}", code="no_such_alias")
            by_key = {address_key(r[1]): r[0] for r in rows}
            for target in targets:
                position = by_key.get(address_key(target))
                if position is None:
                    raise DirectoryError(f"alias {key} has no target {target}",
                                         code="no_such_target")
                conn.execute("DELETE FROM aliases WHERE address = ? AND position = ?",
                             (key, position))

    def list_aliases(self, domain: str | None = None) -> list[AliasRecord]:
        sql = "SELECT address, target, created FROM aliases"
        params: tuple[str, ...] = ()
        if domain:
            sql += " WHERE domain = ?"
            params = (domain_key(domain),)
        with _database_errors():
            rows = self._conn().execute(sql + " ORDER BY domain, address, position",
                                        params).fetchall()
        grouped: dict[str, list[str]] = {}
        created: dict[str, float] = {}
        for address, target, when in rows:
            grouped.setdefault(address, []).append(target)
            created.setdefault(address, when)
        return [AliasRecord(a, tuple(t), created[a]) for a, t in grouped.items()]

    def _alias(self, key: str) -> AliasRecord | None:
        rows = self._conn().execute(
            "SELECT target, created FROM aliases WHERE address = ? ORDER BY position",
            (key,)).fetchall()
        if not rows:
            return None
        return AliasRecord(key, tuple(r[0] for r in rows), rows[0][1])

    # --- helpers -------------------------------------------------------------------
    def _require_local(self, key: str) -> None:
        domain = split_key(key)[1]
        if not self.is_local_domain(domain):
            raise DirectoryError(
                f"domain {domain} is not local; add it first with `mailyard domain add "
                f"{domain}` (or list it in local_domains in the configuration)",
                code="domain_not_local")

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        with _database_errors(), _transaction(conn):
            conn.execute("BEGIN IMMEDIATE")
            yield conn
        self._changed()


class _Lookups:
    """The AliasSource that expansion reads, over one connection."""

    def __init__(self, directory: SqliteDirectory, conn: sqlite3.Connection) -> None:
        self.directory = directory
        self.conn = conn
        self.domains = directory.local_domains()

    def is_local_domain(self, domain: str) -> bool:
        return domain in self.domains

    def alias_targets(self, key: str) -> tuple[str, ...] | None:
        with _database_errors():
            rows = self.conn.execute(
                "SELECT target FROM aliases WHERE address = ? ORDER BY position",
                (key,)).fetchall()
        return tuple(r[0] for r in rows) or None

    def is_user(self, key: str) -> bool:
        return self.directory._user_exists(self.conn, key)


def _alias_key(address: str) -> str:
    text = address.strip()
    if text.startswith("@"):
        return "@" + check_domain(text[1:])
    return check_address(text)


def _check_password(password: str) -> None:
    if not password:
        raise DirectoryError("empty password", code="password_empty")
    if any(c in password for c in "\r\n\0"):
        raise DirectoryError("the password contains a line break or NUL",
                             code="password_invalid")


def _create_private(path: Path) -> None:
    """Create the database file owner-only if it does not exist yet (password hashes
    inside), never closing a descriptor of an existing one: see
    :func:`mailyard.fs.create_private_database`."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        create_private_database(path)
    except OSError as exc:
        raise DirectoryError(f"cannot open {path}: {exc.strerror}") from exc


def _upgrade(conn: sqlite3.Connection) -> None:
    """Create the tables, or bring an older database up to SCHEMA_VERSION.  The
    version is read again under the write lock: another process may have upgraded
    the database meanwhile."""
    with _transaction(conn):
        conn.execute("BEGIN IMMEDIATE")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version >= SCHEMA_VERSION:
            return
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        for target in range(max(version, 1) + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[target]:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _use_wal(conn: sqlite3.Connection) -> None:
    """Switch a new database to WAL.  The switch needs the database to itself and, when
    several processes open a new database at once, fails at once with "database is
    locked" instead of waiting (the busy timeout does not apply); so it is retried
    until one of them has made the switch."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0] == "wal":
                return
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise DirectoryError("directory database: cannot switch to WAL journaling")
        time.sleep(0.01)


@contextlib.contextmanager
def _database_errors() -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as exc:
        if disk_full(exc):
            raise DirectoryError(f"directory database: not enough disk space ({exc})"
                                 ) from exc
        raise DirectoryError(f"directory database error: {exc}") from exc


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """Commit when the block ends normally, roll back when it raises (the block itself
    issues BEGIN)."""
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    if conn.in_transaction:
        conn.execute("COMMIT")
