"""Sending our DMARC aggregate reports (RFC 7489 7.2) by mail, from the dispatcher.

At the end of each report period (``[dmarc] report_interval``, by default a UTC day:
periods end at multiples of the interval since the epoch) the open batch of recorded
evaluations is closed (:meth:`~mailyard.dmarc.evalstore.EvaluationStore.close_batch`)
and each policy domain in it gets one report, if its DMARC record (looked up again
now: RFC 7489 7.2 reports to the current ``rua``) names ``mailto:`` destinations:

* a destination outside the policy domain's Organizational Domain must be authorized
  by a ``v=DMARC1`` TXT record at ``<policy domain>._report._dmarc.<its host>``
  (RFC 7489 7.1), else it is left out;
* a destination whose size limit (``!10m``) the gzipped report exceeds is left out
  (RFC 7489 7.2.1.1);
* the report goes into the queue through ingest as a local submission from
  ``report_sender`` (so it is DKIM-signed, retried, logged and bounced like any mail).

Then the batch's rows for that domain are deleted and the sent list notes it.  A
temporary DNS failure or a refusal by ingest leaves the batch for a new try
:data:`RETRY_SECONDS` later; a batch that still cannot be reported after
:data:`MAX_AGE_SECONDS` is dropped.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import logging
import math
import time
import uuid
from collections.abc import Callable, Sequence

from mailyard.config import Config
from mailyard.dmarc.aggregate import (
    CountedEvaluation,
    Destination,
    ReportMeta,
    authorization_name,
    authorizes,
    feedback_xml,
    report_addresses,
    report_message,
)
from mailyard.dmarc.evalstore import EvaluationStore, SentReport
from mailyard.dmarc.orgdomain import PublicSuffixes, load_public_suffixes
from mailyard.dmarc.record import DmarcRecord, is_dmarc_record, parse_record
from mailyard.dns.api import AnswerKind, DnsError, Resolver
from mailyard.envelope import Envelope, Recipient
from mailyard.ingest.api import Ingest, IngestRefused, Origin, Submission
from mailyard.obs import log_event

__all__ = ["DmarcReportSender"]

log = logging.getLogger("mailyard.dmarc")

RETRY_SECONDS = 600.0
MAX_AGE_SECONDS = 7 * 86400


class _Postponed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DmarcReportSender:
    def __init__(self, config: Config, store: EvaluationStore, resolver: Resolver,
                 ingest: Ingest, clock: Callable[[], float] = time.time,
                 suffixes: Callable[[], PublicSuffixes] | None = None) -> None:
        settings = config.dmarc
        self.hostname = config.hostname
        self.interval = settings.report_interval
        self.organization = settings.report_organization or config.hostname
        self.sender = settings.report_sender or f"postmaster@{config.hostname}"
        self.contact = settings.report_contact
        self.store, self.resolver, self.ingest, self.clock = store, resolver, ingest, clock
        psl = settings.public_suffix_list
        self.suffixes = suffixes or functools.cache(lambda: load_public_suffixes(psl))
        self._next_close = self._period_end(clock()) + self.interval
        self._next_retry = clock()  # batches left by an earlier run are tried at start
        self._last_batch = 0

    def _period_end(self, now: float) -> float:
        return math.floor(now / self.interval) * self.interval

    def due(self) -> bool:
        return self.clock() >= min(self._next_close, self._next_retry)

    async def send_due(self) -> int:
        """Close the period if it is over, then report every closed batch; how many
        reports were queued."""
        now = self.clock()
        self._next_retry = math.inf
        if now >= self._next_close:
            batch = max(int(self._period_end(now)), self._last_batch + 1)
            self._last_batch = batch
            self._next_close = self._period_end(now) + self.interval
            await asyncio.to_thread(self.store.close_batch, batch)
        sent = 0
        for batch, domain in await asyncio.to_thread(self.store.closed):
            rows = await asyncio.to_thread(self.store.rows, batch, domain)
            try:
                if await self._report(batch, domain, rows):
                    sent += 1
            except _Postponed as exc:
                if now - batch > MAX_AGE_SECONDS:
                    await self._done(batch, domain, rows, (), f"dropped: {exc.reason}")
                    continue
                self._next_retry = now + RETRY_SECONDS
                log_event(log, "DMARC report postponed", domain=domain, batch=batch,
                          reason=exc.reason)
        return sent

    async def _done(self, batch: int, domain: str, rows: Sequence[CountedEvaluation],
                    recipients: Sequence[str], note: str, report_id: str = "",
                    span: tuple[int, int] = (0, 0)) -> None:
        report = SentReport(self.clock(), domain, report_id, span[0], span[1],
                            sum(r.count for r in rows), tuple(recipients), note)
        await asyncio.to_thread(self.store.done, batch, domain, report)

    async def _txt(self, name: str) -> list[str]:
        try:
            answer = await self.resolver.query(name, "TXT")
        except DnsError as exc:
            raise _Postponed(f"DNS {name}: {exc.reason}") from None
        return list(answer.records) if answer.kind is AnswerKind.ANSWER else []

    async def _record(self, domain: str) -> DmarcRecord | None:
        found = [t for t in await self._txt(f"_dmarc.{domain}") if is_dmarc_record(t)]
        if len(found) != 1:
            return None
        record = parse_record(found[0])
        return record if isinstance(record, DmarcRecord) else None

    async def _destinations(self, domain: str, record: DmarcRecord) -> list[Destination]:
        """The ``rua`` mailto destinations that may receive the report (RFC 7489 7.1)."""
        allowed = []
        for destination in report_addresses(record, domain, self.suffixes()):
            host = destination.address.rpartition("@")[2]
            if destination.external and not authorizes(
                    await self._txt(authorization_name(domain, host))):
                log_event(log, "DMARC report destination not authorized", domain=domain,
                          destination=destination.address)
                continue
            allowed.append(destination)
        return allowed

    async def _report(self, batch: int, domain: str, rows: list[CountedEvaluation]) -> bool:
        if not rows:
            return False
        record = await self._record(domain)
        destinations = [] if record is None else await self._destinations(domain, record)
        if not destinations:
            note = "no DMARC record" if record is None else "no usable rua"
            await self._done(batch, domain, rows, (), note)
            return False
        begin = int(min(r.first for r in rows))
        end = max(batch, math.ceil(max(r.last for r in rows)))
        meta = ReportMeta(self.organization, self.sender,
                          f"{batch}.{uuid.uuid4().hex[:16]}@{self.hostname}", begin, end,
                          self.contact)
        xml = feedback_xml(domain, rows, meta)
        now = datetime.datetime.fromtimestamp(self.clock(), datetime.UTC)
        probe = report_message(xml, domain=domain, submitter=self.hostname, meta=meta,
                               sender=self.sender, recipients=(), now=now)
        fitting = [d.address for d in destinations
                   if d.max_size is None or len(probe) <= d.max_size]
        if not fitting:
            await self._done(batch, domain, rows, (), "report larger than every rua limit",
                             meta.report_id, (begin, end))
            return False
        content = report_message(xml, domain=domain, submitter=self.hostname, meta=meta,
                                 sender=self.sender, recipients=fitting, now=now)
        envelope = Envelope(self.sender, tuple(Recipient(a) for a in fitting))
        try:
            qid = await self.ingest.submit(
                Submission(Origin.LOCAL, envelope, local_user="mailyard"), content)
        except IngestRefused as exc:
            raise _Postponed(f"ingest refused: {exc.reply}") from None
        await self._done(batch, domain, rows, fitting, "queued", meta.report_id, (begin, end))
        log_event(log, "DMARC report queued", domain=domain, qid=qid, to=",".join(fitting),
                  messages=sum(r.count for r in rows), report_id=meta.report_id)
        return True
