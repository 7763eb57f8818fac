"""The DMARC evaluations waiting to be reported, in ``<data_dir>/dmarc-evaluations.db``.

Every smtpd worker process evaluates DMARC on its own mail; the dispatcher sends the
reports.  They share this SQLite file (mode 0600, WAL, a busy timeout):

* a worker counts evaluations in memory (:meth:`EvaluationRecorder.note`: a dict
  update, no I/O on the accept path) and adds them to the file in one transaction a
  moment later (:data:`FLUSH_DELAY`), on a thread, or at once when many distinct
  rows are waiting (:data:`FLUSH_ROWS`);
* rows that agree in every fact are one row with a count; new evaluations always go
  to the open batch (``batch`` 0);
* the dispatcher closes the open batch at the end of each report period
  (:meth:`EvaluationStore.close_batch`: one UPDATE that moves its rows to the batch
  named by the period's end), so evaluations that arrive while a report is being
  built go to the next one and nothing is counted twice or lost;
* once a batch's report for a domain is queued (or the domain turns out to want no
  report), its rows are deleted and a line goes to ``sent``, which ``mailyard report
  dmarc --sent`` lists.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

from mailyard.dmarc.aggregate import AuthEntry, CountedEvaluation, Evaluation, PublishedPolicy
from mailyard.obs import log_event
from mailyard.sqlitedb import open_counters

__all__ = ["DB_NAME", "EvaluationRecorder", "EvaluationStore", "SentReport"]

log = logging.getLogger("mailyard.dmarc")

DB_NAME = "dmarc-evaluations.db"
FLUSH_DELAY = 2.0  # seconds an evaluation waits in memory before it is written
FLUSH_ROWS = 500  # distinct rows in memory that are written at once
BUSY_TIMEOUT_MS = 5000
SENT_KEPT = 1000  # lines of the sent list kept

_SCHEMA = """
CREATE TABLE IF NOT EXISTS evaluation (
    batch INTEGER NOT NULL,      -- 0: open; else the end of the period it was closed at
    policy_domain TEXT NOT NULL,
    facts TEXT NOT NULL,         -- the Evaluation as JSON
    count INTEGER NOT NULL,
    first REAL NOT NULL,
    last REAL NOT NULL,
    PRIMARY KEY (batch, policy_domain, facts)
);
CREATE TABLE IF NOT EXISTS sent (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    policy_domain TEXT NOT NULL,
    report_id TEXT NOT NULL,
    begin_ts INTEGER NOT NULL,
    end_ts INTEGER NOT NULL,
    messages INTEGER NOT NULL,
    recipients TEXT NOT NULL,    -- comma-separated; "" when nothing was sent
    note TEXT NOT NULL
);
"""


def _facts(evaluation: Evaluation) -> str:
    return json.dumps(asdict(evaluation), separators=(",", ":"), sort_keys=True)


def _evaluation(facts: str) -> Evaluation:
    data = json.loads(facts)
    return Evaluation(
        policy_domain=data["policy_domain"], header_from=data["header_from"],
        source_ip=data["source_ip"], envelope_from=data["envelope_from"],
        disposition=data["disposition"], dkim=data["dkim"], spf=data["spf"],
        reasons=tuple(data["reasons"]),
        auth=tuple(AuthEntry(**entry) for entry in data["auth"]),
        policy=PublishedPolicy(**data["policy"]))


@dataclass(frozen=True)
class SentReport:
    """One line of the sent list."""

    at: float
    policy_domain: str
    report_id: str
    begin: int
    end: int
    messages: int
    recipients: tuple[str, ...]
    note: str = ""

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["recipients"] = list(self.recipients)
        return data


_Pending = dict[Evaluation, list[float]]  # evaluation -> [count, first, last]
# key -> [count, first, last, the function that makes the key an Evaluation (None: it is one)]
_Keyed = dict[Hashable, list[Any]]


class EvaluationStore:
    """The file; one connection per thread.  Raises sqlite3.Error or OSError."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._local = threading.local()

    @classmethod
    def in_data_dir(cls, data_dir: Path | str) -> EvaluationStore:
        return cls(Path(data_dir) / DB_NAME)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = open_counters(self.path, _SCHEMA, BUSY_TIMEOUT_MS)
            self._local.conn = conn
        return conn

    def _transaction(self, work: Callable[[sqlite3.Connection], object]) -> None:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            work(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def add(self, pending: _Pending) -> None:
        """Count ``pending`` into the open batch, in one transaction."""
        rows = [(e.policy_domain, _facts(e), int(c), first, last)
                for e, (c, first, last) in pending.items()]
        self._transaction(lambda conn: conn.executemany(
            "INSERT INTO evaluation VALUES (0, ?, ?, ?, ?, ?) "
            "ON CONFLICT DO UPDATE SET count = count + excluded.count, "
            "first = MIN(first, excluded.first), last = MAX(last, excluded.last)", rows))

    def close_batch(self, batch: int) -> int:
        """Move the open batch's rows to ``batch`` (> 0); how many moved."""
        if batch <= 0:
            raise ValueError("a closed batch is named by a positive number")
        moved = [0]

        def work(conn: sqlite3.Connection) -> None:
            moved[0] = conn.execute("UPDATE evaluation SET batch = ? WHERE batch = 0",
                                    (batch,)).rowcount

        self._transaction(work)
        return moved[0]

    def closed(self) -> list[tuple[int, str]]:
        """The closed batches and policy domains not reported yet, oldest first."""
        return [(int(b), str(d)) for b, d in self._conn().execute(
            "SELECT DISTINCT batch, policy_domain FROM evaluation WHERE batch > 0 "
            "ORDER BY batch, policy_domain")]

    def rows(self, batch: int, domain: str | None = None) -> list[CountedEvaluation]:
        query = "SELECT facts, count, first, last FROM evaluation WHERE batch = ?"
        args: tuple[object, ...] = (batch,)
        if domain is not None:
            query += " AND policy_domain = ?"
            args += (domain,)
        return [CountedEvaluation(_evaluation(f), int(c), float(a), float(b))
                for f, c, a, b in self._conn().execute(query + " ORDER BY facts", args)]

    def done(self, batch: int, domain: str, report: SentReport) -> None:
        """The batch's report for ``domain`` is queued (or not wanted): its rows go,
        the sent list gets ``report``."""
        def work(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM evaluation WHERE batch = ? AND policy_domain = ?",
                         (batch, domain))
            conn.execute(
                "INSERT INTO sent (at, policy_domain, report_id, begin_ts, end_ts, messages,"
                " recipients, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (report.at, report.policy_domain, report.report_id, report.begin, report.end,
                 report.messages, ",".join(report.recipients), report.note))
            conn.execute("DELETE FROM sent WHERE id <= (SELECT MAX(id) FROM sent) - ?",
                         (SENT_KEPT,))

        self._transaction(work)

    def sent(self, domain: str = "") -> list[SentReport]:
        """The sent list, newest first."""
        domain = domain.lower().rstrip(".")
        return [SentReport(at, d, rid, b, e, m, tuple(r for r in rcpts.split(",") if r), note)
                for at, d, rid, b, e, m, rcpts, note in self._conn().execute(
                    "SELECT at, policy_domain, report_id, begin_ts, end_ts, messages,"
                    " recipients, note FROM sent WHERE ? = '' OR policy_domain = ?"
                    " ORDER BY id DESC", (domain, domain))]

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


