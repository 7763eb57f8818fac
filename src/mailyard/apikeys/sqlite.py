"""The API keys in ``data_dir/apikeys.db`` (see :mod:`mailyard.sqlitedb`)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mailyard.apikeys.api import ApiKey, KeyExists, Scope
from mailyard.sqlitedb import Database

MIGRATIONS = (
    """CREATE TABLE api_keys (
        key_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        scopes TEXT NOT NULL,
        digest TEXT NOT NULL,
        created REAL NOT NULL,
        last_used REAL,
        revoked REAL
    );
    CREATE UNIQUE INDEX api_keys_active_name ON api_keys(name) WHERE revoked IS NULL""",
    """ALTER TABLE api_keys ADD COLUMN pool TEXT NOT NULL DEFAULT '';
    ALTER TABLE api_keys ADD COLUMN senders TEXT NOT NULL DEFAULT ''""",
)


def _key(row: sqlite3.Row) -> ApiKey:
    scopes = frozenset(Scope(s) for s in row["scopes"].split(",") if s)
    senders = tuple(s for s in row["senders"].split(",") if s)
    return ApiKey(row["key_id"], row["name"], scopes, row["created"], row["last_used"],
                  row["revoked"], row["pool"], senders)


class SqliteKeyStore:
    def __init__(self, path: Path) -> None:
        self.db = Database(path, MIGRATIONS, synchronous="NORMAL")

    def add(self, key: ApiKey, digest: str) -> None:
        try:
            with self.db.transaction() as conn:
                conn.execute(
                    "INSERT INTO api_keys (key_id, name, scopes, digest, created, pool, "
                    "senders) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (key.key_id, key.name, ",".join(sorted(key.scopes)), digest, key.created,
                     key.pool, ",".join(key.senders)))
        except sqlite3.IntegrityError:
            raise KeyExists(key.name) from None

    def get(self, key_id: str) -> tuple[ApiKey, str] | None:
        row = self.db.conn().execute("SELECT * FROM api_keys WHERE key_id = ?",
                                     (key_id,)).fetchone()
        return None if row is None else (_key(row), row["digest"])

    def find(self, id_or_name: str) -> ApiKey | None:
        row = self.db.conn().execute(
            "SELECT * FROM api_keys WHERE key_id = ? OR (name = ? AND revoked IS NULL) "
            "ORDER BY revoked IS NULL DESC LIMIT 1", (id_or_name, id_or_name)).fetchone()
        return None if row is None else _key(row)

    def list(self) -> list[ApiKey]:
        rows = self.db.conn().execute("SELECT * FROM api_keys ORDER BY created, key_id")
        return [_key(r) for r in rows]

    def revoke(self, key_id: str, when: float) -> bool:
        with self.db.transaction() as conn:
            cur = conn.execute("UPDATE api_keys SET revoked = ? WHERE key_id = ? "
                               "AND revoked IS NULL", (when, key_id))
        return cur.rowcount == 1

    def touch(self, key_id: str, when: float) -> None:
        self.db.conn().execute("UPDATE api_keys SET last_used = ? WHERE key_id = ?",
                               (when, key_id))
