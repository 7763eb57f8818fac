"""The SQLite index of the file spool: per-recipient state, due times and leases.

The message files are the truth about *what* is queued; this index is the truth about
*how far* each recipient got.  One row per message (``messages``) and one per recipient
(``recipients``).  ``messages.next_due`` caches the earliest ``next_attempt`` over the
message's PENDING and DEFERRED recipients (NULL when none is due: all held or final), so
the scheduler's claim is one ordered range scan on a partial index, however many
messages are queued.

A message whose recipients are all final becomes a *tombstone* (``done = 1``, recipient
rows gone) until its file's unlink is known to be durable; only then is the row purged.
So an index row without a file means "being removed", and a file without a row means
"committed but not indexed yet": the sweep can tell the two apart after any crash.

The database runs in WAL mode with ``synchronous=NORMAL``: a committed transaction
survives the death of the process (it is in the WAL file), and a power loss can only
roll the index back to an earlier consistent state (recipients retried again, never a
message lost, since each committed message's file is durable and re-indexed by the
sweep).  Several processes use the database at once; a writer takes the writers' lock
(:class:`mailyard.sqlitedb.WriterLock`, ``flock`` on ``index.db-lock``) before ``BEGIN
IMMEDIATE`` and drops it after ``COMMIT``, so writers that find it taken sleep until it
is dropped instead of trying SQLite's lock again and again.

The schema carries a version (``PRAGMA user_version``, :data:`SCHEMA_VERSION`).  An
older index is migrated when it is opened; a newer one (written by a later Mailyard)
is refused with a message that says so, rather than misread.  Replies are stored as
JSON (:meth:`DeliveryReply.to_dict`), serialised here and nowhere else.

Version history: 0 = the first schema, ``last_reply`` a plain "451 4.3.0 text" string;
1 = ``last_reply`` a JSON object with code, status, text and the answering host.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailyard.envelope import Envelope
from mailyard.fs import create_private_database
from mailyard.proto.smtp.replies import Reply
from mailyard.queue.api import (
    DeliveryReply,
    FinishedEntry,
    Outcome,
    QueuedRecipient,
    QueueEntry,
    RecipientState,
    StorageError,
)
from mailyard.sqlitedb import WriterLock

BUSY_TIMEOUT_MS = 30_000
SCHEMA_VERSION = 1
_ACTIVE = ("pending", "deferred")

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    qid TEXT PRIMARY KEY,
    created REAL NOT NULL,
    size INTEGER NOT NULL,
    envelope TEXT NOT NULL,
    next_due REAL,
    lease_owner TEXT,
    lease_until REAL NOT NULL DEFAULT 0,
    done INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_due ON messages(next_due) WHERE next_due IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_lease ON messages(lease_owner)
    WHERE lease_owner IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_done ON messages(done) WHERE done = 1;
CREATE TABLE IF NOT EXISTS recipients (
    qid TEXT NOT NULL,
    idx INTEGER NOT NULL,
    address TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL DEFAULT 0,
    last_attempt REAL NOT NULL DEFAULT 0,
    last_reply TEXT NOT NULL DEFAULT '',
    delay_notified INTEGER NOT NULL DEFAULT 0,
    interrupted INTEGER NOT NULL DEFAULT 0,
    claimed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (qid, idx)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS recipients_state ON recipients(state);
CREATE TABLE IF NOT EXISTS submit_keys (
    key TEXT PRIMARY KEY,
    qid TEXT NOT NULL,
    created REAL NOT NULL
) WITHOUT ROWID;
"""

_REFRESH_DUE = """
UPDATE messages SET next_due = (
    SELECT MIN(next_attempt) FROM recipients r
    WHERE r.qid = messages.qid AND r.state IN ('pending', 'deferred'))
WHERE qid = ?"""

# Due, unleased messages in due order: a range scan of the partial index messages_due.
CLAIM_QUERY = ("SELECT qid, lease_owner FROM messages"
               " WHERE next_due IS NOT NULL AND next_due <= ? AND lease_until < ?"
               " ORDER BY next_due LIMIT ?")

