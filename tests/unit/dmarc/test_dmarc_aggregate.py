"""The aggregate reports we send: the document (RFC 7489 appendix C), the mail (7.2.1.1),
the destinations and their authorization (7.1), and a round trip through our own
report parser."""

from __future__ import annotations

import datetime
import email
import email.policy
import gzip
from xml.etree.ElementTree import Element, fromstring

from mailyard.dmarc.aggregate import (
    AuthEntry,
    CountedEvaluation,
    Evaluation,
    PublishedPolicy,
    ReportMeta,
    authorization_name,
    authorizes,
    feedback_xml,
    report_addresses,
    report_filename,
    report_message,
    report_subject,
)
from mailyard.dmarc.orgdomain import load_public_suffixes
from mailyard.dmarc.record import DmarcRecord, parse_record
from mailyard.dmarc.reports import AggregateReport, parse_aggregate_xml, reports_from_message

SUFFIXES = load_public_suffixes()
META = ReportMeta("mx.receiver.example", "postmaster@mx.receiver.example",
                  "1796169600.abc@mx.receiver.example", 1796083200, 1796169600)
POLICY = PublishedPolicy("reject", "quarantine", 100, "r", "s", "1")


def evaluation(ip: str = "192.0.2.1", *, dkim: str = "pass", spf: str = "pass",
               disposition: str = "none", reasons: tuple[str, ...] = (),
               auth: tuple[AuthEntry, ...] | None = None) -> Evaluation:
    if auth is None:
        auth = (AuthEntry("dkim", "example.com", "pass", selector="s1"),
                AuthEntry("spf", "mail.example.com", "pass", scope="mfrom"))
    return Evaluation("example.com", "example.com", ip, "mail.example.com", disposition,
                      dkim, spf, reasons, auth, POLICY)


def rows() -> list[CountedEvaluation]:
    return [
        CountedEvaluation(evaluation(), 3, 1796083300.0, 1796090000.0),
        CountedEvaluation(evaluation("2001:db8::25", dkim="fail", spf="fail",
                                     disposition="quarantine", reasons=("local_policy",),
                                     auth=(AuthEntry("dkim", "evil.test", "fail", "x"),)),
                          1, 1796084000.0, 1796084000.0),
    ]


def names(node: Element) -> list[str]:
    return [child.tag for child in node]


def test_document_follows_the_appendix_c_structure() -> None:
    """RFC 7489 appendix C: the element order and the required elements of each type
    (feedback; ReportMetadataType; PolicyPublishedType; RecordType; RowType;
    PolicyEvaluatedType; IdentifierType; AuthResultType)."""
    root = fromstring(feedback_xml("example.com", rows(), META))
    assert root.tag == "feedback"
    assert names(root) == ["version", "report_metadata", "policy_published", "record", "record"]
    assert root.findtext("version") == "1.0"
    assert names(root.find("report_metadata")) == ["org_name", "email", "report_id",
                                                   "date_range"]
    assert names(root.find("report_metadata/date_range")) == ["begin", "end"]
    published = root.find("policy_published")
    assert {c.tag: c.text for c in published} == {
        "domain": "example.com", "adkim": "r", "aspf": "s", "p": "reject",
        "sp": "quarantine", "pct": "100", "fo": "1"}
    first, second = root.findall("record")
    assert names(first) == ["row", "identifiers", "auth_results"]
    assert names(first.find("row")) == ["source_ip", "count", "policy_evaluated"]
    assert names(first.find("row/policy_evaluated")) == ["disposition", "dkim", "spf"]
    assert names(first.find("identifiers")) == ["header_from"]
    assert names(first.find("auth_results")) == ["dkim", "spf"]
    assert names(first.find("auth_results/dkim")) == ["domain", "selector", "result"]
    assert names(first.find("auth_results/spf")) == ["domain", "scope", "result"]
    # the biggest row first; the override reason (PolicyOverrideReason: type)
    assert first.findtext("row/count") == "3"
    assert second.findtext("row/source_ip") == "2001:db8::25"
    assert second.findtext("row/policy_evaluated/reason/type") == "local_policy"
    # AuthResultType needs one spf element even when SPF was not checked: result none
    spf = second.find("auth_results/spf")
    assert (spf.findtext("domain"), spf.findtext("result")) == ("mail.example.com", "none")


def test_values_stay_inside_the_schema_enumerations() -> None:
    """RFC 7489 appendix C: DKIMResultType, SPFResultType and PolicyOverrideType are
    closed lists; an unknown value is not written as is."""
    odd = evaluation(reasons=("made_up",),
                     auth=(AuthEntry("dkim", "example.com", "weird"),
                           AuthEntry("spf", "example.com", "unknown", scope="x")))
    root = fromstring(feedback_xml("example.com", [CountedEvaluation(odd, 1, 0, 0)], META))
    assert root.find("record/row/policy_evaluated/reason") is None
    assert root.findtext("record/auth_results/dkim/result") == "permerror"
    assert root.findtext("record/auth_results/spf/result") == "permerror"
    assert root.find("record/auth_results/spf/scope") is None


