"""When to try again, when to warn, when to give up: pure functions of the clock.

``delivery.retry_schedule`` lists the waits after the 1st, 2nd, ... failed attempt;
the last step repeats.  Each wait gets a small random jitter (default +-10%) so a
destination that was down does not see every deferred message return in the same
second.  A message older than ``delivery.max_lifetime`` is given up with status 4.4.7
(RFC 3463: delivery time expired); the last retry is pulled in to fall exactly at
the expiry, so no message outlives its lifetime by a whole schedule step.  A delay
warning (a "delayed" DSN) is due once, ``delivery.delay_warning`` after arrival.
Nothing here reads the clock: ``now`` is always a parameter.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from mailyard.config import DeliveryConfig
from mailyard.proto.smtp.replies import REPLY_MESSAGE_EXPIRED
from mailyard.queue.api import DeliveryReply, Outcome, RecipientState

#: RFC 3463 X.4.7 "Delivery time expired", with the class of the last failure (4).
EXPIRED_STATUS = "4.4.7"


def describe_duration(seconds: float) -> str:
    """``5 days``, ``4 hours``, ``90 minutes``: for notices read by people."""
    seconds = int(seconds)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} seconds"


@dataclass(frozen=True)
class RetryPolicy:
    schedule: tuple[int, ...]
    max_lifetime: float
    delay_warning: float
    jitter: float = 0.1

    @classmethod
    def from_config(cls, delivery: DeliveryConfig) -> RetryPolicy:
        return cls(delivery.retry_schedule, float(delivery.max_lifetime),
                   float(delivery.delay_warning))

    def base_delay(self, attempts: int) -> float:
        """The wait after ``attempts`` failed attempts (1 = the first), without jitter."""
        step = min(max(attempts, 1), len(self.schedule)) - 1
        return float(self.schedule[step])

    def expires_at(self, arrival: float) -> float:
        return arrival + self.max_lifetime

    def expired(self, arrival: float, now: float) -> bool:
        """The message has been in the queue for ``max_lifetime``: give up."""
        return now >= self.expires_at(arrival)

    def next_attempt(self, attempts: int, now: float, *, arrival: float | None = None,
                     rng: random.Random | None = None) -> float:
        """When to try after the ``attempts``-th failure (1 = the first) at ``now``:
        jittered, at least a second away, and never after the expiry when ``arrival``
        is given."""
        rng = rng or random.Random()
        wait = self.base_delay(attempts) * (1.0 + rng.uniform(-self.jitter, self.jitter))
        when = now + max(wait, 1.0)
        return when if arrival is None else min(when, max(self.expires_at(arrival), now))

    def after_temporary_failure(self, index: int, reply: DeliveryReply, arrival: float,
                                attempts: int, now: float,
                                rng: random.Random | None = None) -> Outcome:
        """The queue outcome of a temporary failure: DEFERRED with the next attempt
        time, or FAILED with an "expired" reply (status 4.4.7) once the lifetime is up.
        ``attempts`` counts this failure."""
        if self.expired(arrival, now):
            return Outcome(index, RecipientState.FAILED, self.expired_reply(reply))
        return Outcome(index, RecipientState.DEFERRED, reply,
                       self.next_attempt(attempts, now, arrival=arrival, rng=rng))

    def expired_reply(self, last_reply: DeliveryReply | None) -> DeliveryReply:
        """Our own verdict (local origin), quoting the last reply."""
        return DeliveryReply(REPLY_MESSAGE_EXPIRED.fill(
            lifetime=describe_duration(self.max_lifetime),
            last=str(last_reply) if last_reply is not None else "none"))

    def delay_warning_due(self, arrival: float, now: float,
                          already_notified: bool = False) -> bool:
        """A "delayed" DSN is due: once, after ``delay_warning``, and only when it can
        arrive before the final verdict (a warning 0 or past the lifetime is off)."""
        if already_notified or self.delay_warning <= 0:
            return False
        if self.delay_warning >= self.max_lifetime:
            return False
        return now - arrival >= self.delay_warning
