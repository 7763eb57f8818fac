"""Bringing the spool back to a consistent state after a crash (run at start-up).

Every crash leaves one of a few traces, each with one meaning:

* a file in ``tmp/``: a message that was never committed (never acknowledged).  It is
  deleted once its writer process is gone.
* a file in ``msg/`` that is not a valid record: damage (a committed record is always
  complete, since it was fsync'd before its rename).  It is moved to ``corrupt/``.
* a valid file in ``msg/`` the index does not know: committed, but the process died
  before the index insert (or a power loss rolled the index back).  It is indexed as a
  new message, every recipient PENDING.
* a file whose index row is a tombstone: its recipients are all final and the process
  died before the unlink.  The file is deleted.
* an index row without a file that is not a tombstone: a removal whose tombstone was
  rolled back by a power loss.  The row is dropped.
* a lease held by a process that is gone: the lease is released and the recipients it
  claimed are marked ``interrupted``.

The sweep reads the index before listing the directory, so it is safe while other
processes commit: a message committed meanwhile is either seen in both or indexed
twice (the insert ignores known ids), never mistaken for a lost row.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from mailyard.obs import log_event
from mailyard.queue.identity import is_qid, owner_is_dead
from mailyard.queue.index import NewMessage, QueueIndex
from mailyard.queue.layout import TEMP_SUFFIX, SpoolLayout, fsync_dir, unlink_if_present
from mailyard.queue.record import RecordError, validate

log = logging.getLogger("mailyard.queue")

INSERT_CHUNK = 1000
PURGE_CHUNK = 10_000
#: How long a producer's submit key is remembered (``Envelope.submit_key``): longer
#: than any producer stays down and then asks whether its last messages were queued.
SUBMIT_KEY_SECONDS = 7 * 86400


@dataclass
class SweepReport:
    temp_removed: int = 0
    quarantined: int = 0
    indexed: int = 0
    finished_removed: int = 0  # files of messages whose recipients were all final
    lost_rows: int = 0  # index rows without a file (dropped)
    tombstones_purged: int = 0
    leases_released: int = 0
    keys_forgotten: int = 0


def sweep(layout: SpoolLayout, index: QueueIndex, *, verify_content: bool = False) -> SweepReport:
    """Run every step; ``verify_content`` also checks the content CRC of records that are
    already indexed (new ones are always checked in full)."""
    report = SweepReport()
    report.temp_removed = remove_stale_temp_files(layout)
    reconcile(layout, index, report, verify_content)
    report.tombstones_purged = purge_tombstones(layout, index)
    report.leases_released = index.reap_dead_owners(owner_is_dead)
    report.keys_forgotten = index.forget_keys(time.time() - SUBMIT_KEY_SECONDS)
    log_event(log, "queue swept", **vars(report))
    return report


def remove_stale_temp_files(layout: SpoolLayout) -> int:
    removed = 0
    for name in os.listdir(layout.tmp_dir):
        parts = name.split(".")
        owner = parts[1] if len(parts) == 3 and name.endswith(TEMP_SUFFIX) else ""
        if owner and not owner_is_dead(owner):
            continue  # its writer is still running
        if unlink_if_present(layout.tmp_dir / name):
            removed += 1
    return removed


def reconcile(layout: SpoolLayout, index: QueueIndex, report: SweepReport,
              verify_content: bool) -> None:
    known = index.known()  # before the listing: see the module docstring
    names = set(os.listdir(layout.msg_dir))
    new: list[NewMessage] = []
    for name in sorted(names):
        path = layout.message_path(name)
        done = known.get(name)
        if done:
            report.finished_removed += unlink_if_present(path)
            continue
        try:
            info = validate(path, verify_content=verify_content or done is None)
            if info.meta.qid != name or not is_qid(name):
                raise RecordError(f"file name does not match queue id {info.meta.qid!r}")
        except FileNotFoundError:
            continue  # removed meanwhile by a delivery that finished
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop the start-up
            # RecordError is the expected case; anything else a file in msg/ makes the
            # reader raise is damage too, and is kept in corrupt/ for the operator.
            reason = str(exc) if isinstance(exc, RecordError) else \
                f"{type(exc).__name__}: {exc}"
            if _quarantine(layout, path, reason):
                report.quarantined += 1
                if done is not None:
                    index.forget([name])
            continue
        if done is None:
            new.append(NewMessage(name, info.meta.created, info.message_length,
                                  info.meta.envelope))
    for i in range(0, len(new), INSERT_CHUNK):
        index.insert(new[i:i + INSERT_CHUNK])
    report.indexed = len(new)
    lost = [qid for qid, done in known.items() if not done and qid not in names]
    if lost:
        log_event(log, "queue index entries without a file dropped", level=logging.WARNING,
                  count=len(lost), qids=",".join(lost[:20]))
        index.forget(lost)
    report.lost_rows = len(lost)


def _quarantine(layout: SpoolLayout, path: Path, reason: str) -> bool:
    try:
        layout.quarantine(path, reason)
    except FileNotFoundError:
        return False
    except OSError as exc:  # left in place: the next sweep tries again
        log_event(log, "queue file could not be quarantined", level=logging.ERROR,
                  file=path.name, reason=reason, error=str(exc))
        return False
    return True


def purge_tombstones(layout: SpoolLayout, index: QueueIndex,
                     unlinked: set[str] | None = None) -> int:
    """Forget finished messages once their files are durably gone.  ``unlinked``: queue
    ids whose files this process has already removed (not unlinked a second time; the
    directory fsync below still makes their removal durable before they are forgotten);
    the purged ones are taken out of it."""
    purged = 0
    gone = unlinked if unlinked is not None else set()
    while qids := index.tombstones(PURGE_CHUNK):
        for qid in qids:
            if qid not in gone:
                unlink_if_present(layout.message_path(qid))
        fsync_dir(layout.msg_dir)
        index.forget(qids)
        gone.difference_update(qids)
        purged += len(qids)
        if len(qids) < PURGE_CHUNK:
            break
    return purged
