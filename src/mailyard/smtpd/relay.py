"""End-to-end relaying: forward a message to the next hop while its sender waits.

For domains whose transport has ``mode = "end-to-end"`` (an internal gateway, say),
the default store-and-forward answer ("queued, we will deliver it") is replaced by
the next hop's own verdict: the message is first committed to the queue as usual, then
claimed and sent to the next hop before the 250 goes back:

* the next hop accepts every recipient: the entry is recorded as delivered and the
  sender gets ``250`` with the next hop's reply;
* the next hop refuses every recipient (it answered, 4xx or 5xx): the entry is deleted
  and the sender gets that refusal, so the rejection reaches the original sender in
  session and no bounce is needed;
* no next hop could be reached, or the answers are mixed: the entry stays in the queue
  (recorded results are kept, the rest is retried by the dispatcher as usual) and the
  sender gets the ordinary ``250 Queued``.

The message is durable before anything is forwarded, so a crash at any point leaves it
in the queue; the worst case is the one every SMTP relay has (RFC 1047): the next hop
accepted it and we died before recording that, so it may be delivered twice.
"""

from __future__ import annotations

import logging
import time

from mailyard.config import Config
from mailyard.envelope import Envelope, split_address
from mailyard.obs import log_event
from mailyard.proto.smtp.replies import Reply
from mailyard.queue.api import LEASE_SECONDS, Outcome, RecipientState, Spool

log = logging.getLogger("mailyard.smtpd")


def parse_reply(text: str) -> Reply:
    """'550 5.1.1 No such user' -> Reply(550, '5.1.1', 'No such user')."""
    code_s, _, rest = text.partition(" ")
    code = int(code_s) if code_s.isdigit() and len(code_s) == 3 else 451
    status, _, words = rest.partition(" ")
    if status.count(".") == 2 and status[0] in "245":
        return Reply(code, status, words or "")
    return Reply(code, "", rest)


class InSessionRelay:
    def __init__(self, config: Config, spool: Spool, resolver=None) -> None:  # type: ignore[no-untyped-def]
        from mailyard.delivery.remote import ConnectionPool
        from mailyard.delivery.routing import Router
        from mailyard.dns import make_resolver

        self.config = config
        self.spool = spool
        self.router = Router(config, resolver or make_resolver(config.delivery))
        self.pool = ConnectionPool(config)

    def applies(self, envelope: Envelope) -> bool:
        """Every recipient is in one end-to-end domain."""
        domains = {split_address(r.address)[1] for r in envelope.recipients}
        return len(domains) == 1 and self.router.end_to_end(next(iter(domains)))

    async def forward(self, qid: str, envelope: Envelope) -> Reply | None:
        """The reply to give the sender, or None for the ordinary "queued" answer."""
        from mailyard.delivery.remote import deliver_remote
        from mailyard.delivery.routing import RouteError

        entry = self.spool.claim(qid, time.time(), LEASE_SECONDS)
        if entry is None:  # the dispatcher got there first
            return None
        domain = split_address(envelope.recipients[0].address)[1]
        try:
            hops = await self.router.route(domain)
            pairs = [(r.index, envelope.recipients[r.index]) for r in entry.recipients]
            results = await deliver_remote(hops, envelope, pairs,
                                           lambda: self.spool.open_content(qid),
                                           entry.size, self.config, self.pool)
        except RouteError as exc:
            log_event(log, "end-to-end relay: no route, queued", qid=qid, reply=exc.reply)
            self.spool.release_lease(qid)
            return None
        answered = [r for r in results if r.answered]
        delivered = [r for r in results if r.state is RecipientState.DELIVERED]
        if len(delivered) == len(results):
            self.spool.record(qid, [Outcome(r.index, r.state, r.reply) for r in results])
            reply = delivered[0].reply.reply
            log_event(log, "end-to-end relay: delivered", qid=qid, relay=delivered[0].remote_host,
                      reply=str(delivered[0].reply))
            return Reply(250, reply.status or "2.0.0",
                         f"Delivered to next hop as {qid}: {reply.text}".rstrip(": "))
        if not delivered and len(answered) == len(results):
            worst = max(results, key=lambda r: r.state is RecipientState.FAILED)
            self.spool.delete(qid)
            log_event(log, "end-to-end relay: refused by next hop", qid=qid,
                      relay=worst.remote_host, reply=str(worst.reply))
            return worst.reply.reply
        keep = [Outcome(r.index, r.state, r.reply) for r in results
                if r.state is RecipientState.DELIVERED]
        if keep:
            self.spool.record(qid, keep)
        self.spool.release_lease(qid)
        log_event(log, "end-to-end relay: next hop unavailable or mixed answers, queued",
                  qid=qid, replies="; ".join(str(r.reply) for r in results))
        return None

    async def close(self) -> None:
        await self.pool.close()
