"""The verdict's two forms of our Authentication-Results field (RFC 8601) and the
facts it gives the DMARC aggregate reports (RFC 7489 appendix C): the field written
straight from the results is the field of the parsed-model form, and the report key
counted per message is the Evaluation it stands for."""

from __future__ import annotations

import asyncio
import itertools

from mailyard.arc.chain import ArcResult, ArcStatus
from mailyard.authres.format import format_field
from mailyard.config import DmarcConfig
from mailyard.dkim.result import DkimResult, DkimStatus
from mailyard.dmarc.aggregate import AuthEntry, Evaluation, PublishedPolicy
from mailyard.dmarc.evalstore import EvaluationRecorder, EvaluationStore
from mailyard.dmarc.evaluate import Disposition, DmarcResult, DmarcStatus
from mailyard.dmarc.record import DmarcRecord, Policy, ReportUri, parse_record
from mailyard.envelope import Envelope, Recipient
from mailyard.ingest.api import Origin, Submission
from mailyard.senderauth.checks import SpfInput, Verdict
from mailyard.senderauth.hook import PublishedPolicies, evaluation_of, report_key

PARSED = parse_record("v=DMARC1; p=reject; sp=quarantine; aspf=s; rua=mailto:agg@example.com")
assert isinstance(PARSED, DmarcRecord)
RECORD: DmarcRecord = PARSED

SPFS = [None, SpfInput("pass", "mailfrom", "ada@example.com", "example.com"),
        SpfInput("fail", "helo", "", "mail.example.com"),
        SpfInput("softfail", "mailfrom", "", "example.com"),  # no sender: no property
        SpfInput("pass", "mailfrom", "odd sender\"@example.com", "example.com")]
DKIMS: list[tuple[tuple[DkimResult, ...], tuple[str, ...]]] = [
    ((), ()),
    ((DkimResult(DkimStatus.PASS, "example.com", "s1"),), ("abcdefghijklmnop",)),
    ((DkimResult(DkimStatus.FAIL, "example.com", "s1"),
      DkimResult(DkimStatus.PERMERROR, "", ""),
      DkimResult(DkimStatus.PASS, "other.example", "sel two")),
     ("abcdefgh12", "", "abcdefgh13")),
]
DMARCS = [None, DmarcResult(DmarcStatus.PERMERROR, reason="no From field"),
          DmarcResult(DmarcStatus.PASS, Disposition.NONE, "example.com", "example.com",
                      Policy.REJECT, RECORD, True, False),
          DmarcResult(DmarcStatus.FAIL, Disposition.QUARANTINE, "sub.example.com",
                      "example.com", Policy.QUARANTINE, None, False, False)]
ARCS = [ArcResult(ArcStatus.NONE), ArcResult(ArcStatus.FAIL, 2, "broken", "fwd.example")]


def verdicts() -> list[Verdict]:
    out = []
    for spf, (dkim, sigs), dmarc, arc, ip, helo in itertools.product(
            SPFS, DKIMS, DMARCS, ARCS, ["192.0.2.9", "", "2001:db8::1"], [None, SPFS[2]]):
        out.append(Verdict(dkim, sigs, arc, spf, dmarc, ip, DmarcConfig(), helo))
    return out


def test_the_field_is_the_formatted_results() -> None:
    """RFC 8601 2.2: every combination of SPF (MAIL FROM, HELO, none), DKIM (none, one,
    several with a bad signature), DMARC and ARC results gives the same octets both
    ways, with authserv-ids that are a token and that need quoting."""
    for verdict in verdicts():
        for authserv_id in ("mx.example.net", "mx example"):
            assert verdict.field(authserv_id) == format_field(verdict.results(authserv_id))


SUBMISSION = Submission(Origin.INBOUND, Envelope(
    "Ada@Example.COM", (Recipient("bob@example.net"),), client_ip="192.0.2.9"))


def test_the_report_key_stands_for_the_evaluation() -> None:
    """RFC 7489 appendix C: the facts of a row, from the verdict as a plain tuple."""
    verdict = Verdict(DKIMS[2][0], DKIMS[2][1], ARCS[0], SPFS[1], DMARCS[2], "192.0.2.9",
                      DmarcConfig(), None)
    key = report_key(verdict, SUBMISSION, PublishedPolicies())
    assert key is not None and hash(key) == hash(report_key(verdict, SUBMISSION))
    assert evaluation_of(key) == Evaluation(
        policy_domain="example.com", header_from="example.com", source_ip="192.0.2.9",
        envelope_from="example.com", disposition="none", dkim="fail", spf="pass",
        reasons=(), auth=(AuthEntry("dkim", "example.com", "fail", selector="s1"),
                          AuthEntry("dkim", "other.example", "pass", selector="sel two"),
                          AuthEntry("spf", "example.com", "pass", scope="mfrom")),
        policy=PublishedPolicy.of(RECORD))
    no_rua = Verdict((), (), ARCS[0], None, DMARCS[3], "", DmarcConfig(), None)
    assert report_key(no_rua, SUBMISSION) is None


def test_published_policies_are_made_once_per_record() -> None:
    policies = PublishedPolicies()
    first = policies.of(RECORD)
    assert policies.of(RECORD) is first
    other = parse_record("v=DMARC1; p=none; rua=mailto:a@example.org")
    assert isinstance(other, DmarcRecord)
    assert policies.of(other) == PublishedPolicy("none", "none")


def test_keys_that_stand_for_one_evaluation_are_counted_as_one_row(tmp_path) -> None:
    """Counted by key, written as Evaluations: equal facts are one key (a record parsed
    twice gives the same published policy), and a key and an Evaluation noted as such
    that stand for the same facts are one row, their counts summed, first and last the
    earliest and the latest."""
    store = EvaluationStore(tmp_path / "e.db")
    clock = [100.0]
    recorder = EvaluationRecorder(store, lambda: clock[0], delay=3600)
    verdict = Verdict(DKIMS[1][0], DKIMS[1][1], ARCS[0], SPFS[1], DMARCS[2], "192.0.2.9",
                      DmarcConfig(), None)
    again = parse_record.__wrapped__(  # type: ignore[attr-defined]
        "v=DMARC1; p=reject; sp=quarantine; aspf=s; rua=mailto:agg@example.com")
    assert isinstance(DMARCS[2], DmarcResult)
    assert recorder.pending == 0
    twin = Verdict(DKIMS[1][0], DKIMS[1][1], ARCS[0], SPFS[1],
                   DmarcResult(**{**DMARCS[2].__dict__, "record": again}), "192.0.2.9",
                   DmarcConfig(), None)

    async def count() -> None:
        for v, at in ((verdict, 100.0), (twin, 110.0), (verdict, 120.0)):
            clock[0] = at
            key = report_key(v, SUBMISSION, PublishedPolicies())
            assert key is not None
            recorder.note_key(key, evaluation_of)
        clock[0] = 95.0
        evaluation = evaluation_of(report_key(verdict, SUBMISSION))  # type: ignore[arg-type]
        recorder.note(evaluation)
        assert recorder.pending == 4
        await recorder.aclose()

    asyncio.run(count())
    rows = store.rows(0)
    assert [(r.count, r.first, r.last) for r in rows] == [(4, 95.0, 120.0)]
    assert rows[0].evaluation.auth[0] == AuthEntry("dkim", "example.com", "pass",
                                                   selector="s1")
    assert ReportUri("mailto:agg@example.com") in RECORD.rua
