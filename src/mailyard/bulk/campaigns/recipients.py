"""The sending engine's durable state in ``bulk.db``: one row per recipient of a
campaign (``campaign_recipients``) and one per campaign (``campaign_progress``).

A recipient row goes ``pending -> sending -> queued`` (or ``skipped`` when the template
fails for that contact, ``excluded`` when the contact became suppressed, blocked or
unconfirmed before its turn).  ``sending`` is written, in one transaction per batch,
*before* the batch's messages are handed to the queue, and ``queued`` (with the
``queued`` events) in one transaction *after*: so after a crash only the rows still
``sending`` are in doubt, and the runner settles them by asking the queue for their
submit keys (see :mod:`mailyard.bulk.campaigns.runner`).

The progress row holds how far the audience has been walked (``cursor``, ``selected``),
the A/B phase and winner, and a lease (``owner``, ``lease_until``) so that only one
process sends a campaign at a time.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mailyard.bulk.campaigns.audience import Member
from mailyard.bulk.campaigns.sender import (
    AbMetric,
    AbTest,
    Candidate,
    Phase,
    RecipientState,
    VariantResult,
    assign,
)
from mailyard.bulk.report import EventKind
from mailyard.sqlitedb import Database

_IN_CHUNK = 500


@dataclass(frozen=True)
class Progress:
    campaign_id: int
    cursor: int
    selected: bool
    phase: Phase
    phase_at: float | None
    winner: int | None
    owner: str | None
    lease_until: float


@dataclass(frozen=True)
class Recipient:
    """What the runner needs to send to one contact, read at its turn."""

    contact_id: int
    address: str
    name: str
    attributes: dict[str, Any]
    active: bool
    lists: frozenset[int]  # the campaign's lists the contact is confirmed in
    variant: int | None
    domain: str


@dataclass
class BatchResult:
    queued: list[tuple[Recipient, str, int | None]] = field(default_factory=list)  # qid, variant
    skipped: list[tuple[int, str]] = field(default_factory=list)  # contact, reason
    excluded: list[tuple[int, str]] = field(default_factory=list)


def _progress(row: sqlite3.Row) -> Progress:
    return Progress(row["campaign_id"], row["cursor"], bool(row["selected"]),
                    Phase(row["phase"]), row["phase_at"], row["winner"], row["owner"],
                    row["lease_until"])


class RecipientStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- progress and lease -----------------------------------------------------------
    def progress(self, campaign_id: int) -> Progress | None:
        row = self.db.conn().execute("SELECT * FROM campaign_progress WHERE campaign_id = ?",
                                     (campaign_id,)).fetchone()
        return None if row is None else _progress(row)

    def claim(self, campaign_id: int, owner: str, now: float, until: float,
              is_dead: Callable[[str], bool], first_phase: Phase) -> Progress | None:
        """Take (or renew) the campaign's lease: the progress row, or None when another
        live process holds an unexpired lease."""
        with self.db.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO campaign_progress (campaign_id, phase) "
                         "VALUES (?, ?)", (campaign_id, first_phase.value))
            row = conn.execute("SELECT * FROM campaign_progress WHERE campaign_id = ?",
                               (campaign_id,)).fetchone()
            holder = row["owner"]
            if (holder and holder != owner and row["lease_until"] > now
                    and not is_dead(holder)):
                return None
            conn.execute("UPDATE campaign_progress SET owner = ?, lease_until = ? "
                         "WHERE campaign_id = ?", (owner, until, campaign_id))
        found = self.progress(campaign_id)
        assert found is not None
        return found

    def release(self, campaign_id: int, owner: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("UPDATE campaign_progress SET owner = NULL, lease_until = 0 "
                         "WHERE campaign_id = ? AND owner = ?", (campaign_id, owner))

    def set_phase(self, campaign_id: int, phase: Phase, now: float,
                  winner: int | None = None) -> None:
        with self.db.transaction() as conn:
            conn.execute("UPDATE campaign_progress SET phase = ?, phase_at = ?, "
                         "winner = coalesce(?, winner) WHERE campaign_id = ?",
                         (phase.value, now, winner, campaign_id))

    # --- selection ----------------------------------------------------------------------
    def select(self, campaign_id: int, members: Sequence[Member], suppressed: set[str],
               test: AbTest | None, now: float, *, done: bool) -> None:
        """Add a batch of the audience (walked in id order) as pending recipients,
        suppressed ones as excluded, and move the cursor past it."""
        rows = []
        for m in members:
            sample, variant = assign(test, campaign_id, m.contact_id)
            excluded = m.address in suppressed
            rows.append((campaign_id, m.contact_id,
                         (RecipientState.EXCLUDED if excluded else RecipientState.PENDING).value,
                         m.domain, int(sample), variant, "suppressed" if excluded else "", now))
        cursor = members[-1].contact_id if members else None
        with self.db.transaction() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO campaign_recipients (campaign_id, contact_id, state, "
                "domain, sample, variant, reason, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows)
            conn.execute("UPDATE campaign_progress SET cursor = max(cursor, coalesce(?, 0)), "
                         "selected = ? WHERE campaign_id = ?", (cursor, int(done), campaign_id))

    # --- sending ------------------------------------------------------------------------
    def in_flight(self, campaign_id: int) -> list[tuple[int, str, int | None]]:
        """(contact, domain, variant) of the recipients left ``sending`` by a crash."""
        rows = self.db.conn().execute(
            "SELECT contact_id, domain, variant FROM campaign_recipients "
            "WHERE campaign_id = ? AND state = 'sending' ORDER BY contact_id", (campaign_id,))
        return [(r[0], r[1], r[2]) for r in rows]

    def settle(self, campaign_id: int, queued: Sequence[tuple[int, str, str, int | None]],
               now: float) -> None:
        """After a crash: the in-flight recipients whose message the queue has
        (contact, qid, domain, variant) are queued; the others are pending again."""
        with self.db.transaction() as conn:
            self._mark_queued(conn, campaign_id, queued, now)
            conn.execute("UPDATE campaign_recipients SET state = 'pending', updated = ? "
                         "WHERE campaign_id = ? AND state = 'sending'", (now, campaign_id))

    @staticmethod
    def _mark_queued(conn: sqlite3.Connection, campaign_id: int,
                     queued: Sequence[tuple[int, str, str, int | None]], now: float) -> None:
        conn.executemany(
            "UPDATE campaign_recipients SET state = 'queued', qid = ?, variant = ?, "
            "updated = ? WHERE campaign_id = ? AND contact_id = ? AND state = 'sending'",
            [(qid, variant, now, campaign_id, contact) for contact, qid, _, variant in queued])
        conn.executemany(
            "INSERT INTO campaign_events (campaign_id, contact_id, kind, at, domain, data) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(campaign_id, contact, EventKind.QUEUED.value, now, domain,
              json.dumps({"qid": qid}))
             for contact, qid, domain, _ in queued])

    def candidates(self, campaign_id: int, *, sample: bool | None, full: Iterable[str],
                   limit: int) -> list[Candidate]:
        """Pending recipients in contact order (``sample``: only those in the A/B
        sample, or only the others), leaving out the domains that are ``full``."""
        sql = ("SELECT contact_id, domain FROM campaign_recipients "
               "WHERE campaign_id = ? AND state = 'pending'")
        args: list[Any] = [campaign_id]
        if sample is not None:
            sql += " AND sample = ?"
            args.append(int(sample))
        skip = sorted(full)
        if skip:
            sql += f" AND domain NOT IN ({','.join('?' * len(skip))})"
            args += skip
        sql += " ORDER BY contact_id LIMIT ?"
        args.append(limit)
        return [Candidate(r[0], r[1]) for r in self.db.conn().execute(sql, args)]

    def sent_since(self, campaign_id: int, domains: Iterable[str],
                   since: float) -> dict[str, int]:
        """Recipients queued per domain since ``since`` (the caps' sliding hour)."""
        wanted = sorted(domains)
        if not wanted:
            return {}
        rows = self.db.conn().execute(
            "SELECT domain, count(*) FROM campaign_recipients WHERE campaign_id = ? "
            f"AND state IN ('queued', 'sending') AND domain IN ({','.join('?' * len(wanted))}) "
            "AND updated > ? GROUP BY domain", (campaign_id, *wanted, since))
        return {r[0]: r[1] for r in rows}

    def queued_since(self, campaign_id: int, since: float) -> list[tuple[float, int]]:
        """(time, recipients) queued after ``since``: what rebuilds the overall rate's
        bucket when a process takes the campaign up."""
        rows = self.db.conn().execute(
            "SELECT updated, count(*) FROM campaign_recipients WHERE campaign_id = ? "
            "AND state = 'queued' AND updated > ? GROUP BY updated", (campaign_id, since))
        return [(float(r[0]), int(r[1])) for r in rows]

    def oldest_in_window(self, campaign_id: int, domain: str, since: float) -> float | None:
        row = self.db.conn().execute(
            "SELECT min(updated) FROM campaign_recipients WHERE campaign_id = ? AND "
            "domain = ? AND state = 'queued' AND updated > ?",
            (campaign_id, domain, since)).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def mark_sending(self, campaign_id: int, contact_ids: Sequence[int], now: float) -> None:
        with self.db.transaction() as conn:
            conn.executemany("UPDATE campaign_recipients SET state = 'sending', updated = ? "
                             "WHERE campaign_id = ? AND contact_id = ? AND state = 'pending'",
                             [(now, campaign_id, c) for c in contact_ids])

    def recipients(self, campaign_id: int, contact_ids: Sequence[int],
                   list_ids: Sequence[int]) -> list[Recipient]:
        """The contacts of a batch as they are now (a contact erased meanwhile is
        missing from the answer)."""
        out: list[Recipient] = []
        conn = self.db.conn()
        marks = ",".join("?" * len(list_ids))
        for i in range(0, len(contact_ids), _IN_CHUNK):
            chunk = list(contact_ids[i:i + _IN_CHUNK])
            rows = conn.execute(
                "SELECT c.id, c.address, c.name, c.attributes, c.status, r.variant, r.domain, "
                "(SELECT group_concat(m.list_id) FROM memberships m WHERE m.contact_id = c.id "
                f"AND m.status = 'confirmed' AND m.list_id IN ({marks})) AS lists "
                "FROM campaign_recipients r JOIN contacts c ON c.id = r.contact_id "
                f"WHERE r.campaign_id = ? AND r.contact_id IN ({','.join('?' * len(chunk))}) "
                "ORDER BY c.id", (*list_ids, campaign_id, *chunk))
            for r in rows:
                lists = frozenset(int(x) for x in (r["lists"] or "").split(",") if x)
                out.append(Recipient(r["id"], r["address"], r["name"],
                                     json.loads(r["attributes"]), r["status"] == "active",
                                     lists, r["variant"], r["domain"]))
        return out

    def finish_batch(self, campaign_id: int, result: BatchResult, now: float) -> None:
        """One transaction: the queued recipients and their events, the skipped and
        excluded ones with their reasons."""
        queued = [(r.contact_id, qid, r.domain, variant) for r, qid, variant in result.queued]
        with self.db.transaction() as conn:
            self._mark_queued(conn, campaign_id, queued, now)
            for state, items in ((RecipientState.SKIPPED, result.skipped),
                                 (RecipientState.EXCLUDED, result.excluded)):
                conn.executemany(
                    "UPDATE campaign_recipients SET state = ?, reason = ?, updated = ? "
                    "WHERE campaign_id = ? AND contact_id = ? AND state = 'sending'",
                    [(state.value, reason[:500], now, campaign_id, c) for c, reason in items])

    def unsent(self, campaign_id: int, contact_ids: Sequence[int], now: float) -> None:
        """Recipients of a batch that were not handed to the queue (storage failed,
        the process is stopping): pending again."""
        with self.db.transaction() as conn:
            conn.executemany("UPDATE campaign_recipients SET state = 'pending', updated = ? "
                             "WHERE campaign_id = ? AND contact_id = ? AND state = 'sending'",
                             [(now, campaign_id, c) for c in contact_ids])

    # --- figures ------------------------------------------------------------------------
    def counts(self, campaign_id: int) -> dict[str, int]:
        rows = self.db.conn().execute(
            "SELECT state, count(*) FROM campaign_recipients WHERE campaign_id = ? "
            "GROUP BY state", (campaign_id,))
        found = {r[0]: r[1] for r in rows}
        return {s.value: found.get(s.value, 0) for s in RecipientState}

    def left(self, campaign_id: int, *, sample: bool | None = None) -> int:
        """Recipients not settled yet (pending or sending)."""
        sql = ("SELECT count(*) FROM campaign_recipients WHERE campaign_id = ? "
               "AND state IN ('pending', 'sending')")
        args: list[Any] = [campaign_id]
        if sample is not None:
            sql += " AND sample = ?"
            args.append(int(sample))
        return int(self.db.conn().execute(sql, args).fetchone()[0])

    def skipped(self, campaign_id: int) -> list[tuple[int, str, str]]:
        """(contact, state, reason) of the skipped and excluded recipients."""
        rows = self.db.conn().execute(
            "SELECT contact_id, state, reason FROM campaign_recipients WHERE campaign_id = ? "
            "AND state IN ('skipped', 'excluded') ORDER BY contact_id", (campaign_id,))
        return [(r[0], r[1], r[2]) for r in rows]

    def variant_results(self, campaign_id: int, metric: AbMetric,
                        variants: int) -> list[VariantResult]:
        """Per variant of the A/B sample: recipients queued, and unique contacts with a
        human open (or click)."""
        kind = EventKind.OPENED if metric is AbMetric.OPENS else EventKind.CLICKED
        conn = self.db.conn()
        sent = {r[0]: r[1] for r in conn.execute(
            "SELECT variant, count(*) FROM campaign_recipients WHERE campaign_id = ? "
            "AND sample = 1 AND state = 'queued' GROUP BY variant", (campaign_id,))}
        engaged = {r[0]: r[1] for r in conn.execute(
            "SELECT r.variant, count(DISTINCT e.contact_id) FROM campaign_events e "
            "JOIN campaign_recipients r ON r.campaign_id = e.campaign_id "
            "AND r.contact_id = e.contact_id WHERE e.campaign_id = ? AND e.kind = ? "
            "AND e.machine = 0 AND r.sample = 1 GROUP BY r.variant",
            (campaign_id, kind.value))}
        return [VariantResult(v, sent.get(v, 0), engaged.get(v, 0)) for v in range(variants)]
