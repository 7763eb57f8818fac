"""The evaluations store and the report sender (RFC 7489 7.1, 7.2): batches closed per
period, one report per policy domain with a mailto rua, external destinations only
when authorized, sent rows cleared."""

from __future__ import annotations

import asyncio
import email
import email.policy
import gzip
import json

from mailyard.config import Config, DmarcConfig
from mailyard.dmarc.aggregate import AuthEntry, Evaluation, PublishedPolicy
from mailyard.dmarc.evalstore import EvaluationRecorder, EvaluationStore
from mailyard.dmarc.reports import AggregateReport, parse_aggregate_xml
from mailyard.dmarc.sender import DmarcReportSender
from mailyard.dns import StaticResolver
from mailyard.ingest.api import Submission

DAY1 = 1796083200.0  # 2026-12-01 00:00 UTC
POLICY = PublishedPolicy("none", "none")


class FakeIngest:
    def __init__(self) -> None:
        self.submitted: list[tuple[Submission, bytes]] = []

    async def submit(self, submission: Submission, content: bytes) -> str:
        self.submitted.append((submission, content))
        return f"Q{len(self.submitted)}"


def facts(domain: str, ip: str = "192.0.2.7") -> Evaluation:
    return Evaluation(domain, domain, ip, domain, "none", "pass", "fail", (),
                      (AuthEntry("dkim", domain, "pass", "s"),
                       AuthEntry("spf", domain, "softfail", scope="mfrom")), POLICY)


def test_recorder_counts_in_memory_and_writes_once(tmp_path) -> None:
    store = EvaluationStore(tmp_path / "e.db")
    clock = [DAY1]

    async def go() -> None:
        recorder = EvaluationRecorder(store, lambda: clock[0], delay=3600)
        for _ in range(3):
            recorder.note(facts("a.example"))
            clock[0] += 1
        recorder.note(facts("a.example", "192.0.2.8"))
        assert recorder.pending == 4
        assert store.rows(0) == []  # nothing written yet: the accept path did no I/O
        await recorder.aclose()
        assert recorder.pending == 0
    asyncio.run(go())
    rows = store.rows(0)
    assert sorted((r.evaluation.source_ip, r.count, r.first, r.last) for r in rows) == [
        ("192.0.2.7", 3, DAY1, DAY1 + 2), ("192.0.2.8", 1, DAY1 + 3, DAY1 + 3)]
    # a second process adding the same facts adds to the count
    EvaluationStore(tmp_path / "e.db").add({facts("a.example"): [2, DAY1 + 9, DAY1 + 9]})
    assert {r.evaluation.source_ip: r.count for r in store.rows(0)}["192.0.2.7"] == 5


def test_closing_a_batch_leaves_new_evaluations_for_the_next(tmp_path) -> None:
    store = EvaluationStore(tmp_path / "e.db")
    store.add({facts("a.example"): [1, DAY1, DAY1]})
    assert store.close_batch(int(DAY1 + 86400)) == 1
    store.add({facts("a.example"): [1, DAY1 + 86401, DAY1 + 86401]})
    assert [r.count for r in store.rows(int(DAY1 + 86400))] == [1]
    assert [r.count for r in store.rows(0)] == [1]
    assert store.closed() == [(int(DAY1 + 86400), "a.example")]


def make_sender(tmp_path, records: dict, clock: list[float], **dmarc) -> tuple[
        DmarcReportSender, EvaluationStore, FakeIngest]:
    store = EvaluationStore(tmp_path / "e.db")
    ingest = FakeIngest()
    config = Config(hostname="mx.me.test", dmarc=DmarcConfig(reports=True, **dmarc))
    sender = DmarcReportSender(config, store, StaticResolver(records), ingest,  # type: ignore[arg-type]
                               lambda: clock[0])
    return sender, store, ingest


