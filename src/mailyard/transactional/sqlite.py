"""Idempotency keys and message templates in ``data_dir/transactional.db`` (see
:mod:`mailyard.sqlitedb`), shared by every HTTP worker."""

from __future__ import annotations

import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailyard.sqlitedb import Database
from mailyard.transactional.idempotency import LEASE, TTL, KeyRecord, KeyState, Reservation, decide

MIGRATIONS = (
    """CREATE TABLE idempotency_keys (
        api_key TEXT NOT NULL,
        key TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        state TEXT NOT NULL,
        message_id TEXT NOT NULL,
        created REAL NOT NULL,
        lease_until REAL NOT NULL,
        holder TEXT NOT NULL,
        qid TEXT NOT NULL DEFAULT '',
        status INTEGER NOT NULL DEFAULT 0,
        body TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (api_key, key)
    ) WITHOUT ROWID;
    CREATE INDEX idempotency_keys_created ON idempotency_keys(created);
    CREATE TABLE templates (
        name TEXT PRIMARY KEY,
        subject TEXT NOT NULL,
        html TEXT,
        text TEXT,
        updated REAL NOT NULL
    )""",
)


def _record(row: sqlite3.Row) -> KeyRecord:
    return KeyRecord(row["api_key"], row["key"], row["fingerprint"], KeyState(row["state"]),
                     row["message_id"], row["created"], row["lease_until"], row["holder"],
                     row["qid"], row["status"], row["body"])


@dataclass(frozen=True)
class StoredTemplate:
    name: str
    subject: str
    html: str | None
    text: str | None
    updated: float

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "subject": self.subject, "html": self.html,
                "text": self.text, "updated": self.updated}


class SqliteTransactionalStore:
    """:class:`~mailyard.transactional.idempotency.KeyStore` and the templates.
    Blocking; raises sqlite3.Error or OSError."""

    def __init__(self, path: Path, lease: float = LEASE) -> None:
        self.db = Database(path, MIGRATIONS, synchronous="FULL")
        self.lease = lease

    # --- idempotency keys ----------------------------------------------------------
    def reserve(self, api_key: str, key: str, fingerprint: str, message_id: str,
                now: float) -> tuple[Reservation, KeyRecord]:
        with self.db.transaction() as conn:
            row = conn.execute("SELECT * FROM idempotency_keys WHERE api_key = ? AND key = ?",
                               (api_key, key)).fetchone()
            found = _record(row) if row is not None else None
            outcome = decide(found, fingerprint, now)
            if outcome is not None:
                assert found is not None
                if outcome is Reservation.REPLAY and found.state is KeyState.PENDING:
                    conn.execute("UPDATE idempotency_keys SET state = ? WHERE api_key = ? "
                                 "AND key = ?", (KeyState.DONE.value, api_key, key))
                return outcome, found
            mine = KeyRecord(api_key, key, fingerprint, KeyState.PENDING,
                             found.message_id if found and found.fingerprint == fingerprint
                             else message_id, now, now + self.lease, secrets.token_hex(8))
            conn.execute(
                "INSERT OR REPLACE INTO idempotency_keys (api_key, key, fingerprint, state, "
                "message_id, created, lease_until, holder) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (api_key, key, fingerprint, mine.state.value, mine.message_id, mine.created,
                 mine.lease_until, mine.holder))
            return Reservation.NEW, mine

    def committing(self, api_key: str, key: str, holder: str, qid: str, status: int,
                   body: str) -> bool:
        with self.db.transaction() as conn:
            cur = conn.execute(
                "UPDATE idempotency_keys SET qid = ?, status = ?, body = ? WHERE api_key = ? "
                "AND key = ? AND holder = ? AND state = ?",
                (qid, status, body, api_key, key, holder, KeyState.PENDING.value))
        return cur.rowcount == 1

    def finish(self, api_key: str, key: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("UPDATE idempotency_keys SET state = ? WHERE api_key = ? AND key = ?",
                         (KeyState.DONE.value, api_key, key))

    def release(self, api_key: str, key: str, holder: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM idempotency_keys WHERE api_key = ? AND key = ? AND "
                         "state = ? AND holder = ?",
                         (api_key, key, KeyState.PENDING.value, holder))

    def sweep(self, now: float) -> int:
        with self.db.transaction() as conn:
            cur = conn.execute("DELETE FROM idempotency_keys WHERE created <= ?", (now - TTL,))
        return cur.rowcount

    # --- templates -----------------------------------------------------------------
    def put_template(self, template: StoredTemplate) -> None:
        with self.db.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO templates (name, subject, html, text, "
                         "updated) VALUES (?, ?, ?, ?, ?)",
                         (template.name, template.subject, template.html, template.text,
                          template.updated))

    def template(self, name: str) -> StoredTemplate | None:
        row = self.db.conn().execute("SELECT * FROM templates WHERE name = ?",
                                     (name,)).fetchone()
        return None if row is None else StoredTemplate(row["name"], row["subject"],
                                                       row["html"], row["text"],
                                                       row["updated"])

    def templates(self) -> list[StoredTemplate]:
        rows = self.db.conn().execute("SELECT * FROM templates ORDER BY name")
        return [StoredTemplate(r["name"], r["subject"], r["html"], r["text"], r["updated"])
                for r in rows]

    def delete_template(self, name: str) -> bool:
        with self.db.transaction() as conn:
            cur = conn.execute("DELETE FROM templates WHERE name = ?", (name,))
        return cur.rowcount == 1
