"""DMARC aggregate reports (RFC 7489 7.2, appendix C): parsing with every hostile
input refused (XML bombs, external entities, zip and gzip bombs), the store, and
``mailyard report dmarc``."""

from __future__ import annotations

import gzip
import io
import json
import os
import stat
import zipfile
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailyard.cli.main import main
from mailyard.dmarc import reports
from mailyard.dmarc.reports import (
    AggregateReport,
    AuthCheck,
    ReportError,
    reports_from_message,
    unpack_report,
)
from mailyard.dmarc.reportstore import DmarcReportStore


def report_xml(report_id: str = "r-1", org: str = "Receiver Inc.", domain: str = "example.com",
               rows: str | None = None, ns: str = "") -> bytes:
    if rows is None:
        rows = record("192.0.2.10", 12, "none", "pass", "pass") + record(
            "2001:db8::5", 3, "reject", "fail", "fail", dkim_domain="evil.example")
    xmlns = f' xmlns="{ns}"' if ns else ""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<feedback{xmlns}>
  <report_metadata>
    <org_name>{org}</org_name>
    <email>noreply-dmarc@receiver.example</email>
    <report_id>{report_id}</report_id>
    <date_range><begin>1764460800</begin><end>1764547199</end></date_range>
  </report_metadata>
  <policy_published>
    <domain>{domain}</domain><adkim>r</adkim><aspf>s</aspf>
    <p>reject</p><sp>quarantine</sp><pct>100</pct>
  </policy_published>
  {rows}
</feedback>
""".encode()


def record(ip: str, count: int, disposition: str, dkim: str, spf: str,
           dkim_domain: str = "example.com") -> str:
    return f"""<record>
    <row><source_ip>{ip}</source_ip><count>{count}</count>
      <policy_evaluated><disposition>{disposition}</disposition><dkim>{dkim}</dkim>
        <spf>{spf}</spf></policy_evaluated></row>
    <identifiers><header_from>example.com</header_from></identifiers>
    <auth_results>
      <dkim><domain>{dkim_domain}</domain><selector>s1</selector><result>{dkim}</result></dkim>
      <spf><domain>example.com</domain><scope>mfrom</scope><result>{spf}</result></spf>
    </auth_results>
  </record>"""


def parsed(data: bytes) -> AggregateReport:
    result = unpack_report(data)
    assert isinstance(result, AggregateReport), result
    return result


def test_appendix_c_report_is_read():
    report = parsed(report_xml())
    assert (report.org_name, report.report_id, report.domain) == ("Receiver Inc.", "r-1",
                                                                  "example.com")
    assert (report.begin, report.end, report.policy, report.pct) == (1764460800, 1764547199,
                                                                     "reject", 100)
    assert report.messages == 15
    first, second = report.rows
    assert (first.source_ip, first.count, first.dkim, first.spf) == ("192.0.2.10", 12, "pass",
                                                                     "pass")
    assert second.source_ip == "2001:db8::5" and second.disposition == "reject"
    assert second.checks == (AuthCheck("dkim", "evil.example", "fail", selector="s1"),
                             AuthCheck("spf", "example.com", "fail", scope="mfrom"))


def test_dmarcbis_namespace_reads_the_same():
    report = parsed(report_xml(ns="urn:ietf:params:xml:ns:dmarc-2.0"))
    assert report.messages == 15


def test_gzip_and_zip_attachments():
    data = report_xml()
    assert parsed(gzip.compress(data)).messages == 15
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("receiver!example.com!1764460800!1764547199.xml", data)
    assert parsed(buffer.getvalue()).messages == 15


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol9 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
]>
<feedback><report_metadata><org_name>&lol9;</org_name></report_metadata></feedback>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE feedback [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<feedback><report_metadata><org_name>&secret;</org_name></report_metadata></feedback>"""


@pytest.mark.parametrize("bomb", [BILLION_LAUGHS, EXTERNAL_ENTITY, gzip.compress(BILLION_LAUGHS)])
def test_xml_bombs_and_external_entities_are_refused(bomb):
    result = unpack_report(bomb)
    assert isinstance(result, ReportError) and result.reason.startswith("refused XML")


def test_gzip_bomb_stops_at_the_cap(monkeypatch):
    monkeypatch.setattr(reports, "MAX_XML", 1 << 20)
    bomb = gzip.compress(b"<feedback>" + b" " * (8 << 20))
    assert len(bomb) < 64 << 10
    result = unpack_report(bomb)
    assert isinstance(result, ReportError) and "decompresses to more than" in result.reason


def test_zip_bomb_stops_at_the_cap_whatever_the_archive_claims(monkeypatch):
    monkeypatch.setattr(reports, "MAX_XML", 1 << 20)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("r.xml", b" " * (8 << 20))
    result = unpack_report(buffer.getvalue())
    assert isinstance(result, ReportError) and "decompresses to more than" in result.reason


def test_zip_with_two_files_is_refused():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.xml", report_xml())
        archive.writestr("b.xml", report_xml())
    assert unpack_report(buffer.getvalue()) == ReportError(
        "a zip report must hold exactly one file")


def test_oversized_attachment_is_refused(monkeypatch):
    monkeypatch.setattr(reports, "MAX_ATTACHMENT", 100)
    result = unpack_report(report_xml())
    assert isinstance(result, ReportError) and "larger than" in result.reason


