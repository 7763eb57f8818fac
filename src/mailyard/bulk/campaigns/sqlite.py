"""The embedded :class:`~mailyard.bulk.campaigns.store.CampaignStore`: tables in
``data_dir/bulk.db`` beside the contacts (schema in :data:`mailyard.bulk.sqlite.MIGRATIONS`),
so erasing a contact removes their campaign events in the same transaction."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

from mailyard.bulk.campaigns.model import Campaign, CampaignSpec, CampaignState, can_move
from mailyard.bulk.campaigns.store import CampaignConflict
from mailyard.bulk.report import BounceType, CampaignEvent, EventKind
from mailyard.sqlitedb import Database


def _spec_json(spec: CampaignSpec) -> str:
    return json.dumps(spec.to_dict(), ensure_ascii=False, sort_keys=True,
                      separators=(",", ":"))


def _campaign(row: sqlite3.Row) -> Campaign:
    return Campaign(row["id"], row["name"], CampaignState(row["state"]),
                    CampaignSpec.from_dict(json.loads(row["spec"])), row["created"],
                    row["updated"], row["send_at"], row["started"], row["finished"])


def _event(row: sqlite3.Row) -> CampaignEvent:
    return CampaignEvent(EventKind(row["kind"]), row["at"], row["contact_id"], row["domain"],
                         row["link"], bool(row["machine"]),
                         BounceType(row["bounce"]) if row["bounce"] else None)


class SqliteCampaignStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add_campaign(self, name: str, spec: CampaignSpec, now: float) -> Campaign:
        try:
            with self.db.transaction() as conn:
                cur = conn.execute(
                    "INSERT INTO campaigns (name, state, spec, created, updated) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (name, CampaignState.DRAFT.value, _spec_json(spec), now, now))
        except sqlite3.IntegrityError:
            raise CampaignConflict(f"a campaign named {name!r} exists") from None
        return Campaign(cur.lastrowid or 0, name, CampaignState.DRAFT, spec, now, now)

    def _one(self, where: str, arg: Any) -> Campaign | None:
        row = self.db.conn().execute(f"SELECT * FROM campaigns WHERE {where} = ?",
                                     (arg,)).fetchone()
        return None if row is None else _campaign(row)

    def get_campaign(self, campaign_id: int) -> Campaign | None:
        return self._one("id", campaign_id)

    def get_campaign_by_name(self, name: str) -> Campaign | None:
        return self._one("name", name)

    def campaigns(self, *, state: CampaignState | None = None) -> list[Campaign]:
        if state is None:
            rows = self.db.conn().execute("SELECT * FROM campaigns ORDER BY id")
        else:
            rows = self.db.conn().execute("SELECT * FROM campaigns WHERE state = ? "
                                          "ORDER BY id", (state.value,))
        return [_campaign(r) for r in rows]

    def update_spec(self, campaign_id: int, spec: CampaignSpec, now: float) -> Campaign:
        with self.db.transaction() as conn:
            cur = conn.execute("UPDATE campaigns SET spec = ?, updated = ? "
                               "WHERE id = ? AND state = ?",
                               (_spec_json(spec), now, campaign_id, CampaignState.DRAFT.value))
            if cur.rowcount != 1:
                raise CampaignConflict(f"campaign {campaign_id} is not a draft")
        found = self.get_campaign(campaign_id)
        assert found is not None
        return found

    def move(self, campaign_id: int, expected: CampaignState, to: CampaignState,
             now: float, *, send_at: float | None = None) -> Campaign:
        if not can_move(expected, to):
            raise CampaignConflict(f"a {expected.value} campaign cannot become {to.value}")
        sets = ["state = ?", "updated = ?"]
        args: list[Any] = [to.value, now]
        if to == CampaignState.SCHEDULED:
            sets.append("send_at = ?")
            args.append(send_at if send_at is not None else now)
        elif to == CampaignState.DRAFT:
            sets.append("send_at = NULL")
        elif to == CampaignState.SENDING:
            sets.append("started = coalesce(started, ?)")
            args.append(now)
        elif to in (CampaignState.FINISHED, CampaignState.CANCELLED):
            sets.append("finished = ?")
            args.append(now)
        with self.db.transaction() as conn:
            cur = conn.execute(f"UPDATE campaigns SET {', '.join(sets)} "
                               "WHERE id = ? AND state = ?",
                               (*args, campaign_id, expected.value))
            if cur.rowcount != 1:
                raise CampaignConflict(f"campaign {campaign_id} is not {expected.value}")
        found = self.get_campaign(campaign_id)
        assert found is not None
        return found

    def due(self, now: float) -> list[Campaign]:
        rows = self.db.conn().execute(
            "SELECT * FROM campaigns WHERE state = ? AND send_at <= ? ORDER BY send_at, id",
            (CampaignState.SCHEDULED.value, now))
        return [_campaign(r) for r in rows]

    def links(self, campaign_id: int) -> list[str]:
        rows = self.db.conn().execute("SELECT url FROM campaign_links WHERE campaign_id = ? "
                                      "ORDER BY idx", (campaign_id,))
        return [r[0] for r in rows]

    def add_links(self, campaign_id: int, first: int, urls: Sequence[str]) -> None:
        with self.db.transaction() as conn:
            conn.executemany("INSERT OR IGNORE INTO campaign_links (campaign_id, idx, url) "
                             "VALUES (?, ?, ?)",
                             [(campaign_id, first + i, u) for i, u in enumerate(urls)])

    def record_events(self, campaign_id: int, events: Sequence[CampaignEvent],
                      data: Sequence[dict[str, str]] | None = None) -> None:
        details = data if data is not None else [{}] * len(events)
        if len(details) != len(events):
            raise ValueError("one data entry per event")
        with self.db.transaction() as conn:
            conn.executemany(
                "INSERT INTO campaign_events (campaign_id, contact_id, kind, at, domain, "
                "link, machine, bounce, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(campaign_id, e.contact_id, e.kind.value, e.at, e.domain, e.link,
                  int(e.machine), e.bounce.value if e.bounce else None,
                  json.dumps(d, ensure_ascii=False, sort_keys=True))
                 for e, d in zip(events, details, strict=True)])

    def events(self, campaign_id: int) -> Iterator[CampaignEvent]:
        rows = self.db.conn().execute("SELECT * FROM campaign_events WHERE campaign_id = ? "
                                      "ORDER BY id", (campaign_id,))
        for row in rows:
            yield _event(row)

    def contact_events(self, contact_id: int) -> list[tuple[int, CampaignEvent]]:
        rows = self.db.conn().execute("SELECT * FROM campaign_events WHERE contact_id = ? "
                                      "ORDER BY id", (contact_id,))
        return [(r["campaign_id"], _event(r)) for r in rows]
