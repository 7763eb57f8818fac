"""Per-destination sending rates of a delivery pool ("300/h" to gmail.com).

A rate is spread evenly rather than spent in bursts: with ``N`` per period, one
message may start every ``period / N`` seconds (the generic cell rate algorithm of
ATM networks, as used by many rate limiters).  :class:`RatePacer` gives each message
to a destination its start time; a message whose time is not yet due waits (the
dispatcher postpones it in the queue until then, without counting an attempt).  A
small burst (``burst`` messages) may start at once after a quiet period, so the first
messages of a campaign do not each wait a full interval.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RATE = re.compile(r"\s*(\d+)\s*/\s*(\d*)\s*([smhd])\s*")


@dataclass(frozen=True)
class Rate:
    count: int
    seconds: float

    @property
    def interval(self) -> float:
        return self.seconds / self.count


def parse_rate(text: str) -> Rate:
    """``"300/h"``, ``"10/m"``, ``"5/s"``, ``"1000/d"``, ``"50/10m"``.  Raises ValueError."""
    m = _RATE.fullmatch(text)
    if m is None or int(m.group(1)) <= 0 or m.group(2) == "0":
        raise ValueError(f"not a rate: {text!r} (a positive count per s, m, h or d, "
                         "e.g. '300/h')")
    return Rate(int(m.group(1)), int(m.group(2) or 1) * PERIODS[m.group(3)])


class RatePacer:
    """Start times for messages to rate-limited destinations (one pool's).  Domains
    match exactly or, for an entry ``.example.org``, by suffix."""

    def __init__(self, rates: Mapping[str, str], burst: int = 1) -> None:
        self.rates = {d.lower().rstrip("."): parse_rate(r) for d, r in rates.items()}
        self.burst = max(1, burst)
        self._next: dict[str, float] = {}  # the theoretical arrival time per limited key

    def _key(self, domain: str) -> str | None:
        domain = domain.lower().rstrip(".")
        if domain in self.rates:
            return domain
        for entry in self.rates:
            if entry.startswith(".") and domain.endswith(entry):
                return entry
        return None

    def reserve(self, domain: str, now: float) -> float | None:
        """None: the message may start now (its slot is taken); else the time from
        which to try again (nothing is taken)."""
        key = self._key(domain)
        if key is None:
            return None
        interval = self.rates[key].interval
        tat = max(self._next.get(key, now), now)
        if tat - now > (self.burst - 1) * interval:
            return tat - (self.burst - 1) * interval
        self._next[key] = tat + interval
        return None
