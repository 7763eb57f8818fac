"""Sliding-window arithmetic of the sending limits, without storage or clocks.

A sender's activity is kept as **per-minute buckets**: one row per (subject, minute)
holding the messages and recipients accepted in that minute.  Counting a message is
one upsert per subject (the user and the user's domain), whatever the volume, and a
subject never has more than 1440 rows (a day of minutes); older rows are pruned.

The windows slide by whole minutes: "the last hour" at time ``now`` is the current
minute and the 59 before it, "the last 24 hours" the current minute and the 1439
before it.  A bucket therefore leaves the hour window at the start of the minute 60
minutes after its own, so a limit is never exceeded within any 60-minute span and
the estimate of when sending may resume (``retry_after``) is exact to the second:
it is when enough of the oldest buckets have left the window for the new message
(or recipient) to fit.

A limit of 0 means unlimited.  A request that could never fit (a single message with
more recipients than the limit) is reported as ``permanent``.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass

MINUTE = 60
HOUR_MINUTES = 60
DAY_MINUTES = 1440


class Resource(enum.StrEnum):
    MESSAGES = "messages"
    RECIPIENTS = "recipients"


class Window(enum.StrEnum):
    HOUR = "hour"
    DAY = "day"

    @property
    def minutes(self) -> int:
        return HOUR_MINUTES if self is Window.HOUR else DAY_MINUTES


@dataclass(frozen=True)
class SendLimits:
    """The four limits of one subject (0: unlimited)."""

    messages_per_hour: int = 0
    messages_per_day: int = 0
    recipients_per_hour: int = 0
    recipients_per_day: int = 0

    def limit(self, resource: Resource, window: Window) -> int:
        value: int = getattr(self, f"{resource}_per_{window}")
        return value

    @property
    def unlimited(self) -> bool:
        return not any((self.messages_per_hour, self.messages_per_day,
                        self.recipients_per_hour, self.recipients_per_day))


@dataclass(frozen=True)
class Bucket:
    minute: int  # unix time // 60
    messages: int
    recipients: int

    def count(self, resource: Resource) -> int:
        return self.messages if resource is Resource.MESSAGES else self.recipients


@dataclass(frozen=True)
class Usage:
    messages_hour: int = 0
    messages_day: int = 0
    recipients_hour: int = 0
    recipients_day: int = 0

    def count(self, resource: Resource, window: Window) -> int:
        value: int = getattr(self, f"{resource}_{window}")
        return value


@dataclass(frozen=True)
class Exceeded:
    """Why a send does not fit: which limit, and in how many seconds it would."""

    resource: Resource
    window: Window
    limit: int
    retry_after: int  # seconds, at least 1
    permanent: bool = False  # the request alone is over the limit


def minute_of(now: float) -> int:
    return int(now // MINUTE)


def oldest_minute(now: float) -> int:
    """The oldest minute still in the day window (older buckets may be pruned)."""
    return minute_of(now) - DAY_MINUTES + 1


def in_window(bucket: Bucket, window: Window, now: float) -> bool:
    return bucket.minute > minute_of(now) - window.minutes


def usage_of(buckets: Iterable[Bucket], now: float) -> Usage:
    mh = md = rh = rd = 0
    for b in buckets:
        if not in_window(b, Window.DAY, now):
            continue
        md += b.messages
        rd += b.recipients
        if in_window(b, Window.HOUR, now):
            mh += b.messages
            rh += b.recipients
    return Usage(mh, md, rh, rd)


def _retry_after(buckets: list[Bucket], resource: Resource, window: Window, excess: int,
                 now: float) -> int:
    """Seconds until the oldest buckets of the window holding ``excess`` of the
    resource have left it."""
    shed = 0
    for b in sorted(buckets, key=lambda b: b.minute):
        if not in_window(b, window, now):
            continue
        shed += b.count(resource)
        if shed >= excess:
            leaves = (b.minute + window.minutes) * MINUTE
            return max(1, math.ceil(leaves - now))
    return window.minutes * MINUTE  # not reached when ``excess`` is within the usage


def exceeded(buckets: Iterable[Bucket], limits: SendLimits, now: float, *,
             messages: int = 0, recipients: int = 0) -> Exceeded | None:
    """Would ``messages`` more messages and ``recipients`` more recipients go over a
    limit?  The one with the longest wait, or None when they fit."""
    if limits.unlimited:
        return None
    held = list(buckets)
    usage = usage_of(held, now)
    worst: Exceeded | None = None
    for resource, adding in ((Resource.MESSAGES, messages), (Resource.RECIPIENTS, recipients)):
        if adding <= 0:
            continue
        for window in (Window.HOUR, Window.DAY):
            limit = limits.limit(resource, window)
            if not limit:
                continue
            excess = usage.count(resource, window) + adding - limit
            if excess <= 0:
                continue
            if adding > limit:
                found = Exceeded(resource, window, limit, window.minutes * MINUTE, True)
            else:
                found = Exceeded(resource, window, limit,
                                 _retry_after(held, resource, window, excess, now))
            if worst is None or (found.permanent, found.retry_after) > (
                    worst.permanent, worst.retry_after):
                worst = found
    return worst