def test_too_many_records_are_refused(monkeypatch):
    monkeypatch.setattr(reports, "MAX_RECORDS", 2)
    rows = "".join(record("192.0.2.1", 1, "none", "pass", "pass") for _ in range(3))
    assert unpack_report(report_xml(rows=rows)) == ReportError("more than 2 records")


@pytest.mark.parametrize("data, reason", [
    (b"<feedback><report_metadata>", "not well-formed XML"),
    (b"<html/>", "the document is not a <feedback> report"),
    (b"<feedback/>", "missing <report_metadata> or <policy_published>"),
    (report_xml(org=""), "missing <org_name>"),
    (report_xml(rows=record("999.1.1.1", 1, "none", "pass", "pass")), "is not an IP address"),
    (report_xml(rows=record("192.0.2.1", -5, "none", "pass", "pass")), "not a non-negative"),
    (b"\x1f\x8bgarbage", "bad gzip data"),
    (b"PK\x03\x04garbage", "bad zip data"),
])
def test_malformed_reports_give_an_error_value(data, reason):
    result = unpack_report(data)
    assert isinstance(result, ReportError) and reason in result.reason, result


def report_mail(attachment: bytes, filename: str = "report.xml.gz") -> bytes:
    msg = EmailMessage()
    msg["From"] = "noreply-dmarc@receiver.example"
    msg["To"] = "dmarc@example.com"
    msg["Subject"] = "Report Domain: example.com Submitter: receiver.example Report-ID: r-1"
    msg.set_content("A DMARC aggregate report is attached.")
    msg.add_attachment(attachment, maintype="application", subtype="gzip", filename=filename)
    return msg.as_bytes()


def test_7_2_1_1_report_from_a_mail_attachment():
    [report] = reports_from_message(report_mail(gzip.compress(report_xml())))
    assert isinstance(report, AggregateReport) and report.report_id == "r-1"


def test_mail_without_report_is_an_error_value():
    msg = EmailMessage()
    msg.set_content("hello")
    assert reports_from_message(msg.as_bytes()) == [
        ReportError("the message carries no report attachment")]


def test_store_is_private_keeps_each_report_once_and_sums_per_source(tmp_path: Path):
    store = DmarcReportStore.in_data_dir(tmp_path)
    assert stat.S_IMODE(os.stat(tmp_path / "dmarc-reports.db").st_mode) == 0o600
    assert store.add(parsed(report_xml("r-1")), 1.0)
    assert not store.add(parsed(report_xml("r-1")), 2.0)  # RFC 7489 7.2.1.1: resent
    assert store.add(parsed(report_xml("r-2", org="Other, Ltd.")), 3.0)
    assert store.add(parsed(report_xml("r-3", domain="example.org")), 3.0)
    assert store.report_count() == 3
    first, second = store.sources("Example.COM")
    assert (first.source_ip, first.messages, first.dmarc_pass, first.rejected) == (
        "192.0.2.10", 24, 24, 0)
    assert first.reporters == ("Other, Ltd.", "Receiver Inc.")
    assert (second.source_ip, second.messages, second.dmarc_pass, second.rejected) == (
        "2001:db8::5", 6, 0, 6)
    assert {s.domain for s in store.sources()} == {"example.com", "example.org"}
    store.close()


def write_config(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    path = tmp_path / "mailyard.toml"
    path.write_text(f'hostname = "mx.example.test"\ndata_dir = "{data}"\n')
    return path


def test_cli_report_dmarc_import_and_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    config = write_config(tmp_path)
    assert main(["report", "dmarc", "--config", str(config)]) == 0
    assert "No DMARC aggregate reports." in capsys.readouterr().out
    mail = tmp_path / "report.eml"
    mail.write_bytes(report_mail(gzip.compress(report_xml())))
    xml = tmp_path / "report.xml"
    xml.write_bytes(report_xml("r-2"))
    assert main(["report", "dmarc", "--config", str(config), "--import", str(mail),
                 str(xml)]) == 0
    out = capsys.readouterr().out
    assert f"{mail}: 1 stored, 0 already known" in out
    assert main(["report", "dmarc", "--config", str(config)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["DOMAIN", "SOURCE", "MSGS", "PASS"]
    assert lines[1].split()[:4] == ["example.com", "192.0.2.10", "24", "24"]
    assert main(["report", "dmarc", "--json", "--domain", "example.com",
                 "--config", str(config)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(s["source_ip"], s["messages"], s["rejected"]) for s in data] == [
        ("192.0.2.10", 24, 0), ("2001:db8::5", 6, 6)]


def test_cli_import_of_a_bomb_fails_cleanly(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    config = write_config(tmp_path)
    bomb = tmp_path / "bomb.xml"
    bomb.write_bytes(BILLION_LAUGHS)
    assert main(["report", "dmarc", "--config", str(config), "--import", str(bomb),
                 "--json"]) == 1
    [outcome] = json.loads(capsys.readouterr().out)
    assert outcome["stored"] == 0 and outcome["errors"][0].startswith("refused XML")
    assert main(["report", "dmarc", "--config", str(config), "--import",
                 str(tmp_path / "absent.xml")]) == 1
    assert "absent.xml" in capsys.readouterr().err
