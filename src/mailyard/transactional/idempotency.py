"""Idempotency keys of ``POST /api/v1/messages`` (the ``Idempotency-Key`` header).

A client that does not know whether its request went through (a timeout, a dropped
connection) sends it again with the same key; within :data:`TTL` the same key of the
same API key gives back the first answer and sends nothing.  The same key with a
different body is a client error (422), never a silent replay of another message.

Exactly one send per key, with any number of concurrent duplicates and processes,
and across a crash, comes from a row per key in SQLite, moved through these states
by short transactions (``BEGIN IMMEDIATE``: one writer at a time):

* **reserved** (``pending``, no queue id): one request holds a *lease* on the key
  (a random holder token) while it renders and checks the message.  A duplicate
  that finds the lease running waits for the outcome.  A lease that ran out means
  its holder died before the message reached the queue: the next request takes the
  key over and sends.
* **committing** (``pending`` with the queue id and the answer to give): written
  just before the queue commit.  If the commit fails, the row is deleted (nothing
  was sent, the key is free again).  If the process dies during the commit, the
  outcome is unknown: the next request answers with the stored answer and sends
  nothing (at most once: a second copy is worse than the rare lost one, and the
  commit is milliseconds long).
* **done**: the queue commit returned; the stored answer is replayed.

A request refused before anything was queued (bad input, all recipients
suppressed, over a sending limit) deletes its reservation, so the key can be used
again once the problem is fixed.  Rows older than :data:`TTL` are deleted.

The message id the key sends under is derived from the API key and the idempotency
key (:func:`message_id_for`), so the message a takeover sends has the same id.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any, Protocol

TTL = 24 * 3600.0  # seconds a key is remembered
LEASE = 30.0  # seconds a request may hold a key before another may take it over
_KEY = re.compile(r"[!-~]{1,255}")  # visible ASCII (RFC 20), as the header allows


class Reservation(enum.StrEnum):
    NEW = "new"  # the key is this request's: send
    REPLAY = "replay"  # answered before: give back ``record.status``/``record.body``
    PENDING = "pending"  # another request holds the key: wait
    MISMATCH = "mismatch"  # the key was used with another body


class KeyState(enum.StrEnum):
    PENDING = "pending"
    DONE = "done"


@dataclass(frozen=True)
class KeyRecord:
    api_key: str
    key: str
    fingerprint: str
    state: KeyState
    message_id: str
    created: float
    lease_until: float
    holder: str = ""  # the token of the request holding the lease
    qid: str = ""
    status: int = 0
    body: str = ""  # the JSON answer


def valid_key(key: str) -> bool:
    return bool(_KEY.fullmatch(key))


def fingerprint(request: dict[str, Any]) -> str:
    """A digest of the request body as validated (key order and spacing do not matter)."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def message_id_for(secret: bytes, api_key: str, key: str) -> str:
    """The message's id (20 lower-case letters and digits, short enough for a VERP
    token): the same for every request with this key of this API key."""
    mac = hmac.new(secret, f"{api_key}\x00{key}".encode("ascii"), hashlib.sha256)
    return mac.hexdigest()[:20]


def decide(found: KeyRecord | None, fingerprint: str, now: float
           ) -> Reservation | None:
    """What a request with ``fingerprint`` does with the key's current row: None when
    the key is free (no row, an expired one, or a lease that ran out before the queue
    commit started), so the request reserves it."""
    if found is None or found.created <= now - TTL:
        return None
    if found.fingerprint != fingerprint:
        return Reservation.MISMATCH
    if found.state is KeyState.DONE:
        return Reservation.REPLAY
    if found.lease_until > now:
        return Reservation.PENDING
    if found.qid:  # died inside the queue commit: outcome unknown, never send twice
        return Reservation.REPLAY
    return None


class KeyStore(Protocol):
    """Where the keys are kept (SQLite today)."""

    def reserve(self, api_key: str, key: str, fingerprint: str, message_id: str,
                now: float) -> tuple[Reservation, KeyRecord]:
        """Look the key up and, when it is free, reserve it for this request (one
        transaction).  A replayed "committing" row is marked done."""
        ...

    def committing(self, api_key: str, key: str, holder: str, qid: str, status: int,
                   body: str) -> bool:
        """The message is about to be committed to the queue as ``qid``; False when
        ``holder`` no longer holds the key (its lease ran out and another request took
        the key over): then it must not commit."""
        ...

    def finish(self, api_key: str, key: str) -> None:
        """The queue commit returned."""
        ...

    def release(self, api_key: str, key: str, holder: str) -> None:
        """Nothing was queued: forget ``holder``'s reservation."""
        ...

    def sweep(self, now: float) -> int:
        """Delete the rows older than :data:`TTL`; how many."""
        ...
