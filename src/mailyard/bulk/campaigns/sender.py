"""The sending engine's decisions, as pure functions and small values.

The engine (:mod:`mailyard.bulk.campaigns.runner`) walks a campaign's recipients in
batches; what it may send in each batch is decided here, from numbers it reads:

* **the overall rate** (``rate_per_minute``): a token bucket (:class:`Pacer`) filled
  at ``rate/60`` per second, holding at most one second's worth (at least one), so a
  batch never bursts past the rate and an idle pause does not save up a flood.  The
  bucket lives in the sending process, but it is rebuilt from the recipients queued
  in the last minute (durable) whenever a process takes the campaign up
  (:meth:`Pacer.resume`), so a restart, a takeover or a pause does not refill it;
* **per-domain caps** (``domain_caps``, messages per hour to a recipient domain): a
  sliding hour counted from the recipients queued in it (durable, so a restart does
  not reset it); a capped domain's recipients stay pending while the others go on
  (:func:`admit`);
* **the A/B test** of subject lines (``spec.extra["ab"]``, :class:`AbTest`): a
  deterministic sample of the audience (:func:`assign`) gets the variants, and once
  ``wait_hours`` have passed after the sample was queued the variant with the best
  rate of unique human opens or clicks (:func:`choose_winner`) goes to the rest;
* **identity**: each (campaign, contact) has one Message-ID and one submit key
  (:func:`message_id`, :func:`submit_key`), the same however often the engine restarts,
  which is what makes sending exactly once (see the runner).
"""

from __future__ import annotations

import enum
import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Every message of a campaign carries this submit key: the queue remembers it.
KEY_PREFIX = "campaign"
MAX_VARIANTS = 10


class RecipientState(enum.StrEnum):
    PENDING = "pending"  # in the audience, not sent yet
    SENDING = "sending"  # being rendered and queued (a crash here is reconciled)
    QUEUED = "queued"  # committed to the queue: done
    SKIPPED = "skipped"  # the template failed for this contact (reason kept)
    EXCLUDED = "excluded"  # suppressed, blocked or no longer confirmed at send time


class Phase(enum.StrEnum):
    ALL = "all"  # no A/B test: everyone
    SAMPLE = "sample"  # A/B: the sample gets the variants
    WAITING = "waiting"  # A/B: the sample is queued; waiting for opens or clicks
    REST = "rest"  # A/B: the others get the winner


class AbMetric(enum.StrEnum):
    OPENS = "opens"
    CLICKS = "clicks"


class AbSpecError(ValueError):
    """``spec.extra["ab"]`` is not a usable A/B test."""


@dataclass(frozen=True)
class AbTest:
    subjects: tuple[str, ...]
    sample_percent: float = 20.0
    wait_hours: float = 4.0
    metric: AbMetric = AbMetric.OPENS

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any]) -> AbTest | None:
        """The test in a campaign's ``extra`` settings, None when there is none."""
        raw = extra.get("ab")
        if raw is None:
            return None
        if not isinstance(raw, Mapping):
            raise AbSpecError("ab must be an object")
        subjects = raw.get("subjects")
        if (not isinstance(subjects, list) or not 2 <= len(subjects) <= MAX_VARIANTS
                or not all(isinstance(s, str) and s.strip() for s in subjects)):
            raise AbSpecError(f"ab.subjects must be 2 to {MAX_VARIANTS} subject lines")
        percent = raw.get("sample_percent", 20)
        wait = raw.get("wait_hours", 4)
        for name, value in (("sample_percent", percent), ("wait_hours", wait)):
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not math.isfinite(value):
                raise AbSpecError(f"ab.{name} must be a number")
        if not 0 < percent <= 100:
            raise AbSpecError("ab.sample_percent must be over 0 and at most 100")
        if wait < 0:
            raise AbSpecError("ab.wait_hours must not be negative")
        try:
            metric = AbMetric(raw.get("metric", "opens"))
        except ValueError:
            raise AbSpecError("ab.metric must be \"opens\" or \"clicks\"") from None
        return cls(tuple(subjects), float(percent), float(wait), metric)


def _draw(campaign_id: int, contact_id: int) -> int:
    digest = hashlib.sha256(f"ab:{campaign_id}:{contact_id}".encode("ascii")).digest()
    return int.from_bytes(digest[:8], "big")


