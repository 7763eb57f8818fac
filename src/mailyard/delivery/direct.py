"""Direct local delivery: mail for one local mailbox written into it while the sender
waits (``[delivery] direct_local``), the :class:`~mailyard.ingest.api.DirectDelivery`
service of the SMTP workers.

Most mail an inbound MX takes is one message for one local user.  Through the queue
that message is written and synced twice (the queue record, then the Maildir copy),
its queue entry is inserted, claimed, recorded and removed, and the supervisor's
dispatcher reads it back: about as much work again as accepting it.  Dovecot's LMTP
and mox write such mail straight into the mailbox before answering; so does this
service, for the messages where that is exactly equivalent to queueing:

* it came over SMTP (port 25, or submission by a local user), with exactly one
  recipient, who resolves to exactly one local mailbox and nothing else (no external
  alias targets), and did not ask for a success notice (``NOTIFY=SUCCESS``);
* it is held in memory whole (the queue writer has not spilled it: under 256 KiB);
* no address involved is one the dispatcher treats specially: the feedback
  addresses (bounces to VERP senders, unsubscribes, complaints), a VERP sender of
  ours (campaign delivery results), the DMARC report mailbox; and ``defer_all`` is off.

The copy is made by the same :class:`~mailyard.delivery.local.LocalDeliveryAgent` as
queued delivery (trace fields, loop check, quota, junk folder, the delivery key
``<qid>.<mailbox>``), with the same durability: the file is fsynced before its rename
into ``new/`` and ``new/`` is fsynced before the sender gets 250.  When the agent
reports anything but delivered (over quota, a forwarding loop, a full disk, a
directory that cannot be read), nothing was stored, and ingest commits the message to
the queue instead: the dispatcher then delivers, retries or bounces it exactly as it
would have.  The one exception is a ``new/`` fsync that fails after the rename: the
copy may then exist and the queued message makes a second one (never a lost one).

Each worker process keeps its own mailbox usage cache (as the dispatcher does), so a
quota is checked against usage at most a few seconds old, per process.

Whether the recipient's domain is local is asked on the event loop, of the lookups the
SMTP session cached when it checked the recipient (refreshed at MAIL), so relayed mail
costs nothing here.  The agent is synchronous (file I/O with fsync); it runs in this
service's own threads, one hand-off per message, never on the worker's event loop.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from mailyard.config import Config
from mailyard.delivery.attempt import TRANSPORT_LOCAL
from mailyard.delivery.local import LocalDeliveryAgent, LocalDeliveryResult
from mailyard.directory.api import Directory, DirectoryError
from mailyard.envelope import Envelope, split_address
from mailyard.ingest.api import Origin, Submission
from mailyard.metrics import DELIVERY_ATTEMPTS
from mailyard.obs import Metrics, log_event
from mailyard.queue.api import AttemptStatus, QueuedRecipient, QueueEntry, RecipientState
from mailyard.services.setup import feedback_addresses
from mailyard.store.api import MailStore

log = logging.getLogger("mailyard.delivery")

#: Threads per worker process: each waits for one fsync at a time.
THREADS = 8
_ORIGINS = frozenset((Origin.INBOUND, Origin.SUBMISSION))


class DirectLocalDelivery:
    """See the module docstring.  ``store`` defaults to the Maildir store under
    ``<data_dir>/mail``."""

    def __init__(self, config: Config, directory: Directory, metrics: Metrics, *,
                 store: MailStore | None = None, threads: int = THREADS) -> None:
        self.config = config
        self.directory = directory
        self.metrics = metrics
        self.agent = LocalDeliveryAgent(config, directory, store=store)
        self.feedback = feedback_addresses(config)
        self._executor = ThreadPoolExecutor(max_workers=max(1, threads),
                                            thread_name_prefix="direct-local")

    def applies(self, submission: Submission) -> bool:
        envelope = submission.envelope
        if (submission.origin not in _ORIGINS or len(envelope.recipients) != 1
                or self.config.delivery.defer_all):
            return False
        recipient = envelope.recipients[0]
        if "SUCCESS" in recipient.dsn.notify:
            return False
        if (self.feedback.verp_prefixed(envelope.sender)
                or self.config.dmarc.is_report_address(recipient.address)):
            return False
        domain = split_address(recipient.address)[1]
        if (domain in self.feedback.domains
                and self.feedback.match(recipient.address) is not None):
            return False
        try:  # relayed mail never costs a trip to the threads
            return self.directory.is_local_domain(domain)
        except DirectoryError:
            return False

    async def deliver(self, qid: str, envelope: Envelope, content: bytes) -> bool:
        loop = asyncio.get_running_loop()
        try:
            done = loop.run_in_executor(self._executor, self._deliver, qid, envelope, content)
        except RuntimeError:  # the pool is shut down: the worker is stopping
            return False
        # Shielded: once the copy is being made, its outcome is logged and counted even
        # if the session goes away meanwhile.
        outcome = await asyncio.shield(done)
        address = envelope.recipients[0].address
        if isinstance(outcome, Exception):
            log_event(log, "direct delivery declined, queued", level=logging.WARNING,
                      qid=qid, to=address, error=str(outcome) or type(outcome).__name__)
            return False
        if outcome is None:
            return False
        delivered = outcome.status is AttemptStatus.DELIVERED
        if delivered:
            self.metrics.inc(DELIVERY_ATTEMPTS, result=outcome.status.value,
                             transport=TRANSPORT_LOCAL)
        log_event(log, "delivery attempt" if delivered else "direct delivery declined, queued",
                  qid=qid, sender=envelope.sender, to=address, size=len(content),
                  transport=TRANSPORT_LOCAL, relay="", result=outcome.status.value,
                  reply=str(outcome.reply), reply_origin=outcome.reply.origin.value)
        return delivered

    def _deliver(self, qid: str, envelope: Envelope,
                 content: bytes) -> LocalDeliveryResult | Exception | None:
        """In a delivery thread: the agent's result, or None when this message is not
        one for direct delivery after all, or what went wrong (the queue takes it)."""
        address = envelope.recipients[0].address
        try:
            self.directory.refresh()  # this thread's cached lookups, if anyone wrote
            if not self.directory.is_local_domain(split_address(address)[1]):
                return None
            resolution = self.directory.resolve(address)
            if resolution.unknown or resolution.external or len(resolution.mailboxes) != 1:
                return None
            recipient = QueuedRecipient(0, address, RecipientState.PENDING)
            entry = QueueEntry(qid, envelope, len(content), time.time(), (recipient,))
            [result] = self.agent.deliver_many(entry, (recipient,),
                                               lambda: io.BytesIO(content))
        except Exception as exc:  # the queue takes the message; it says what fails
            return exc
        return result

    async def close(self) -> None:
        """Let the copies under way finish (their senders wait for them)."""
        await asyncio.to_thread(self._executor.shutdown, wait=True)
