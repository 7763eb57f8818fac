"""When soft bounces suppress an address.

One soft bounce says little (a full mailbox, a greylisting server, a block list that
listed the sending IP for an hour), but an address that soft-bounces again and again
is as dead as a hard bounce and hurts the sender's reputation as much.  The rule:
suppress when at least ``threshold`` soft bounces of *different* messages (campaigns
or transactional messages: a delay warning and the final failure of one message count
once) fall within the last ``window_days`` days, counting only bounces after the
address's last successful delivery or engagement, which shows it works.

Pure: the caller passes the bounces it has stored and the current time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

DEFAULT_THRESHOLD = 3
DEFAULT_WINDOW_DAYS = 7


@dataclass(frozen=True)
class SoftBouncePolicy:
    threshold: int = DEFAULT_THRESHOLD
    window_days: int = DEFAULT_WINDOW_DAYS

    def __post_init__(self) -> None:
        if self.threshold < 1:
            raise ValueError("soft bounce threshold must be at least 1")
        if self.window_days < 1:
            raise ValueError("soft bounce window must be at least 1 day")


@dataclass(frozen=True)
class SoftBounce:
    at: datetime
    message: str  # the campaign or message the bounce belongs to


@dataclass(frozen=True)
class SuppressionDecision:
    suppress: bool
    counted: int  # distinct messages that soft-bounced within the window
    threshold: int


def decide(policy: SoftBouncePolicy, bounces: Iterable[SoftBounce], now: datetime,
           last_success: datetime | None = None) -> SuppressionDecision:
    since = now - timedelta(days=policy.window_days)
    if last_success is not None and last_success > since:
        since = last_success
    messages = {b.message for b in bounces if since < b.at <= now}
    return SuppressionDecision(len(messages) >= policy.threshold, len(messages),
                               policy.threshold)


def should_suppress(policy: SoftBouncePolicy, distinct_in_window: int) -> bool:
    """The same rule for a caller that counts in its store (distinct messages with a
    soft bounce in the window, after the last success)."""
    return distinct_in_window >= policy.threshold