def test_one_report_per_domain_with_rua_at_the_period_end(tmp_path) -> None:
    clock = [DAY1 + 3600]
    records = {
        "_dmarc.a.example": {"TXT": ["v=DMARC1; p=none; rua=mailto:agg@a.example"]},
        "_dmarc.norua.example": {"TXT": ["v=DMARC1; p=reject"]},
    }
    sender, store, ingest = make_sender(tmp_path, records, clock)
    store.add({facts("a.example"): [4, DAY1 + 100, DAY1 + 200],
               facts("norua.example"): [1, DAY1 + 100, DAY1 + 100]})

    async def go() -> None:
        assert sender.due()  # at start: batches an earlier run left (none here)
        assert await sender.send_due() == 0
        assert not sender.due()
        clock[0] = DAY1 + 86400 + 5
        assert sender.due()
        assert await sender.send_due() == 1
        assert not sender.due()
        assert await sender.send_due() == 0  # sent once
    asyncio.run(go())
    (submission, content), = ingest.submitted
    assert submission.envelope.sender == "postmaster@mx.me.test"
    assert [r.address for r in submission.envelope.recipients] == ["agg@a.example"]
    msg = email.message_from_bytes(content, policy=email.policy.default)
    assert msg["Subject"].startswith("Report Domain: a.example Submitter: mx.me.test ")
    (part,) = list(msg.iter_attachments())
    report = parse_aggregate_xml(gzip.decompress(part.get_content()))
    assert isinstance(report, AggregateReport)
    assert (report.domain, report.messages, report.begin, report.end) == (
        "a.example", 4, int(DAY1 + 100), int(DAY1 + 86400))
    assert store.closed() == []  # both cleared: one sent, one not wanted
    sent = store.sent()
    assert [(s.policy_domain, s.messages, s.recipients, s.note) for s in sent] == [
        ("norua.example", 1, (), "no usable rua"),
        ("a.example", 4, ("agg@a.example",), "queued")]


def test_external_destination_needs_its_authorization_record(tmp_path) -> None:
    """RFC 7489 7.1: reports for a.example go to reports.test only if
    a.example._report._dmarc.reports.test says v=DMARC1."""
    clock = [DAY1]
    records = {
        "_dmarc.a.example": {"TXT": [
            "v=DMARC1; p=none; rua=mailto:x@reports.test,mailto:y@other.test"]},
        "a.example._report._dmarc.reports.test": {"TXT": ["v=DMARC1"]},
    }
    sender, store, ingest = make_sender(tmp_path, records, clock, report_interval=60.0)
    store.add({facts("a.example"): [1, DAY1 + 1, DAY1 + 1]})
    clock[0] = DAY1 + 61
    assert asyncio.run(sender.send_due()) == 1
    (submission, _), = ingest.submitted
    assert [r.address for r in submission.envelope.recipients] == ["x@reports.test"]


def test_size_limit_and_dns_failure(tmp_path) -> None:
    clock = [DAY1]
    records = {"_dmarc.a.example": {"TXT": ["v=DMARC1; p=none; rua=mailto:x@a.example!1k"]}}
    sender, store, ingest = make_sender(tmp_path, records, clock, report_interval=60.0)
    sender.resolver.fail("_dmarc.down.example")  # type: ignore[attr-defined]
    store.add({facts("a.example"): [1, DAY1 + 1, DAY1 + 1],
               facts("down.example"): [1, DAY1 + 1, DAY1 + 1]})
    clock[0] = DAY1 + 61
    assert asyncio.run(sender.send_due()) == 0
    assert ingest.submitted == []
    assert [(s.policy_domain, s.note) for s in store.sent()] == [
        ("a.example", "report larger than every rua limit")]
    assert store.closed() == [(int(DAY1 + 60), "down.example")]  # tried again later
    assert not sender.due()
    clock[0] += 601
    assert sender.due()


def test_cli_lists_the_reports_sent(tmp_path, capsys) -> None:
    from mailyard.cli.main import main
    from mailyard.dmarc.evalstore import SentReport

    data = tmp_path / "data"
    data.mkdir()
    config = tmp_path / "mailyard.toml"
    config.write_text(f'hostname = "mx.example.test"\ndata_dir = "{data}"\n')
    assert main(["report", "dmarc", "--sent", "--config", str(config)]) == 0
    assert "No DMARC aggregate reports sent." in capsys.readouterr().out
    store = EvaluationStore.in_data_dir(data)
    store.add({facts("a.example"): [3, DAY1, DAY1]})
    store.close_batch(int(DAY1 + 60))
    store.done(int(DAY1 + 60), "a.example", SentReport(
        DAY1 + 61, "a.example", "r1", int(DAY1), int(DAY1 + 60), 3, ("agg@a.example",),
        "queued"))
    store.close()
    assert main(["report", "dmarc", "--sent", "--config", str(config)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["SENT", "(UTC)", "DOMAIN", "MSGS"]
    assert lines[1].split()[2:] == ["a.example", "3", "agg@a.example"]
    assert main(["report", "dmarc", "--sent", "--json", "--domain", "A.example.",
                 "--config", str(config)]) == 0
    [sent] = json.loads(capsys.readouterr().out)
    assert (sent["report_id"], sent["recipients"], sent["messages"]) == (
        "r1", ["agg@a.example"], 3)