def assign(test: AbTest | None, campaign_id: int, contact_id: int) -> tuple[bool, int | None]:
    """(in the sample, variant) of one contact: a pseudo-random draw from the ids, so
    the same contact lands in the same group after any restart."""
    if test is None:
        return False, None
    draw = _draw(campaign_id, contact_id)
    if (draw % 10_000) >= round(test.sample_percent * 100):
        return False, None
    return True, (draw // 10_000) % len(test.subjects)


@dataclass(frozen=True)
class VariantResult:
    variant: int
    sent: int  # sample recipients queued with this subject
    engaged: int  # of them, unique contacts with a human open (or click)

    @property
    def rate(self) -> float:
        return self.engaged / self.sent if self.sent else 0.0


def choose_winner(results: Sequence[VariantResult]) -> int:
    """The variant with the best rate; a tie goes to the one with more engaged
    contacts, then to the earlier subject (the author's first choice).  No results
    (an empty sample): the first subject."""
    if not results:
        return 0
    best = max(results, key=lambda r: (r.rate, r.engaged, -r.variant))
    return best.variant


def winner_due(phase_at: float | None, test: AbTest, now: float) -> bool:
    """Has the wait after the sample passed?"""
    return phase_at is not None and now >= phase_at + test.wait_hours * 3600


_EPSILON = 1e-6  # rounding of times near 1.7e9 must not leave a token at 0.9999999


#: How far back :meth:`Pacer.resume` looks: a bucket empty then is full again by now.
PACE_HISTORY = 60.0


class Pacer:
    """The overall rate: a token bucket of ``rate_per_minute`` (0: unlimited)."""

    def __init__(self, rate_per_minute: int, now: float) -> None:
        self.rate = rate_per_minute
        self.capacity = max(1.0, rate_per_minute / 60.0)
        self.tokens = self.capacity
        self.at = now

    @classmethod
    def resume(cls, rate_per_minute: int, now: float,
               queued: Sequence[tuple[float, int]]) -> Pacer:
        """The bucket rebuilt from ``queued`` ((time, count) of the recipients queued
        since ``now - PACE_HISTORY``): replayed on a bucket that was empty then, so it
        never holds more than the one that sent them did (the rate refills a whole
        bucket within the minute, so a campaign idle for a minute starts full)."""
        pacer = cls(rate_per_minute, now - PACE_HISTORY)
        if rate_per_minute <= 0:
            return pacer
        pacer.tokens = 0.0
        for at, count in sorted(queued):
            pacer._fill(min(at, now))
            pacer.spend(count)
        pacer._fill(now)
        return pacer

    def _fill(self, now: float) -> None:
        if now > self.at:
            self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate / 60.0)
        self.at = max(self.at, now)

    def allowance(self, now: float, want: int) -> int:
        """How many of ``want`` messages may go now."""
        if self.rate <= 0:
            return want
        self._fill(now)
        return min(want, int(self.tokens + _EPSILON))

    def spend(self, count: int) -> None:
        if self.rate > 0:
            self.tokens -= count

    def wait(self, now: float) -> float:
        """Seconds until the next message may go."""
        if self.rate <= 0:
            return 0.0
        self._fill(now)
        missing = 1.0 - self.tokens - _EPSILON
        return 0.0 if missing <= 0 else missing * 60.0 / self.rate


def normalise_caps(caps: Mapping[str, int]) -> dict[str, int]:
    """Domain caps with lower-case domains; a non-positive cap is ignored."""
    return {d.strip().lower().rstrip("."): int(n) for d, n in caps.items() if int(n) > 0}


def remaining(caps: Mapping[str, int], sent_last_hour: Mapping[str, int]) -> dict[str, int]:
    """What each capped domain may still get in the current hour (never negative)."""
    return {d: max(0, cap - sent_last_hour.get(d, 0)) for d, cap in caps.items()}


@dataclass(frozen=True)
class Candidate:
    contact_id: int
    domain: str


def admit(candidates: Sequence[Candidate], left: Mapping[str, int],
          limit: int) -> list[Candidate]:
    """The candidates (in order) that may go in this batch: at most ``limit``, and no
    more to a capped domain than it has ``left``; the others wait, and do not hold up
    the candidates behind them."""
    budget = dict(left)
    out: list[Candidate] = []
    for c in candidates:
        if len(out) >= limit:
            break
        room = budget.get(c.domain)
        if room is not None:
            if room <= 0:
                continue
            budget[c.domain] = room - 1
        out.append(c)
    return out


def submit_key(campaign_id: int, contact_id: int) -> str:
    return f"{KEY_PREFIX}:{campaign_id}:{contact_id}"


def message_id(campaign_id: int, contact_id: int, domain: str, salt: bytes) -> str:
    """The Message-ID of the one message a contact gets from a campaign.  ``salt``
    (derived from the server secret) keeps it from revealing the contact id."""
    tag = hashlib.sha256(salt + f":{campaign_id}:{contact_id}".encode("ascii")).hexdigest()
    return f"<c{campaign_id}.{tag[:20]}@{domain}>"
