"""TLS-RPT (RFC 8460): the rua record, the outcome store and the JSON report's shape
against the fields of the example in section 4.4."""

from __future__ import annotations

import asyncio
import datetime
import email
import email.policy
import gzip
import json
import os
import stat

from mailyard.tlsrpt.report import ReportAddresses, build_report, parse_rua_record, report_message
from mailyard.tlsrpt.results import PolicyTag, PolicyType, ResultType, certificate_failure
from mailyard.tlsrpt.store import TlsOutcomes

DAY_START = datetime.datetime(2026, 11, 30, 8, 0, tzinfo=datetime.UTC).timestamp()
STS = PolicyTag("company-y.example", PolicyType.STS,
                ("version: STSv1", "mode: testing", "mx: *.mail.company-y.example",
                 "max_age: 86400"))


def test_rfc8460_3_rua_record_examples() -> None:
    assert parse_rua_record(["v=TLSRPTv1;rua=mailto:reports@example.com"]) == \
        ReportAddresses(("reports@example.com",), ())
    assert parse_rua_record(["v=TLSRPTv1; rua=https://reporting.example.com/v1/tlsrpt"]) == \
        ReportAddresses((), ("https://reporting.example.com/v1/tlsrpt",))
    assert parse_rua_record(["v=spf1 -all"]) is None
    assert parse_rua_record(["v=TLSRPTv1; rua=ftp://x"]) is None
    assert parse_rua_record(["v=TLSRPTv1; rua=mailto:a@x", "v=TLSRPTv1; rua=mailto:b@x"]) \
        is None


def counted(tmp_path) -> TlsOutcomes:
    store = TlsOutcomes(tmp_path / "tls-rpt.db", clock=lambda: DAY_START)
    for _ in range(5326):
        store.record(STS, "mx1.mail.company-y.example", "203.0.113.56", None)
    for _ in range(303):
        store.record(STS, "mx2.mail.company-y.example", "203.0.113.58",
                     ResultType.STARTTLS_NOT_SUPPORTED)
    store.record(STS, "mx3.mail.company-y.example", "203.0.113.59",
                 ResultType.CERTIFICATE_HOST_MISMATCH, "X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED")
    asyncio.run(store.flush())
    return store


def test_outcomes_are_counted_in_a_private_database(tmp_path) -> None:
    store = counted(tmp_path)
    rows = store.rows("2026-11-30", "company-y.example")
    assert [(r.mx_host, r.result, r.count) for r in rows] == [
        ("mx1.mail.company-y.example", "", 5326),
        ("mx2.mail.company-y.example", "starttls-not-supported", 303),
        ("mx3.mail.company-y.example", "certificate-host-mismatch", 1)]
    assert stat.S_IMODE(os.stat(tmp_path / "tls-rpt.db").st_mode) == 0o600
    store.record(STS, "mx1.mail.company-y.example", "203.0.113.56", None)
    asyncio.run(store.flush())  # a second flush adds to the stored counts
    assert store.rows("2026-11-30")[0].count == 5327
    store.close()


def test_rfc8460_4_4_report_fields(tmp_path) -> None:
    store = counted(tmp_path)
    report = build_report(store.rows("2026-11-30", "company-y.example"),
                          organization="Company-X", contact="sts-reporting@company-x.example",
                          report_id="5065427c-23d3-47ca-b6e0-946ea0e8c4be",
                          sending_ip="2001:db8:abcd:0012::1")
    assert report["organization-name"] == "Company-X"
    assert report["date-range"] == {"start-datetime": "2026-11-30T00:00:00Z",
                                    "end-datetime": "2026-11-30T23:59:59Z"}
    assert report["contact-info"] == "sts-reporting@company-x.example"
    assert report["report-id"] == "5065427c-23d3-47ca-b6e0-946ea0e8c4be"
    (entry,) = report["policies"]
    assert entry["policy"] == {"policy-type": "sts", "policy-domain": "company-y.example",
                               "policy-string": list(STS.strings),
                               "mx-host": ["*.mail.company-y.example"]}
    assert entry["summary"] == {"total-successful-session-count": 5326,
                                "total-failure-session-count": 304}
    first = entry["failure-details"][0]
    assert first == {"result-type": "starttls-not-supported",
                     "sending-mta-ip": "2001:db8:abcd:0012::1",
                     "receiving-ip": "203.0.113.58",
                     "receiving-mx-hostname": "mx2.mail.company-y.example",
                     "failed-session-count": 303}
    assert entry["failure-details"][1]["failure-reason-code"] == \
        "X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED"
    json.dumps(report)  # plain JSON types only


def test_rfc8460_5_3_report_mail(tmp_path) -> None:
    store = counted(tmp_path)
    report = build_report(store.rows("2026-11-30"), organization="x", contact="c@x.example",
                          report_id="r1")
    raw = report_message(report, domain="company-y.example", submitter="mail.x.example",
                         sender="postmaster@x.example", recipients=["tlsrpt@company-y.example"],
                         now=datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC))
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "tlsrpt"
    assert msg["TLS-Report-Domain"] == "company-y.example"
    assert msg["TLS-Report-Submitter"] == "mail.x.example"
    assert msg["Subject"].startswith("Report Domain: company-y.example Submitter: mail.x.example")
    parts = list(msg.iter_attachments())
    assert parts[0].get_content_type() == "application/tlsrpt+gzip"
    assert parts[0].get_filename().startswith("mail.x.example!company-y.example!")
    assert json.loads(gzip.decompress(parts[0].get_content())) == report


def test_certificate_failures_by_openssl_message() -> None:
    assert certificate_failure("Hostname mismatch, certificate is not valid for 'x'") is \
        ResultType.CERTIFICATE_HOST_MISMATCH
    assert certificate_failure("certificate has expired") is ResultType.CERTIFICATE_EXPIRED
    assert certificate_failure("self-signed certificate") is \
        ResultType.CERTIFICATE_NOT_TRUSTED
    assert certificate_failure("unable to get local issuer certificate") is \
        ResultType.CERTIFICATE_NOT_TRUSTED


def test_counts_older_than_the_retention_are_deleted(tmp_path) -> None:
    clock = [DAY_START]
    store = TlsOutcomes(tmp_path / "tls-rpt.db", clock=lambda: clock[0])
    store.record(STS, "mx1.mail.company-y.example", "203.0.113.56", None)
    asyncio.run(store.flush())
    clock[0] += 40 * 86400
    store.record(STS, "mx1.mail.company-y.example", "203.0.113.56", None)
    asyncio.run(store.flush())
    assert [r.day for r in store.rows()] == ["2027-01-09"]
    store.close()


def test_outcomes_are_counted_in_the_metrics_too() -> None:
    from mailyard.metrics import OUTBOUND_TLS, Metrics

    store = TlsOutcomes(None, clock=lambda: DAY_START)
    store.metrics = Metrics()
    store.record(STS, "mx1.mail.company-y.example", "203.0.113.56", None)
    store.record(STS, "mx2.mail.company-y.example", "203.0.113.58",
                 ResultType.STARTTLS_NOT_SUPPORTED)
    assert store.metrics.get(OUTBOUND_TLS, policy="sts", result="success") == 1
    assert store.metrics.get(OUTBOUND_TLS, policy="sts", result="starttls-not-supported") == 1
