"""The daily TLS-RPT mail (RFC 8460 3, 5.3): one report per finished day and domain
that publishes a mailto rua, queued through ingest once."""

from __future__ import annotations

import asyncio
import email
import email.policy
import gzip
import json

from mailyard.config import Config, TlsRptConfig
from mailyard.dns import StaticResolver
from mailyard.ingest.api import Submission
from mailyard.tlsrpt.results import PolicyTag, PolicyType, ResultType
from mailyard.tlsrpt.sender import ReportSender
from mailyard.tlsrpt.store import TlsOutcomes

DAY1 = 1796083200.0  # 2026-12-01 00:00 UTC


class FakeIngest:
    def __init__(self) -> None:
        self.submitted: list[tuple[Submission, bytes]] = []

    async def submit(self, submission: Submission, content: bytes) -> str:
        self.submitted.append((submission, content))
        return f"Q{len(self.submitted)}"


def test_reports_of_finished_days_go_to_the_rua_once(tmp_path) -> None:
    clock = [DAY1 + 3600]
    store = TlsOutcomes(tmp_path / "tls-rpt.db", clock=lambda: clock[0])
    for domain in ("dest.test", "norua.test"):
        store.record(PolicyTag(domain, PolicyType.NO_POLICY), f"mx.{domain}", "192.0.2.1", None)
    store.record(PolicyTag("dest.test"), "mx.dest.test", "192.0.2.1",
                 ResultType.STARTTLS_NOT_SUPPORTED)
    resolver = StaticResolver({"_smtp._tls.dest.test": {
        "TXT": ["v=TLSRPTv1; rua=mailto:tls@reports.test"]}})
    ingest = FakeIngest()
    config = Config(hostname="mx.me.test", tls_rpt=TlsRptConfig(send_reports=True))
    sender = ReportSender(config, store, resolver, ingest, lambda: clock[0])  # type: ignore[arg-type]

    async def go() -> None:
        await store.flush()
        assert await sender.send_due() == 0  # the day is not over
        clock[0] += 86400
        assert await sender.send_due() == 1
        assert await sender.send_due() == 0  # sent once
    asyncio.run(go())
    (submission, content), = ingest.submitted
    assert submission.envelope.sender == "postmaster@mx.me.test"
    assert [r.address for r in submission.envelope.recipients] == ["tls@reports.test"]
    msg = email.message_from_bytes(content, policy=email.policy.default)
    assert msg["TLS-Report-Domain"] == "dest.test"
    (part,) = list(msg.iter_attachments())
    report = json.loads(gzip.decompress(part.get_content()))
    assert report["policies"][0]["summary"] == {"total-successful-session-count": 1,
                                                "total-failure-session-count": 1}
    assert store.was_sent("2026-12-01", "norua.test")  # no rua: nothing to send, ever
    store.close()


def test_temporary_dns_failure_leaves_the_report_for_later(tmp_path) -> None:
    clock = [DAY1]
    store = TlsOutcomes(tmp_path / "tls-rpt.db", clock=lambda: clock[0])
    store.record(PolicyTag("dest.test"), "mx.dest.test", "192.0.2.1", None)
    resolver = StaticResolver({"_smtp._tls.dest.test": {
        "TXT": ["v=TLSRPTv1; rua=mailto:tls@reports.test"]}})
    resolver.fail("_smtp._tls.dest.test")
    ingest = FakeIngest()
    sender = ReportSender(Config(hostname="h.test"), store, resolver, ingest,  # type: ignore[arg-type]
                          lambda: clock[0])

    async def go() -> None:
        await store.flush()
        clock[0] += 86400
        assert await sender.send_due() == 0
        resolver.heal()
        assert await sender.send_due() == 1
    asyncio.run(go())
    store.close()