def test_rows_that_differ_only_in_the_policy_are_one_record() -> None:
    newer = PublishedPolicy("none", "none", 50)
    later = CountedEvaluation(Evaluation(*[getattr(evaluation(), f) for f in (
        "policy_domain", "header_from", "source_ip", "envelope_from", "disposition", "dkim",
        "spf", "reasons", "auth")], newer), 2, 1796095000.0, 1796095000.0)
    root = fromstring(feedback_xml("example.com", [rows()[0], later], META))
    assert [r.findtext("row/count") for r in root.findall("record")] == ["5"]
    assert root.findtext("policy_published/p") == "none"  # the newest policy seen
    assert root.findtext("policy_published/pct") == "50"


def test_round_trip_through_our_parser() -> None:
    parsed = parse_aggregate_xml(feedback_xml("example.com", rows(), META))
    assert isinstance(parsed, AggregateReport)
    assert (parsed.org_name, parsed.report_id, parsed.begin, parsed.end) == (
        META.org_name, META.report_id, META.begin, META.end)
    assert (parsed.domain, parsed.policy, parsed.subdomain_policy, parsed.pct,
            parsed.adkim, parsed.aspf) == ("example.com", "reject", "quarantine", 100, "r", "s")
    assert parsed.messages == 4
    first, second = parsed.rows
    assert (first.source_ip, first.count, first.disposition, first.dkim, first.spf,
            first.header_from) == ("192.0.2.1", 3, "none", "pass", "pass", "example.com")
    assert [(c.method, c.domain, c.result) for c in first.checks] == [
        ("dkim", "example.com", "pass"), ("spf", "mail.example.com", "pass")]
    assert (second.disposition, second.reasons) == ("quarantine", ("local_policy",))


def test_text_is_escaped() -> None:
    meta = ReportMeta("A & B <org>", "x@y.example", "id<1>", 0, 1)
    parsed = parse_aggregate_xml(feedback_xml("example.com", rows()[:1], meta))
    assert isinstance(parsed, AggregateReport)
    assert (parsed.org_name, parsed.report_id) == ("A & B <org>", "id<1>")


def test_mail_subject_and_filename() -> None:
    """RFC 7489 7.2.1.1: the Subject, the file name and application/gzip; our parser
    of report mails reads it back."""
    xml = feedback_xml("example.com", rows(), META)
    content = report_message(xml, domain="example.com", submitter="mx.receiver.example",
                             meta=META, sender="postmaster@mx.receiver.example",
                             recipients=["dmarc@example.com"],
                             now=datetime.datetime(2026, 12, 2, tzinfo=datetime.UTC))
    assert b"\r\n" in content and b"\n" not in content.replace(b"\r\n", b"")
    msg = email.message_from_bytes(content, policy=email.policy.default)
    assert msg["Subject"] == ("Report Domain: example.com Submitter: mx.receiver.example "
                              "Report-ID: <1796169600.abc@mx.receiver.example>")
    (part,) = list(msg.iter_attachments())
    assert part.get_content_type() == "application/gzip"
    assert part.get_filename() == ("mx.receiver.example!example.com!1796083200!1796169600!"
                                   "1796169600.abcmx.receiver.example.xml.gz")
    assert gzip.decompress(part.get_content()) == xml
    (report,) = reports_from_message(content)
    assert isinstance(report, AggregateReport) and report.messages == 4
    assert report_subject("a", "b", "c") == "Report Domain: b Submitter: a Report-ID: <c>"
    assert report_filename("r", "d", META).startswith("r!d!1796083200!1796169600!")


def record(text: str) -> DmarcRecord:
    parsed = parse_record(text)
    assert isinstance(parsed, DmarcRecord)
    return parsed


def test_destinations_and_the_external_check() -> None:
    """RFC 7489 7.1: a destination in another Organizational Domain is external; the
    same Organizational Domain (a subdomain) is not; only mailto is used; 6.2 size
    limits are kept."""
    found = report_addresses(record(
        "v=DMARC1; p=none; rua=mailto:dmarc@Example.COM,mailto:agg@reports.example.com!10m,"
        "mailto:x@thirdparty.example.net,https://ignored.example/,mailto:dmarc@example.com"),
        "example.com", SUFFIXES)
    assert [(d.address, d.max_size, d.external) for d in found] == [
        ("dmarc@example.com", None, False),
        ("agg@reports.example.com", 10 << 20, False),
        ("x@thirdparty.example.net", None, True)]
    assert authorization_name("example.com", "thirdparty.example.net") == \
        "example.com._report._dmarc.thirdparty.example.net"
    assert authorizes(["v=DMARC1"])
    assert authorizes(["something else", "v=DMARC1; rua=mailto:x@y.example"])
    assert not authorizes([])
    assert not authorizes(["v=spf1 -all"])


def test_percent_encoded_and_malformed_mailto() -> None:
    found = report_addresses(record(
        "v=DMARC1; p=none; rua=mailto:a%2Bb@example.com?subject=x,mailto:@example.com,"
        "mailto:nobody"), "example.com", SUFFIXES)
    assert [d.address for d in found] == ["a+b@example.com"]
