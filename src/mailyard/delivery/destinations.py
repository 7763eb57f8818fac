"""Per-destination scheduling state: dead destinations and fair shares of the window.

Two rules keep a destination that cannot take mail from holding up the others:

* **Dead destinations** (Postfix's queue manager does the same): after ``DEAD_AFTER``
  attempts in a row in which no next hop answered at all (connection refused or timed
  out, TLS failure, lost connection), the destination is *suspended* for
  ``delivery.retry_schedule[0]`` seconds.  Its mail then waits for the end of the
  suspension without being tried and without an attempt being counted, so a hundred
  thousand queued messages for an unreachable domain cost a handful of connection
  attempts per retry period instead of one each.  The first attempt after a
  suspension is a probe: one more failure suspends it again, any answer lifts it.
* **Fair share**: at most ``share`` queue entries per destination are in flight
  (waiting for a connection slot or being delivered), ``delivery.active_window // 4``
  by default.  Beyond that, its mail waits, again without an attempt counted:
  ``BUSY_WAIT`` seconds at first, doubled whenever it is still over its share when the
  previous wait ends (up to ``MAX_BUSY_WAIT``), and back to ``BUSY_WAIT`` once it is
  down to half its share.  So one destination never fills the whole active window
  while slots for others stand idle, and a slow one with a large backlog is not
  postponed over and over.

When a destination is suspended or over its share, its waiting mail in the queue is
postponed in one sweep (``WorkQueue.postpone_domain``, run by the dispatcher), so that
the queue stops handing it out ahead of other mail; :meth:`Destinations.take_sweeps`
says which.  A destination is swept again only once the previous sweep's wait is over.

This state is per process (node-local): with several delivery nodes, each keeps its
own suspensions and shares (see docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from mailyard.config import DeliveryConfig
from mailyard.proto.smtp.replies import REPLY_DESTINATION_BUSY, REPLY_REMOTE_NO_HOPS
from mailyard.queue.api import DeliveryReply

DEAD_AFTER = 5  # attempts in a row without any answer from a next hop
BUSY_WAIT = 2.0  # seconds mail over a destination's share waits at first
MAX_BUSY_WAIT = 60.0


@dataclass
class _Destination:
    failures: int = 0  # attempts in a row in which no next hop answered
    suspended_until: float = 0.0
    reason: DeliveryReply | None = None  # why it is suspended, for the queue's last reply
    in_flight: int = 0
    busy_wait: float = BUSY_WAIT  # the current wait for mail over the share
    swept_until: float = 0.0  # mail in the queue was postponed until then


@dataclass(frozen=True)
class Postponement:
    """Mail for a destination waits until ``until``; ``reason`` goes in the queue."""

    until: float
    reason: DeliveryReply


@dataclass(frozen=True)
class DestinationSweep:
    """Postpone the queued mail for ``domain`` that nobody is working on."""

    domain: str
    until: float
    reason: DeliveryReply


class Destinations:
    def __init__(self, delivery: DeliveryConfig, *, dead_after: int = DEAD_AFTER,
                 share: int | None = None, busy_wait: float = BUSY_WAIT,
                 sweeps: bool = True) -> None:
        self.suspend_seconds = float(delivery.retry_schedule[0])
        self.dead_after = dead_after
        self.share = share if share is not None else max(1, delivery.active_window // 4)
        self.busy_wait = busy_wait
        self.sweeps = sweeps  # False: a dedicated pool's, which never sweeps the queue
        self._state: dict[str, _Destination] = {}
        self._sweeps: list[DestinationSweep] = []

    def _get(self, domain: str) -> _Destination:
        state = self._state.get(domain)
        if state is None:
            state = self._state[domain] = _Destination(busy_wait=self.busy_wait)
        return state

    def in_flight(self, domain: str) -> int:
        state = self._state.get(domain)
        return state.in_flight if state is not None else 0

    def suspension(self, domain: str, now: float) -> Postponement | None:
        """The wait on a suspended destination; None when it may be tried."""
        state = self._state.get(domain)
        if state is None or state.suspended_until <= now or state.reason is None:
            return None
        return Postponement(state.suspended_until, state.reason)

    def admit(self, domain: str, now: float) -> Postponement | None:
        """Before an entry's mail for ``domain`` is delivered: a postponement (suspended,
        or over the share), or None, and the entry counts as in flight until
        :meth:`leave`."""
        state = self._get(domain)
        hold = self.suspension(domain, now)
        if hold is not None:
            self._sweep(domain, state, hold, now)
            return hold
        if state.in_flight >= self.share:
            hold = Postponement(now + state.busy_wait, DeliveryReply(
                REPLY_DESTINATION_BUSY.fill(share=self.share, domain=domain)))
            if self._sweep(domain, state, hold, now):
                state.busy_wait = min(MAX_BUSY_WAIT, 2 * state.busy_wait)
            return hold
        state.in_flight += 1
        return None

    def leave(self, domain: str) -> None:
        state = self._state.get(domain)
        if state is None:
            return
        state.in_flight -= 1
        if state.in_flight <= self.share // 2:
            state.busy_wait = self.busy_wait
        if state.in_flight <= 0 and not state.failures and not state.suspended_until:
            del self._state[domain]  # nothing worth remembering

    def attempt_ended(self, domain: str, answered: bool, reply: DeliveryReply | None,
                      now: float) -> None:
        """An attempt at ``domain`` ended; ``answered``: some next hop said something;
        ``reply``: the (first) recipient's reply."""
        state = self._get(domain)
        if answered:
            state.failures = 0
            state.suspended_until = 0.0
            return
        state.failures += 1
        if state.failures >= self.dead_after and state.suspended_until <= now:
            state.suspended_until = now + self.suspend_seconds
            last = reply.reply if reply is not None else REPLY_REMOTE_NO_HOPS
            state.reason = DeliveryReply(last.with_text(
                f"{DeliveryReply(last).text} (delivery to {domain} suspended after "
                f"{state.failures} failed attempts)"))
            state.failures = self.dead_after - 1  # after the suspension one probe decides
            self._sweep(domain, state, Postponement(state.suspended_until, state.reason), now)

    def _sweep(self, domain: str, state: _Destination, hold: Postponement, now: float) -> bool:
        if now < state.swept_until:
            return False  # the mail of the last sweep is still waiting
        state.swept_until = hold.until
        if self.sweeps:
            self._sweeps.append(DestinationSweep(domain, hold.until, hold.reason))
        return True

    def take_sweeps(self) -> list[DestinationSweep]:
        """Destinations whose waiting mail the queue should postpone now."""
        sweeps, self._sweeps = self._sweeps, []
        return sweeps