class EvaluationRecorder:
    """The worker's side: counts in memory, writes in the background (see the module
    doc).  Must be used from one event loop."""

    def __init__(self, store: EvaluationStore, clock: Callable[[], float] = time.time,
                 delay: float = FLUSH_DELAY) -> None:
        self.store = store
        self.clock = clock
        self.delay = delay
        self._pending: _Keyed = {}
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def note(self, evaluation: Evaluation) -> None:
        self.note_key(evaluation, None)

    def note_key(self, key: Hashable, facts: Callable[[Any], Evaluation] | None) -> None:
        """Count the evaluation ``facts(key)`` (``key`` itself when ``facts`` is None).
        Equal keys are counted together and ``facts`` runs once per distinct key, when
        the counts are written: a message costs a tuple and a dictionary update, not an
        Evaluation and its hash."""
        now = self.clock()
        counted = self._pending.get(key)
        if counted is None:
            self._pending[key] = [1, now, now, facts]
        else:
            counted[0] += 1
            counted[2] = now
        if len(self._pending) >= FLUSH_ROWS:
            self._start_flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.delay, self._start_flush)

    @property
    def pending(self) -> int:
        return sum(int(c[0]) for c in self._pending.values())

    def _start_flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        task = asyncio.get_running_loop().create_task(self.flush())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def flush(self) -> None:
        """Write what is counted (an error is logged; those counts are lost, the
        mail is not affected)."""
        pending, self._pending = self._pending, {}
        if not pending:
            return
        try:
            await asyncio.to_thread(self._add, pending)
        except (sqlite3.Error, OSError) as exc:
            log_event(log, "DMARC evaluations not recorded", level=logging.WARNING,
                      rows=len(pending), error=f"{type(exc).__name__}: {exc}")

    def _add(self, pending: _Keyed) -> None:
        """The counts by key made Evaluations (keys that give the same one are summed),
        then written."""
        rows: _Pending = {}
        for key, (count, first, last, facts) in pending.items():
            evaluation = facts(key) if facts is not None else cast(Evaluation, key)
            row = rows.get(evaluation)
            if row is None:
                rows[evaluation] = [count, first, last]
            else:
                row[0] += count
                row[1] = min(row[1], first)
                row[2] = max(row[2], last)
        self.store.add(rows)

    async def aclose(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.flush()

