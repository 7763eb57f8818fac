"""Who a campaign goes to: the confirmed members of its lists, each once, who match its
segment, are not blocked and are not suppressed.

Read in contact id order, a bounded batch at a time (``c.id > ? ORDER BY c.id LIMIT
?``), so 100,000 recipients are never in memory together.  Everything but the
suppression check is one parameterised query over ``bulk.db`` (the segment's condition
from :mod:`mailyard.bulk.segments`, engagement read from ``campaign_events``); the
suppression list is keyed by a keyed digest of the address, so each batch's addresses
are digested here and looked up with one ``IN (...)``.

:func:`count_audience` is what the service layer shows before sending.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from mailyard.bulk.campaigns.model import CampaignSpec
from mailyard.bulk.segments import SegmentError, SegmentSchema, compile_segment, parse

BATCH = 1000
SCHEMA = SegmentSchema(contacts_ref="c", events_table="campaign_events")


class AudienceError(ValueError):
    """The campaign names a list that does not exist, or its segment is not valid."""


@dataclass(frozen=True)
class Member:
    contact_id: int
    address: str

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2].lower()


class Audience:
    """The audience query of one campaign over one database connection."""

    def __init__(self, conn: sqlite3.Connection, spec: CampaignSpec,
                 digest: Callable[[str], str], now: float) -> None:
        self.conn = conn
        self.digest = digest
        if not spec.lists:
            raise AudienceError("the campaign has no list")
        #: The campaign's lists by id, in the order the campaign names them.
        self.list_names: dict[int, str] = {}
        for name in spec.lists:
            row = conn.execute("SELECT id FROM lists WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise AudienceError(f"no list named {name!r}")
            self.list_names.setdefault(int(row[0]), name)
        self.list_ids = tuple(self.list_names)
        marks = ",".join("?" * len(self.list_ids))
        where = ["c.id > ?", "c.status = 'active'",
                 "EXISTS (SELECT 1 FROM memberships m WHERE m.contact_id = c.id "
                 f"AND m.status = 'confirmed' AND m.list_id IN ({marks}))"]
        params: list[object] = [*self.list_ids]
        if spec.segment.strip():
            try:
                cond = compile_segment(parse(spec.segment), SCHEMA, now)
            except SegmentError as exc:
                raise AudienceError(f"segment: {exc}") from None
            where.append(cond.where)
            params += cond.params
        self._sql = ("SELECT c.id, c.address FROM contacts c WHERE "
                     + " AND ".join(where) + " ORDER BY c.id LIMIT ?")
        self._params = params

    def batch(self, after: int, limit: int = BATCH) -> list[Member]:
        """The next members after contact id ``after`` (suppressed ones included: see
        :meth:`suppressed`)."""
        rows = self.conn.execute(self._sql, (after, *self._params, limit))
        return [Member(int(r[0]), str(r[1])) for r in rows]

    def suppressed(self, addresses: Sequence[str]) -> set[str]:
        """The ones of ``addresses`` on the suppression list."""
        if not addresses:
            return set()
        by_digest = {self.digest(a): a for a in addresses}
        marks = ",".join("?" * len(by_digest))
        rows = self.conn.execute(f"SELECT digest FROM suppressions WHERE digest IN ({marks})",
                                 list(by_digest))
        return {by_digest[r[0]] for r in rows}

    def walk(self, batch: int = BATCH) -> Iterator[tuple[list[Member], set[str]]]:
        """Every batch, with its suppressed addresses."""
        after = 0
        while members := self.batch(after, batch):
            yield members, self.suppressed([m.address for m in members])
            after = members[-1].contact_id


def count_audience(conn: sqlite3.Connection, spec: CampaignSpec,
                   digest: Callable[[str], str], now: float) -> int:
    """How many contacts the campaign would be sent to now (AudienceError for a
    missing list or a bad segment).  ``conn`` and ``digest``: the contact store's
    (``SqliteContactStore.db.conn()``, ``SqliteContactStore.digest``)."""
    return sum(len(members) - len(suppressed)
               for members, suppressed in Audience(conn, spec, digest, now).walk())