CLAIM_ONE_QUERY = ("SELECT qid, lease_owner FROM messages"
                   " WHERE qid = ? AND next_due IS NOT NULL AND next_due <= ? AND lease_until < ?")

_RECIPIENT_COLUMNS = ("qid, idx, address, state, attempts, next_attempt, last_attempt, "
                      "last_reply, delay_notified, interrupted")


@dataclass(frozen=True)
class NewMessage:
    """What the index learns about a freshly committed message."""

    qid: str
    created: float
    size: int
    envelope: Envelope


def _private_database_files(path: Path) -> None:
    """The index holds every envelope: create it 0600 (SQLite gives its -wal and -shm
    files the database's mode) and repair an existing one that others could read."""
    try:
        create_private_database(path)
        for suffix in ("", "-wal", "-shm", "-lock"):
            p = Path(f"{path}{suffix}")
            if p.exists() and p.stat().st_mode & 0o077 and p.stat().st_uid == os.geteuid():
                os.chmod(p, 0o600)
    except OSError as exc:
        raise StorageError(f"cannot open queue index {path}: {exc}") from exc


class QueueIndex:
    """One connection to the index database (thread-safe through a lock)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        _private_database_files(path)
        try:
            self._writers = WriterLock(Path(f"{path}-lock"), path)
        except OSError as exc:
            raise StorageError(f"cannot open queue index lock {path}-lock: {exc}") from exc
        try:
            self._db = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000,
                                       isolation_level=None, check_same_thread=False)
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if self._db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            with self._lock, self._writers:
                self._db.executescript("BEGIN IMMEDIATE;" + SCHEMA)
                try:
                    _migrate(self._db, path)
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._writers.close()
            raise StorageError(f"cannot open queue index {path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()
            self._writers.close()

    # --- transactions ----------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (the database lock is taken up front)."""
        with self._lock, self._writers:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StorageError(f"queue index: {exc}") from exc

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN")
                try:
                    yield self._db
                finally:
                    self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StorageError(f"queue index: {exc}") from exc

    # --- producers -------------------------------------------------------------
    def insert(self, messages: Sequence[NewMessage],
               present: Callable[[str], bool] | None = None) -> None:
        """Index committed messages (a message or recipient already known is left
        alone: the sweep may have indexed it first).  ``present(qid)`` is asked under
        the write lock: a message whose file is gone was indexed by a concurrent sweep,
        delivered and purged meanwhile, and must not come back."""
        with self._write() as db:
            # Keys first and for every message: one whose file is already gone was
            # committed all the same (see submitted()).
            db.executemany(
                "INSERT OR IGNORE INTO submit_keys (key, qid, created) VALUES (?, ?, ?)",
                [(m.envelope.submit_key, m.qid, m.created) for m in messages
                 if m.envelope.submit_key])
            if present is not None:
                messages = [m for m in messages if present(m.qid)]
            db.executemany(
                "INSERT OR IGNORE INTO messages (qid, created, size, envelope, next_due)"
                " VALUES (?, ?, ?, ?, ?)",
                [(m.qid, m.created, m.size, json.dumps(m.envelope.to_dict()),
                  0 if m.envelope.recipients else None) for m in messages])
            db.executemany(
                "INSERT OR IGNORE INTO recipients (qid, idx, address, state)"
                " VALUES (?, ?, ?, 'pending')",
                [(m.qid, i, r.address) for m in messages
                 for i, r in enumerate(m.envelope.recipients)])

    def submitted(self, key: str) -> str | None:
        """The queue id of the committed message whose envelope carried ``key``
        (kept after its delivery, until :meth:`forget_keys`)."""
        with self._read() as db:
            row = db.execute("SELECT qid FROM submit_keys WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def forget_keys(self, before: float) -> int:
        with self._write() as db:
            return db.execute("DELETE FROM submit_keys WHERE created < ?", (before,)).rowcount

    # --- scheduler -------------------------------------------------------------
    def reap_dead_owners(self, is_dead: Callable[[str], bool]) -> int:
        """Free the leases of owners that are gone; their claimed recipients become
        ``interrupted``.  Returns how many messages were freed."""
        with self._read() as db:
            owners = [row[0] for row in db.execute(
                "SELECT DISTINCT lease_owner FROM messages WHERE lease_owner IS NOT NULL")]
        dead = [o for o in owners if is_dead(o)]
        freed = 0
        for owner in dead:
            with self._write() as db:
                qids = [row[0] for row in db.execute(
                    "SELECT qid FROM messages WHERE lease_owner = ?", (owner,))]
                for qid in qids:
                    self._lose_lease(db, qid)
                freed += len(qids)
        return freed

    @staticmethod
    def _lose_lease(db: sqlite3.Connection, qid: str) -> None:
        db.execute("UPDATE recipients SET interrupted = 1, claimed = 0"
                   " WHERE qid = ? AND claimed = 1", (qid,))
        db.execute("UPDATE messages SET lease_owner = NULL, lease_until = 0 WHERE qid = ?",
                   (qid,))

    def claim_due(self, now: float, limit: int, lease_until: float,
                  owner: str, qid: str | None = None) -> list[QueueEntry]:
        with self._write() as db:
            if qid is None:
                rows = db.execute(CLAIM_QUERY, (now, now, limit)).fetchall()
            else:
                rows = db.execute(CLAIM_ONE_QUERY, (qid, now, now)).fetchall()
            for qid, previous_owner in rows:
                if previous_owner is not None:  # an expired lease: that attempt was lost
                    self._lose_lease(db, qid)
            qids = [row[0] for row in rows]
            if qids:  # one statement per table for the whole round
                marks = ",".join("?" * len(qids))
                db.execute("UPDATE messages SET lease_owner = ?, lease_until = ?"
                           f" WHERE qid IN ({marks})", (owner, lease_until, *qids))
                db.execute(f"UPDATE recipients SET claimed = 1 WHERE qid IN ({marks})"
                           " AND state IN ('pending', 'deferred') AND next_attempt <= ?",
                           (*qids, now))
            return self._entries(db, qids)

    def release_lease(self, qid: str) -> None:
        with self._write() as db:
            db.execute("UPDATE recipients SET claimed = 0 WHERE qid = ? AND claimed = 1",
                       (qid,))
            db.execute("UPDATE messages SET lease_owner = NULL, lease_until = 0 WHERE qid = ?",
                       (qid,))

    def record(self, qid: str, outcomes: Iterable[Outcome],
               now: float) -> QueueEntry | None:
        """Apply attempt results.  A message whose recipients are all final becomes a
        tombstone; the returned entry then shows the final states."""
        with self._write() as db:
            entries = self._entries(db, [qid])
            if not entries:
                return None
            current = {r.index: r for r in entries[0].recipients}
            for o in outcomes:
                old = current.get(o.index)
                if old is None:
                    raise StorageError(f"{qid}: no recipient with index {o.index}")
                current[o.index] = self._apply(db, qid, old, o, now)
            db.execute("UPDATE recipients SET claimed = 0 WHERE qid = ? AND claimed = 1",
                       (qid,))
            db.execute("UPDATE messages SET lease_owner = NULL, lease_until = 0 WHERE qid = ?",
                       (qid,))
            db.execute(_REFRESH_DUE, (qid,))
            entry = QueueEntry(entries[0].qid, entries[0].envelope, entries[0].size,
                               entries[0].created, tuple(current[i] for i in sorted(current)))
            if entry.is_done:
                self._entomb(db, [qid])
            return entry

    @staticmethod
    def _apply(db: sqlite3.Connection, qid: str, old: QueuedRecipient, o: Outcome,
               now: float) -> QueuedRecipient:
        new = QueueIndex._applied(qid, old, o, now)
        QueueIndex._store_attempt(db, qid, new)
        return new

    @staticmethod
    def _applied(qid: str, old: QueuedRecipient, o: Outcome, now: float) -> QueuedRecipient:
        """The recipient after the attempt ``o`` (nothing written)."""
        if o.state not in (RecipientState.DELIVERED, RecipientState.FAILED,
                           RecipientState.DEFERRED):
            raise StorageError(f"{qid}: an attempt cannot end in state {o.state.value}")
        state: RecipientState = o.state
        next_attempt = old.next_attempt
        if o.state is RecipientState.DEFERRED:
            next_attempt = o.next_attempt
            if old.state is RecipientState.HELD:  # held while the attempt ran
                state = RecipientState.HELD
        return QueuedRecipient(old.index, old.address, state, old.attempts + 1, next_attempt,
                               now, o.reply, old.delay_notified, False)

    @staticmethod
    def _store_attempt(db: sqlite3.Connection, qid: str, new: QueuedRecipient) -> None:
        db.execute("UPDATE recipients SET state = ?, attempts = ?, next_attempt = ?,"
                   " last_attempt = ?, last_reply = ?, interrupted = 0, claimed = 0"
                   " WHERE qid = ? AND idx = ?",
                   (new.state.value, new.attempts, new.next_attempt, new.last_attempt,
                    encode_reply(new.last_reply), qid, new.index))

    def record_many(self, items: Sequence[FinishedEntry], now: float) -> list[bool | None]:
        """:meth:`record` for several messages in one transaction.  Each item is (qid,
        outcomes, postponed): ``postponed`` recipients (index, until, reason) wait until
        ``until`` without counting an attempt (their destination is known to be down);
        an item with neither just gives up the lease.  Per item: True when every
        recipient is now final (the message became a tombstone), False when it stays
        queued, None when it was not in the queue."""
        out: list[bool | None] = []
        qids = [item.qid for item in items]
        marks = ",".join("?" * len(qids))
        with self._write() as db:
            present = {row[0] for row in db.execute(
                f"SELECT qid FROM messages WHERE done = 0 AND qid IN ({marks})", qids)}
            known: dict[str, dict[int, QueuedRecipient]] = {q: {} for q in present}
            for qid, idx, address, state, attempts, next_attempt, last_attempt, last_reply, \
                    delay_notified, interrupted in db.execute(
                        f"SELECT {_RECIPIENT_COLUMNS} FROM recipients WHERE qid IN ({marks})",
                        qids):
                if qid in known:
                    known[qid][idx] = QueuedRecipient(
                        idx, address, RecipientState(state), attempts, next_attempt,
                        last_attempt, decode_reply(last_reply), bool(delay_notified),
                        bool(interrupted))
            done_qids: list[str] = []
            for item in items:
                qid = item.qid
                current = known.get(qid)
                if current is None:
                    out.append(None)
                    continue
                changed: set[int] = set()
                for o in item.outcomes:
                    current[o.index] = self._applied(
                        qid, self._known(current, qid, o.index), o, now)
                    changed.add(o.index)
                for p in item.postponed:
                    self._known(current, qid, p.index)
                done = not item.postponed and all(r.state.is_final for r in current.values())
                if done:  # the rows would be deleted at once: no updates before
                    done_qids.append(qid)
                    out.append(done)
                    continue
                for index in changed:
                    self._store_attempt(db, qid, current[index])
                for p in item.postponed:
                    db.execute("UPDATE recipients SET next_attempt = ?, last_reply = ?"
                               " WHERE qid = ? AND idx = ?",
                               (p.until, encode_reply(p.reason), qid, p.index))
                db.execute("UPDATE recipients SET claimed = 0 WHERE qid = ? AND claimed = 1",
                           (qid,))
                db.execute("UPDATE messages SET lease_owner = NULL, lease_until = 0"
                           " WHERE qid = ?", (qid,))
                db.execute(_REFRESH_DUE, (qid,))
                out.append(done)
            self._entomb(db, done_qids)
        return out

    @staticmethod
    def _known(current: dict[int, QueuedRecipient], qid: str, index: int) -> QueuedRecipient:
        old = current.get(index)
        if old is None:
            raise StorageError(f"{qid}: no recipient with index {index}")
        return old

    def postpone_domain(self, domain: str, until: float, reason: DeliveryReply,
                        now: float) -> int:
        """Due recipients in ``domain`` of messages nobody holds a lease on wait until
        ``until``, without counting an attempt (two set-based statements, one
        transaction).  Returns how many were postponed."""
        suffix = "@" + domain.lower()
        match = "lower(substr(address, -?)) = ?"
        with self._write() as db:
            n = db.execute(
                "UPDATE recipients SET next_attempt = ?, last_reply = ?"
                f" WHERE state IN ('pending', 'deferred') AND next_attempt < ? AND {match}"
                " AND qid IN (SELECT qid FROM messages WHERE lease_until < ? AND done = 0)",
                (until, encode_reply(reason), until, len(suffix), suffix, now)).rowcount
            if n:
                db.execute(
                    "UPDATE messages SET next_due = (SELECT MIN(next_attempt) FROM recipients r"
                    "  WHERE r.qid = messages.qid AND r.state IN ('pending', 'deferred'))"
                    " WHERE lease_until < ? AND done = 0 AND qid IN (SELECT qid FROM recipients"
                    f"  WHERE next_attempt = ? AND {match})",
                    (now, until, len(suffix), suffix))
            return n

    def mark_delay_notified(self, qid: str, indexes: Iterable[int]) -> None:
        with self._write() as db:
            db.executemany("UPDATE recipients SET delay_notified = 1 WHERE qid = ? AND idx = ?",
                           [(qid, i) for i in indexes])

    # --- operator --------------------------------------------------------------
    def get(self, qid: str) -> QueueEntry | None:
        with self._read() as db:
            entries = self._entries(db, [qid])
        return entries[0] if entries else None

    def all_entries(self) -> list[QueueEntry]:
        with self._read() as db:
            messages = db.execute("SELECT qid, created, size, envelope FROM messages"
                                  " WHERE done = 0 ORDER BY qid").fetchall()
            recipients = db.execute(f"SELECT {_RECIPIENT_COLUMNS} FROM recipients"
                                    " ORDER BY qid, idx").fetchall()
        return _build_entries(messages, recipients)

    def hold(self, qid: str) -> bool:
        with self._write() as db:
            if not self._exists(db, qid):
                return False
            db.execute("UPDATE recipients SET state = 'held'"
                       " WHERE qid = ? AND state IN ('pending', 'deferred')", (qid,))
            db.execute(_REFRESH_DUE, (qid,))
            return True

    def release(self, qid: str) -> bool:
        with self._write() as db:
            if not self._exists(db, qid):
                return False
            db.execute("UPDATE recipients SET next_attempt = 0, state ="
                       " CASE WHEN attempts = 0 THEN 'pending' ELSE 'deferred' END"
                       " WHERE qid = ? AND state = 'held'", (qid,))
            db.execute(_REFRESH_DUE, (qid,))
            return True

    def flush(self, qid: str | None) -> int:
        with self._write() as db:
            if qid is None:
                n = db.execute("UPDATE recipients SET next_attempt = 0"
                               " WHERE state = 'deferred'").rowcount
                db.execute("UPDATE messages SET next_due = 0 WHERE next_due IS NOT NULL")
                return n
            if not self._exists(db, qid):
                return 0
            n = db.execute("UPDATE recipients SET next_attempt = 0"
                           " WHERE qid = ? AND state = 'deferred'", (qid,)).rowcount
            db.execute(_REFRESH_DUE, (qid,))
            return n

    def entomb(self, qid: str) -> bool:
        """Remove a message from the queue (its file is then unlinked by the caller)."""
        with self._write() as db:
            if not self._exists(db, qid):
                return False
            self._entomb(db, [qid])
            return True

    @staticmethod
    def _entomb(db: sqlite3.Connection, qids: Sequence[str]) -> None:
        if not qids:
            return
        marks = ",".join("?" * len(qids))
        db.execute(f"DELETE FROM recipients WHERE qid IN ({marks})", qids)
        db.execute("UPDATE messages SET done = 1, next_due = NULL, lease_owner = NULL,"
                   f" lease_until = 0, envelope = '{{}}' WHERE qid IN ({marks})", qids)

    def stats(self) -> dict[RecipientState, int]:
        counts = dict.fromkeys(RecipientState, 0)
        with self._read() as db:
            for state, n in db.execute("SELECT state, COUNT(*) FROM recipients GROUP BY state"):
                counts[RecipientState(state)] = n
        return counts

    # --- sweep support -----------------------------------------------------------
    def known(self) -> dict[str, bool]:
        """Every indexed qid and whether it is a tombstone."""
        with self._read() as db:
            return {qid: bool(done) for qid, done in db.execute("SELECT qid, done FROM messages")}

    def tombstones(self, limit: int) -> list[str]:
        with self._read() as db:
            return [row[0] for row in db.execute(
                "SELECT qid FROM messages WHERE done = 1 LIMIT ?", (limit,))]

    def forget(self, qids: Sequence[str]) -> None:
        """Drop index rows (tombstones whose unlink is durable, or rows without a file)."""
        with self._write() as db:
            for qid in qids:
                db.execute("DELETE FROM recipients WHERE qid = ?", (qid,))
                db.execute("DELETE FROM messages WHERE qid = ?", (qid,))

    # --- helpers -----------------------------------------------------------------
    @staticmethod
    def _exists(db: sqlite3.Connection, qid: str) -> bool:
        return db.execute("SELECT 1 FROM messages WHERE qid = ? AND done = 0",
                          (qid,)).fetchone() is not None

    @staticmethod
    def _entries(db: sqlite3.Connection, qids: Sequence[str]) -> list[QueueEntry]:
        if not qids:
            return []
        marks = ",".join("?" * len(qids))
        messages = db.execute(f"SELECT qid, created, size, envelope FROM messages"
                              f" WHERE done = 0 AND qid IN ({marks})", list(qids)).fetchall()
        recipients = db.execute(f"SELECT {_RECIPIENT_COLUMNS} FROM recipients"
                                f" WHERE qid IN ({marks}) ORDER BY qid, idx",
                                list(qids)).fetchall()
        by_qid = {e.qid: e for e in _build_entries(messages, recipients)}
        return [by_qid[q] for q in qids if q in by_qid]


def _build_entries(messages: list[tuple[Any, ...]],
                   recipients: list[tuple[Any, ...]]) -> list[QueueEntry]:
    grouped: dict[str, list[QueuedRecipient]] = {}
    for (qid, idx, address, state, attempts, next_attempt, last_attempt, last_reply,
         delay_notified, interrupted) in recipients:
        grouped.setdefault(qid, []).append(QueuedRecipient(
            idx, address, RecipientState(state), attempts, next_attempt, last_attempt,
            decode_reply(last_reply), bool(delay_notified), bool(interrupted)))
    return [QueueEntry(qid, Envelope.from_dict(json.loads(envelope)), size, created,
                       tuple(grouped.get(qid, ())))
            for qid, created, size, envelope in messages]


# --- the storage boundary for replies -----------------------------------------------
def encode_reply(reply: DeliveryReply | None) -> str:
    if reply is None:
        return ""
    return json.dumps(reply.to_dict(), separators=(",", ":"), ensure_ascii=False)


def decode_reply(stored: str) -> DeliveryReply | None:
    if not stored:
        return None
    try:
        return DeliveryReply.from_dict(json.loads(stored))
    except (ValueError, KeyError, TypeError, AttributeError):
        return _legacy_reply(stored)


def _legacy_reply(text: str) -> DeliveryReply:
    """A version-0 row: "451 4.3.0 text" (or any text, kept whole as a 451's)."""
    code_s, _, rest = text.strip().partition(" ")
    if not (len(code_s) == 3 and code_s.isdigit() and code_s[0] in "245"):
        return DeliveryReply(Reply(451, "", text.strip()))
    status, _, words = rest.partition(" ")
    if status.count(".") == 2 and status[:1] == code_s[0]:
        return DeliveryReply(Reply(int(code_s), status, words))
    return DeliveryReply(Reply(int(code_s), "", rest))


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    """Bring the schema to :data:`SCHEMA_VERSION` (inside the open transaction)."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StorageError(
            f"queue index {path} has schema version {version}, newer than this Mailyard "
            f"understands ({SCHEMA_VERSION}); run the Mailyard version that wrote it")
    if version < 1:
        rows = db.execute("SELECT qid, idx, last_reply FROM recipients"
                          " WHERE last_reply != ''").fetchall()
        db.executemany("UPDATE recipients SET last_reply = ? WHERE qid = ? AND idx = ?",
                       [(encode_reply(decode_reply(text)), qid, idx) for qid, idx, text in rows])
    if version != SCHEMA_VERSION:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
