"""Sending the daily TLS-RPT reports (RFC 8460 3 and 5.3) by mail.

Once a UTC day is over, each recipient domain with counted sessions that day gets one
report, if it publishes ``v=TLSRPTv1; rua=mailto:...`` at ``_smtp._tls.<domain>``.  The
report goes into the queue through ingest (as a local submission from the
``tls_rpt.sender`` address), like any other mail Mailyard writes, so it is retried,
logged and bounced like the rest.  A day and domain are marked sent once the report is
queued, or once the DNS says there is no rua; a temporary DNS failure leaves them for
the next round.  Days older than ``MAX_AGE_DAYS`` are not reported any more.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
import uuid
from collections.abc import Callable

from mailyard.config import Config
from mailyard.dns.api import AnswerKind, DnsError, Resolver
from mailyard.envelope import Envelope, Recipient
from mailyard.ingest.api import Ingest, IngestRefused, Origin, Submission
from mailyard.obs import log_event
from mailyard.tlsrpt.report import build_report, parse_rua_record, report_message
from mailyard.tlsrpt.store import OutcomeRow, TlsOutcomes, utc_day

__all__ = ["ReportSender"]

log = logging.getLogger("mailyard.tlsrpt")

CHECK_EVERY = 3600.0  # seconds between looks for days to report
MAX_AGE_DAYS = 7


class ReportSender:
    def __init__(self, config: Config, store: TlsOutcomes, resolver: Resolver, ingest: Ingest,
                 clock: Callable[[], float] = time.time) -> None:
        self.hostname = config.hostname
        settings = config.tls_rpt
        self.organization = settings.organization or config.hostname
        self.contact = settings.contact or f"postmaster@{config.hostname}"
        self.sender = settings.sender or f"postmaster@{config.hostname}"
        self.store, self.resolver, self.ingest, self.clock = store, resolver, ingest, clock
        self._next_check = 0.0

    def due(self) -> bool:
        return self.clock() >= self._next_check

    async def send_due(self) -> int:
        """Queue the reports of finished days not sent yet; how many were queued."""
        now = self.clock()
        self._next_check = now + CHECK_EVERY
        today = utc_day(now)
        oldest = utc_day(now - MAX_AGE_DAYS * 86400)
        rows = await asyncio.to_thread(self.store.rows)
        groups: dict[tuple[str, str], list[OutcomeRow]] = {}
        for row in rows:
            if oldest <= row.day < today:
                groups.setdefault((row.day, row.policy_domain), []).append(row)
        sent = 0
        for (day, domain), group in sorted(groups.items()):
            if await asyncio.to_thread(self.store.was_sent, day, domain):
                continue
            if await self._send(day, domain, group):
                sent += 1
        return sent

    async def _send(self, day: str, domain: str, rows: list[OutcomeRow]) -> bool:
        try:
            answer = await self.resolver.query(f"_smtp._tls.{domain}", "TXT")
        except DnsError as exc:
            log_event(log, "TLS report postponed", domain=domain, day=day, error=exc.reason)
            return False
        addresses = (parse_rua_record(answer.records)
                     if answer.kind is AnswerKind.ANSWER else None)
        if addresses is None or not addresses.mailto:
            await asyncio.to_thread(self.store.mark_sent, day, domain)
            return False
        report_id = f"{day}.{uuid.uuid4().hex}@{self.hostname}"
        report = build_report(rows, organization=self.organization, contact=self.contact,
                              report_id=report_id)
        content = report_message(report, domain=domain, submitter=self.hostname,
                                 sender=self.sender, recipients=addresses.mailto,
                                 now=datetime.datetime.fromtimestamp(self.clock(),
                                                                     datetime.UTC))
        envelope = Envelope(self.sender, tuple(Recipient(a) for a in addresses.mailto))
        try:
            qid = await self.ingest.submit(
                Submission(Origin.LOCAL, envelope, local_user="mailyard"), content)
        except IngestRefused as exc:
            log_event(log, "TLS report refused", level=logging.WARNING, domain=domain,
                      day=day, reply=str(exc.reply))
            return False
        await asyncio.to_thread(self.store.mark_sent, day, domain)
        log_event(log, "TLS report queued", domain=domain, day=day, qid=qid,
                  to=",".join(addresses.mailto))
        return True
