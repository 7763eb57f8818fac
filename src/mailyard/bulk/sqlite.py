"""The embedded :class:`~mailyard.bulk.store.ContactStore`: ``data_dir/bulk.db``.

Suppressions are keyed by a keyed digest of the address (HMAC-SHA256 with a key
derived from the server secret), with the address beside it: erasing a person
(GDPR art. 17) removes the address but keeps the digest, so an address that bounced
or complained is still never mailed again, and the stored value cannot be turned back
into the address by trying a list of candidates without the server secret.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from mailyard.bulk.importer import ImportRow
from mailyard.bulk.model import (
    ENDED,
    Consent,
    Contact,
    ContactStatus,
    MailingList,
    Membership,
    MembershipStatus,
    OptIn,
    Suppression,
    SuppressionReason,
)
from mailyard.bulk.store import BatchResult, StoreConflict
from mailyard.sqlitedb import Database

MIGRATIONS = (
    """CREATE TABLE contacts (
        id INTEGER PRIMARY KEY,
        address TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL DEFAULT '',
        attributes TEXT NOT NULL DEFAULT '{}',
        status TEXT NOT NULL DEFAULT 'active',
        created REAL NOT NULL,
        updated REAL NOT NULL
    );
    CREATE TABLE lists (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        title TEXT NOT NULL DEFAULT '',
        opt_in TEXT NOT NULL,
        created REAL NOT NULL
    );
    CREATE TABLE memberships (
        list_id INTEGER NOT NULL REFERENCES lists(id) ON DELETE CASCADE,
        contact_id INTEGER NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
        status TEXT NOT NULL,
        consent_at REAL, consent_ip TEXT, consent_source TEXT,
        confirmed_at REAL, confirmed_ip TEXT, confirmed_source TEXT,
        updated REAL NOT NULL,
        PRIMARY KEY (list_id, contact_id)
    ) WITHOUT ROWID;
    CREATE INDEX memberships_contact ON memberships(contact_id);
    CREATE TABLE suppressions (
        id INTEGER PRIMARY KEY,
        digest TEXT NOT NULL UNIQUE,
        address TEXT,
        reason TEXT NOT NULL,
        note TEXT NOT NULL DEFAULT '',
        created REAL NOT NULL
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        contact_id INTEGER NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        at REAL NOT NULL,
        data TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX events_contact ON events(contact_id)""",
    # 2: campaigns, their tracked links and their events (mailyard.bulk.campaigns)
    """CREATE TABLE campaigns (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        state TEXT NOT NULL,
        spec TEXT NOT NULL,
        send_at REAL,
        created REAL NOT NULL,
        updated REAL NOT NULL,
        started REAL,
        finished REAL
    );
    CREATE INDEX campaigns_due ON campaigns(state, send_at);
    CREATE TABLE campaign_links (
        campaign_id INTEGER NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        url TEXT NOT NULL,
        PRIMARY KEY (campaign_id, idx)
    ) WITHOUT ROWID;
    CREATE TABLE campaign_events (
        id INTEGER PRIMARY KEY,
        campaign_id INTEGER NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
        contact_id INTEGER NOT NULL,
        kind TEXT NOT NULL,
        at REAL NOT NULL,
        domain TEXT NOT NULL DEFAULT '',
        link INTEGER,
        machine INTEGER NOT NULL DEFAULT 0,
        bounce TEXT,
        data TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX campaign_events_campaign ON campaign_events(campaign_id);
    CREATE INDEX campaign_events_contact ON campaign_events(contact_id)""",
    # 3: the sending engine's per-recipient state and per-campaign progress
    # (mailyard.bulk.campaigns.recipients)
    """CREATE TABLE campaign_recipients (
        campaign_id INTEGER NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
        contact_id INTEGER NOT NULL,
        state TEXT NOT NULL,
        domain TEXT NOT NULL DEFAULT '',
        sample INTEGER NOT NULL DEFAULT 0,
        variant INTEGER,
        qid TEXT NOT NULL DEFAULT '',
        reason TEXT NOT NULL DEFAULT '',
        updated REAL NOT NULL,
        PRIMARY KEY (campaign_id, contact_id)
    ) WITHOUT ROWID;
    CREATE INDEX campaign_recipients_state
        ON campaign_recipients(campaign_id, state, sample, contact_id);
    CREATE INDEX campaign_recipients_contact ON campaign_recipients(contact_id);
    CREATE INDEX campaign_recipients_domain
        ON campaign_recipients(campaign_id, domain, updated);
    CREATE TABLE campaign_progress (
        campaign_id INTEGER PRIMARY KEY REFERENCES campaigns(id) ON DELETE CASCADE,
        cursor INTEGER NOT NULL DEFAULT 0,
        selected INTEGER NOT NULL DEFAULT 0,
        phase TEXT NOT NULL DEFAULT 'all',
        phase_at REAL,
        winner INTEGER,
        owner TEXT,
        lease_until REAL NOT NULL DEFAULT 0
    )""",
    # 4: soft bounces and deliveries of transactional messages, by address digest
    # (mailyard.services.feedback: they count toward bulk.soft_bounce_threshold)
    """CREATE TABLE address_soft_bounces (
        digest TEXT NOT NULL,
        message TEXT NOT NULL,
        at REAL NOT NULL,
        PRIMARY KEY (digest, message)
    ) WITHOUT ROWID;
    CREATE INDEX address_soft_bounces_at ON address_soft_bounces(at);
    CREATE TABLE address_deliveries (
        digest TEXT PRIMARY KEY,
        at REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX address_deliveries_at ON address_deliveries(at)""",
)

_IN_CHUNK = 500  # addresses per "IN (...)" query


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _contact(row: sqlite3.Row) -> Contact:
    return Contact(row["id"], row["address"], row["name"], json.loads(row["attributes"]),
                   ContactStatus(row["status"]), row["created"], row["updated"])


def _consent(at: float | None, ip: str | None, source: str | None) -> Consent | None:
    return None if at is None else Consent(at, ip or "", source or "")


def _membership(row: sqlite3.Row) -> Membership:
    return Membership(row["list_name"], row["address"], MembershipStatus(row["status"]),
                      _consent(row["consent_at"], row["consent_ip"], row["consent_source"]),
                      _consent(row["confirmed_at"], row["confirmed_ip"],
                               row["confirmed_source"]),
                      row["updated"])


def _suppression(row: sqlite3.Row) -> Suppression:
    return Suppression(row["address"] or "", SuppressionReason(row["reason"]), row["created"],
                       row["note"], row["id"])


_MEMBERSHIP_SELECT = (
    "SELECT m.*, l.name AS list_name, c.address AS address FROM memberships m "
    "JOIN lists l ON l.id = m.list_id JOIN contacts c ON c.id = m.contact_id ")


class SqliteContactStore:
    def __init__(self, path: Path, digest: Callable[[str], str]) -> None:
        self.db = Database(path, MIGRATIONS, secure_delete=True)
        self.digest = digest

    # --- contacts ----------------------------------------------------------------
    def get_contact(self, address: str) -> Contact | None:
        row = self.db.conn().execute("SELECT * FROM contacts WHERE address = ?",
                                     (address,)).fetchone()
        return None if row is None else _contact(row)

    def get_contact_by_id(self, contact_id: int) -> Contact | None:
        row = self.db.conn().execute("SELECT * FROM contacts WHERE id = ?",
                                     (contact_id,)).fetchone()
        return None if row is None else _contact(row)

    def contacts(self, *, list_id: int | None = None, after: int = 0,
                 limit: int | None = None) -> Iterator[Contact]:
        sql = "SELECT c.* FROM contacts c "
        args: list[Any] = []
        if list_id is not None:
            sql += "JOIN memberships m ON m.contact_id = c.id AND m.list_id = ? "
            args.append(list_id)
        sql += "WHERE c.id > ? ORDER BY c.id"
        args.append(after)
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        for row in self.db.conn().execute(sql, args):
            yield _contact(row)

    def attribute_names(self, list_id: int | None = None) -> list[str]:
        sql = "SELECT DISTINCT j.key FROM contacts c, json_each(c.attributes) j "
        args: list[Any] = []
        if list_id is not None:
            sql += ("JOIN memberships m ON m.contact_id = c.id WHERE m.list_id = ? ")
            args.append(list_id)
        sql += "ORDER BY j.key"
        return [r[0] for r in self.db.conn().execute(sql, args)]

    def add_contact(self, address: str, name: str, attributes: dict[str, Any],
                    now: float) -> Contact:
        try:
            with self.db.transaction() as conn:
                cur = conn.execute(
                    "INSERT INTO contacts (address, name, attributes, created, updated) "
                    "VALUES (?, ?, ?, ?, ?)", (address, name, _json(attributes), now, now))
        except sqlite3.IntegrityError:
            raise StoreConflict(address) from None
        return Contact(cur.lastrowid or 0, address, name, attributes, ContactStatus.ACTIVE,
                       now, now)

    def update_contact(self, contact_id: int, *, name: str | None = None,
                       attributes: dict[str, Any] | None = None,
                       status: ContactStatus | None = None, now: float) -> Contact:
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE contacts SET name = coalesce(?, name), "
                "attributes = coalesce(?, attributes), status = coalesce(?, status), "
                "updated = ? WHERE id = ?",
                (name, None if attributes is None else _json(attributes),
                 None if status is None else status.value, now, contact_id))
        contact = self.get_contact_by_id(contact_id)
        assert contact is not None
        return contact

    def import_batch(self, rows: Sequence[ImportRow], list_id: int,
                     status: MembershipStatus, consent: Consent) -> BatchResult:
        now = consent.at
        with self.db.transaction() as conn:
            existing: dict[str, sqlite3.Row] = {}
            for i in range(0, len(rows), _IN_CHUNK):
                chunk = [r.address for r in rows[i:i + _IN_CHUNK]]
                marks = ",".join("?" * len(chunk))
                for row in conn.execute(
                        f"SELECT address, name, attributes FROM contacts "
                        f"WHERE address IN ({marks})", chunk):
                    existing[row["address"]] = row
            inserts, updates, unchanged = [], [], 0
            for r in rows:
                old = existing.get(r.address)
                if old is None:
                    inserts.append((r.address, r.name or "", _json(r.attributes), now, now))
                    continue
                merged = {**json.loads(old["attributes"]), **r.attributes}
                name = old["name"] if r.name is None or r.name == "" else r.name
                attrs = _json(merged)
                if name == old["name"] and attrs == old["attributes"]:
                    unchanged += 1
                else:
                    updates.append((name, attrs, now, r.address))
            conn.executemany("INSERT INTO contacts (address, name, attributes, created, "
                             "updated) VALUES (?, ?, ?, ?, ?)", inserts)
            conn.executemany("UPDATE contacts SET name = ?, attributes = ?, updated = ? "
                             "WHERE address = ?", updates)
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO memberships (list_id, contact_id, status, consent_at, "
                "consent_ip, consent_source, updated) "
                "SELECT ?, id, ?, ?, ?, ?, ? FROM contacts WHERE address = ?",
                [(list_id, status.value, consent.at, consent.ip, consent.source, now,
                  r.address) for r in rows])
            joined = conn.total_changes - before
        return BatchResult(len(inserts), len(updates), unchanged, joined)

    def erase(self, address: str) -> None:
        digest = self.digest(address)
        with self.db.transaction() as conn:
            conn.execute("UPDATE suppressions SET address = NULL, note = '' "
                         "WHERE digest = ?", (digest,))
            conn.execute("DELETE FROM address_soft_bounces WHERE digest = ?", (digest,))
            conn.execute("DELETE FROM address_deliveries WHERE digest = ?", (digest,))
            row = conn.execute("SELECT id FROM contacts WHERE address = ?",
                               (address,)).fetchone()
            if row is None:
                return
            contact_id = row["id"]
            conn.execute("DELETE FROM events WHERE contact_id = ?", (contact_id,))
            conn.execute("DELETE FROM campaign_events WHERE contact_id = ?", (contact_id,))
            conn.execute("DELETE FROM campaign_recipients WHERE contact_id = ?", (contact_id,))
            conn.execute("DELETE FROM memberships WHERE contact_id = ?", (contact_id,))
            conn.execute("DELETE FROM contacts WHERE id = ?", (contact_id,))
        self.db.checkpoint()

    def events(self, contact_id: int) -> list[dict[str, Any]]:
        rows = self.db.conn().execute(
            "SELECT kind, at, data FROM events WHERE contact_id = ? ORDER BY id", (contact_id,))
        return [{"kind": r["kind"], "at": r["at"], "data": json.loads(r["data"])} for r in rows]

    # --- lists -------------------------------------------------------------------
    def add_list(self, name: str, title: str, opt_in: OptIn, now: float) -> MailingList:
        try:
            with self.db.transaction() as conn:
                cur = conn.execute("INSERT INTO lists (name, title, opt_in, created) "
                                   "VALUES (?, ?, ?, ?)", (name, title, opt_in.value, now))
        except sqlite3.IntegrityError:
            raise StoreConflict(name) from None
        return MailingList(cur.lastrowid or 0, name, title, opt_in, now)

    def _list(self, where: str, arg: Any) -> MailingList | None:
        conn = self.db.conn()
        row = conn.execute(f"SELECT * FROM lists WHERE {where} = ?", (arg,)).fetchone()
        if row is None:
            return None
        counts = {r[0]: r[1] for r in conn.execute(
            "SELECT status, count(*) FROM memberships WHERE list_id = ? GROUP BY status",
            (row["id"],))}
        return MailingList(row["id"], row["name"], row["title"], OptIn(row["opt_in"]),
                           row["created"], counts)

    def get_list(self, name: str) -> MailingList | None:
        return self._list("name", name)

    def get_list_by_id(self, list_id: int) -> MailingList | None:
        return self._list("id", list_id)

    def lists(self) -> list[MailingList]:
        names = [r[0] for r in self.db.conn().execute("SELECT name FROM lists ORDER BY name")]
        return [m for m in (self.get_list(n) for n in names) if m is not None]

    # --- memberships -------------------------------------------------------------
    def membership(self, list_id: int, contact_id: int) -> Membership | None:
        row = self.db.conn().execute(
            _MEMBERSHIP_SELECT + "WHERE m.list_id = ? AND m.contact_id = ?",
            (list_id, contact_id)).fetchone()
        return None if row is None else _membership(row)

    def memberships_of(self, contact_id: int) -> list[Membership]:
        rows = self.db.conn().execute(
            _MEMBERSHIP_SELECT + "WHERE m.contact_id = ? ORDER BY l.name", (contact_id,))
        return [_membership(r) for r in rows]

    def members(self, list_id: int, *, status: MembershipStatus | None = None,
                after: int = 0, limit: int = 100) -> list[tuple[int, Membership]]:
        sql = _MEMBERSHIP_SELECT + "WHERE m.list_id = ? AND m.contact_id > ? "
        args: list[Any] = [list_id, after]
        if status is not None:
            sql += "AND m.status = ? "
            args.append(status.value)
        sql += "ORDER BY m.contact_id LIMIT ?"
        args.append(limit)
        return [(r["contact_id"], _membership(r)) for r in self.db.conn().execute(sql, args)]

    def set_membership(self, list_id: int, contact_id: int, status: MembershipStatus, *,
                       consent: Consent | None = None, confirmed: Consent | None = None,
                       now: float) -> Membership:
        c = consent or Consent(0.0)
        k = confirmed or Consent(0.0)
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO memberships (list_id, contact_id, status, consent_at, consent_ip, "
                "consent_source, confirmed_at, confirmed_ip, confirmed_source, updated) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (list_id, contact_id) DO UPDATE SET status = excluded.status, "
                "updated = excluded.updated, "
                "consent_at = coalesce(excluded.consent_at, consent_at), "
                "consent_ip = CASE WHEN excluded.consent_at IS NULL THEN consent_ip "
                "ELSE excluded.consent_ip END, "
                "consent_source = CASE WHEN excluded.consent_at IS NULL THEN consent_source "
                "ELSE excluded.consent_source END, "
                "confirmed_at = coalesce(excluded.confirmed_at, confirmed_at), "
                "confirmed_ip = CASE WHEN excluded.confirmed_at IS NULL THEN confirmed_ip "
                "ELSE excluded.confirmed_ip END, "
                "confirmed_source = CASE WHEN excluded.confirmed_at IS NULL "
                "THEN confirmed_source ELSE excluded.confirmed_source END",
                (list_id, contact_id, status.value,
                 consent.at if consent else None, c.ip, c.source,
                 confirmed.at if confirmed else None, k.ip, k.source, now))
        found = self.membership(list_id, contact_id)
        assert found is not None
        return found

    def end_memberships(self, contact_id: int, list_ids: Sequence[int],
                        status: MembershipStatus, record: Consent, now: float) -> list[int]:
        if status not in ENDED:
            raise ValueError(f"not an ending status: {status}")
        active = (MembershipStatus.CONFIRMED.value, MembershipStatus.UNCONFIRMED.value)
        with self.db.transaction() as conn:
            changed = [lid for lid in dict.fromkeys(list_ids) if conn.execute(
                "UPDATE memberships SET status = ?, updated = ? WHERE list_id = ? "
                "AND contact_id = ? AND status IN (?, ?)",
                (status.value, now, lid, contact_id, *active)).rowcount == 1]
            if changed:
                names = [r[0] for r in conn.execute(
                    f"SELECT name FROM lists WHERE id IN ({','.join('?' * len(changed))}) "
                    "ORDER BY name", changed)]
                conn.execute("INSERT INTO events (contact_id, kind, at, data) "
                             "VALUES (?, ?, ?, ?)",
                             (contact_id, status.value, record.at,
                              _json({"lists": names, **record.to_dict()})))
        return changed

    def remove_membership(self, list_id: int, contact_id: int) -> bool:
        with self.db.transaction() as conn:
            cur = conn.execute("DELETE FROM memberships WHERE list_id = ? AND contact_id = ?",
                               (list_id, contact_id))
        return cur.rowcount == 1

    # --- suppression -------------------------------------------------------------
    def suppress(self, address: str, reason: SuppressionReason, note: str,
                 now: float) -> Suppression:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO suppressions (digest, address, reason, note, created) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (digest) DO UPDATE SET "
                "address = excluded.address, reason = excluded.reason, note = excluded.note",
                (self.digest(address), address, reason.value, note, now))
        found = self.suppression(address)
        assert found is not None
        return found

    def unsuppress(self, address: str) -> bool:
        with self.db.transaction() as conn:
            cur = conn.execute("DELETE FROM suppressions WHERE digest = ?",
                               (self.digest(address),))
        return cur.rowcount == 1

    def suppression(self, address: str) -> Suppression | None:
        row = self.db.conn().execute("SELECT * FROM suppressions WHERE digest = ?",
                                     (self.digest(address),)).fetchone()
        return None if row is None else _suppression(row)

    def suppressions(self, *, after: int = 0, limit: int = 100) -> list[Suppression]:
        rows = self.db.conn().execute(
            "SELECT * FROM suppressions WHERE id > ? ORDER BY id LIMIT ?", (after, limit))
        return [_suppression(r) for r in rows]

    # --- soft bounces and deliveries of transactional messages -----------------------
    def add_soft_bounce(self, address: str, message: str, at: float) -> None:
        with self.db.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO address_soft_bounces (digest, message, at) "
                         "VALUES (?, ?, ?)", (self.digest(address), message, at))

    def soft_bounces(self, address: str, since: float) -> list[tuple[str, float]]:
        rows = self.db.conn().execute(
            "SELECT message, at FROM address_soft_bounces WHERE digest = ? AND at > ? "
            "ORDER BY at", (self.digest(address), since))
        return [(r["message"], r["at"]) for r in rows]

    def add_deliveries(self, addresses: Sequence[str], at: float) -> None:
        with self.db.transaction() as conn:
            conn.executemany(
                "INSERT INTO address_deliveries (digest, at) VALUES (?, ?) "
                "ON CONFLICT (digest) DO UPDATE SET at = max(at, excluded.at)",
                [(self.digest(a), at) for a in set(addresses)])

    def last_delivery(self, address: str) -> float | None:
        row = self.db.conn().execute("SELECT at FROM address_deliveries WHERE digest = ?",
                                     (self.digest(address),)).fetchone()
        return None if row is None else float(row["at"])

    def prune_address_history(self, before: float) -> int:
        with self.db.transaction() as conn:
            gone = conn.execute("DELETE FROM address_soft_bounces WHERE at < ?",
                                (before,)).rowcount
            gone += conn.execute("DELETE FROM address_deliveries WHERE at < ?",
                                 (before,)).rowcount
        return gone
