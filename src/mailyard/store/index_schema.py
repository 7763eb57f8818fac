"""The schema of the mailbox index and its migrations, and the rows of cached
message structure.

:data:`SCHEMA` is the current schema (version :data:`SCHEMA_VERSION`, kept in
``PRAGMA user_version``); each older version has its migration here, run when an
index is opened (see ``IndexDatabase._upgrade``).  The cached ENVELOPE and
BODYSTRUCTURE live in a table of their own, with their IMAP wire form: what is kept
about a message's content is :func:`_cached`, written by :func:`_store_structures`.
Separate from the index's operations because the table layout and its history
change for other reasons (and more rarely) than what is done with the rows.
"""

from __future__ import annotations

import sqlite3

from mailyard.message import structure
from mailyard.proto.imap import structwire

SCHEMA_VERSION = 2  # 2: the IMAP wire form of the cached structures

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS folders (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    uidvalidity INTEGER NOT NULL,
    uidnext INTEGER NOT NULL,
    highestmodseq INTEGER NOT NULL,
    special_use TEXT,
    cur_mtime INTEGER NOT NULL DEFAULT 0,
    cur_checked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS messages (
    folder INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    base TEXT NOT NULL,
    filename TEXT NOT NULL,
    letters TEXT NOT NULL,
    keywords TEXT NOT NULL,
    modseq INTEGER NOT NULL,
    internal_date REAL NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (folder, uid)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS structures (
    folder INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    wire_utf8 INTEGER NOT NULL,
    body_wire BLOB NOT NULL,
    bodystructure_wire BLOB NOT NULL,
    envelope_wire BLOB NOT NULL,
    envelope TEXT NOT NULL,
    bodystructure TEXT NOT NULL,
    PRIMARY KEY (folder, uid)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS messages_base ON messages(folder, base);
CREATE INDEX IF NOT EXISTS messages_modseq ON messages(folder, modseq);
CREATE TABLE IF NOT EXISTS expunged (
    folder INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    PRIMARY KEY (folder, uid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS expunged_modseq ON expunged(folder, modseq);
"""

#: Version 1 -> 2: the cached structures move out of ``messages`` (whose rows are read
#: whole by every sync: small rows make that fast) into ``structures``, with their
#: wire form (small columns first: SQLite reads a row's columns in order).
MIGRATE_1 = """
ALTER TABLE folders ADD COLUMN cur_mtime INTEGER NOT NULL DEFAULT 0;
ALTER TABLE folders ADD COLUMN cur_checked INTEGER NOT NULL DEFAULT 0;
CREATE TABLE IF NOT EXISTS structures (
    folder INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    wire_utf8 INTEGER NOT NULL,
    body_wire BLOB NOT NULL,
    bodystructure_wire BLOB NOT NULL,
    envelope_wire BLOB NOT NULL,
    envelope TEXT NOT NULL,
    bodystructure TEXT NOT NULL,
    PRIMARY KEY (folder, uid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS expunged_modseq ON expunged(folder, modseq);
"""
_MESSAGE_COLUMNS = ("folder, uid, base, filename, letters, keywords, modseq, internal_date,"
                    " size")
_CACHED = ("m.internal_date, m.size, s.envelope, s.bodystructure, s.envelope_wire,"
           " s.bodystructure_wire, s.body_wire, s.wire_utf8")
#: What FETCH may take from the index as octets: item -> column.
WIRE_ITEMS = {"ENVELOPE": "envelope_wire", "BODYSTRUCTURE": "bodystructure_wire",
              "BODY": "body_wire"}
_Cached = tuple[float, int, str, str, bytes, bytes, bytes, int]


def _cached(mtime: float, size: int, env: structure.Structure,
            body: structure.Structure) -> _Cached:
    """What the index keeps about a message's content (see :data:`_CACHED`)."""
    wire = structwire.encode(env, body)
    return (mtime, size, structure.dumps(env), structure.dumps(body), wire.envelope,
            wire.bodystructure, wire.body, int(wire.utf8_differs))


def _store_structures(db: sqlite3.Connection, fid: int, uid: int, cached: _Cached) -> None:
    env, body, env_wire, bs_wire, body_wire, utf8 = cached[2:]
    db.execute("INSERT OR REPLACE INTO structures (folder, uid, wire_utf8, body_wire,"
               " bodystructure_wire, envelope_wire, envelope, bodystructure)"
               " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
               (fid, uid, utf8, body_wire, bs_wire, env_wire, env, body))


def _migrate_1(db: sqlite3.Connection) -> None:
    for statement in MIGRATE_1.split(";"):
        if statement.strip():
            db.execute(statement)
    rows = db.execute("SELECT folder, uid, internal_date, size, envelope, bodystructure"
                      " FROM messages").fetchall()
    for fid, uid, mtime, size, env, body in rows:
        _store_structures(db, fid, uid, _cached(mtime, size, structure.loads(env),
                                                structure.loads(body)))
    db.execute("ALTER TABLE messages DROP COLUMN envelope")
    db.execute("ALTER TABLE messages DROP COLUMN bodystructure")
