"""Delivery while the sender waits: the :class:`~mailyard.ingest.api.DeliverNow`
service for transports with ``mode = "end-to-end"`` (an internal gateway, say).

The default store-and-forward answer ("queued, we will deliver it") is replaced by
the next hop's own verdict.  smtpd first commits the message to the queue as usual,
then hands it here before its 250 goes back:

* the next hop accepts every recipient: the outcomes are recorded (the entry is
  finished) and the sender gets ``250`` with the next hop's reply;
* the next hop refuses every recipient (it answered, 4xx or 5xx): the entry is deleted
  and the sender gets that refusal, so the rejection reaches the original sender in
  session and no bounce is needed;
* no next hop could be reached, or the answers are mixed: the entry stays in the queue
  (delivered recipients are recorded, the lease is given up, the rest is retried by
  the dispatcher as usual) and the sender gets the ordinary ``250 Queued``.

The hops get the same transport security as queued delivery
(:func:`~mailyard.delivery.outbound.transport_security_for`): a transport in this
mode that routes by MX (no ``nexthop``) is held to the destination's DANE and MTA-STS
policies, and its sessions are counted for TLS-RPT; a host no policy allows means
"451 4.7.5" from the router, so the message is queued and retried like any other.

It takes the same path as the dispatcher, over the asynchronous
:class:`~mailyard.queue.api.WorkQueue` (in the worker, a
:class:`~mailyard.queue.threaded.ThreadedSpool` over its spool): the entry is leased
with ``claim`` (if the dispatcher got there first, the message is simply queued),
delivered with :func:`~mailyard.delivery.remote.deliver_remote`, and the outcomes go
through an :class:`~mailyard.delivery.recorder.OutcomeRecorder`.  Every index call
runs in the queue's own thread, never on the SMTP worker's event loop.

The message is durable before anything is forwarded, so a crash at any point leaves it
in the queue; the worst case is the one every SMTP relay has (RFC 1047): the next hop
accepted it and we died before recording that, so it may be delivered twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from mailyard.config import Config
from mailyard.delivery.outbound import tls_outcomes_for, transport_security_for
from mailyard.delivery.recorder import FinishedEntry, OutcomeRecorder
from mailyard.delivery.remote import ConnectionPool, deliver_remote
from mailyard.delivery.routing import RouteError, Router
from mailyard.dns import Resolver, make_resolver
from mailyard.envelope import Envelope, split_address
from mailyard.obs import log_event
from mailyard.proto.smtp.replies import Reply
from mailyard.queue.api import LEASE_SECONDS, Outcome, RecipientState, WorkQueue

log = logging.getLogger("mailyard.smtpd")


class RelayQueue(WorkQueue, Protocol):
    """What end-to-end relaying needs of the queue: the work side, and deleting an
    entry the next hop refused."""

    async def delete(self, qid: str) -> bool: ...


class EndToEndDelivery:
    """:class:`~mailyard.ingest.api.DeliverNow` over the queue and the remote agent."""

    def __init__(self, config: Config, queue: RelayQueue, resolver: Resolver | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.queue = queue
        resolver = resolver or make_resolver(config.delivery)
        self.router = Router(config, resolver)
        self.tls_outcomes = tls_outcomes_for(config, clock)
        self.security = transport_security_for(config, resolver, self.tls_outcomes, clock)
        self.pool = ConnectionPool(config, tls_outcomes=self.tls_outcomes)
        self.clock = clock
        self.recorder = OutcomeRecorder(queue)

    def applies(self, envelope: Envelope) -> bool:
        """Every recipient is in one end-to-end domain."""
        domains = {split_address(r.address)[1] for r in envelope.recipients}
        return len(domains) == 1 and self.router.end_to_end(next(iter(domains)))

    async def deliver(self, qid: str, envelope: Envelope) -> Reply | None:
        entry = await self.queue.claim(qid, self.clock(), LEASE_SECONDS)
        if entry is None:  # the dispatcher got there first
            return None
        domain = split_address(envelope.recipients[0].address)[1]
        try:
            hops = await self.security.secure(await self.router.plan(domain))
            pairs = [(r.index, envelope.recipients[r.index]) for r in entry.recipients]
            results = await deliver_remote(hops, envelope, pairs,
                                           lambda: self.queue.open_content(qid),
                                           entry.size, self.config, self.pool)
        except RouteError as exc:
            log_event(log, "end-to-end relay: no route, queued", qid=qid, reply=exc.reply)
            await self.queue.release_lease(qid)
            return None
        finally:
            if self.tls_outcomes is not None and self.tls_outcomes.flush_due():
                await self.tls_outcomes.flush()
        answered = [r for r in results if r.answered]
        delivered = [r for r in results if r.state is RecipientState.DELIVERED]
        if len(delivered) == len(results):
            await self.recorder.record(FinishedEntry(
                qid, [Outcome(r.index, r.state, r.reply) for r in results]))
            reply = delivered[0].reply.reply
            log_event(log, "end-to-end relay: delivered", qid=qid,
                      relay=delivered[0].remote_host, reply=str(delivered[0].reply))
            return Reply(250, reply.status or "2.0.0",
                         f"Delivered to next hop as {qid}: {reply.text}".rstrip(": "))
        if not delivered and len(answered) == len(results):
            worst = max(results, key=lambda r: r.state is RecipientState.FAILED)
            await self.queue.delete(qid)
            log_event(log, "end-to-end relay: refused by next hop", qid=qid,
                      relay=worst.remote_host, reply=str(worst.reply))
            return worst.reply.reply
        await self.recorder.record(FinishedEntry(
            qid, [Outcome(r.index, r.state, r.reply) for r in delivered]))
        log_event(log, "end-to-end relay: next hop unavailable or mixed answers, queued",
                  qid=qid, replies="; ".join(str(r.reply) for r in results))
        return None

    async def close(self) -> None:
        """Close the connection pool and the policy stores (the queue belongs to the
        caller)."""
        await self.pool.close()
        if self.tls_outcomes is not None:
            await self.tls_outcomes.flush()
            self.tls_outcomes.close()
        if self.security.sts is not None:
            self.security.sts.close()
