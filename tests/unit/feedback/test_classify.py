"""Reports as they arrive: RFC 3464 DSNs, RFC 5965 ARF complaints, the common text
bounce formats, and auto-replies that must not count as bounces (RFC 3834)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from mailyard.envelope import Envelope, Recipient
from mailyard.feedback.classify import classify, locate
from mailyard.feedback.model import ReportFormat, Severity, Verdict
from mailyard.feedback.verp import CampaignRecipient, verp_address, verp_key
from mailyard.message.dsn import DsnAction, RecipientReport, build_report

SAMPLES = Path(__file__).parent / "samples"
KEY = verp_key(b"k" * 32)
TARGET = CampaignRecipient(42, 1001)
VERP = verp_address(TARGET, KEY, "lists.example.org")
TOKEN = VERP.partition("+")[2].partition("@")[0]


def sample(name: str, crlf: bool = False) -> bytes:
    data = (SAMPLES / name).read_bytes().replace(b"TOKEN", TOKEN.encode())
    return data.replace(b"\n", b"\r\n") if crlf else data


H, S = Verdict.HARD_BOUNCE, Verdict.SOFT_BOUNCE


@pytest.mark.parametrize("crlf", [False, True])
@pytest.mark.parametrize("name,verdict,fmt,address,status,action", [
    # RFC 3464 appendix: "failed" after a timeout is a 4.0.0: soft
    ("rfc3464-simple.eml", S, ReportFormat.DSN, "louisl@larry.slip.umd.edu", "4.0.0",
     "failed"),
    # RFC 3464 as Postfix writes it: text, delivery-status, text/rfc822-headers
    ("postfix-dsn.eml", H, ReportFormat.DSN, "ghost@example.net", "5.1.1", "failed"),
    ("qmail.eml", H, ReportFormat.QMAIL, "nobody@example.net", "5.1.1", "failed"),
    ("exim.eml", H, ReportFormat.EXIM, "gone@example.com", "5.1.1", "failed"),
    ("exim-delay.eml", S, ReportFormat.EXIM, "slow@example.com", "4.7.1", "delayed"),
    ("postfix-plain.eml", S, ReportFormat.POSTFIX, "full@example.net", "5.2.2", "failed"),
    ("postfix-delay.eml", S, ReportFormat.POSTFIX, "later@example.net", None, "delayed"),
    ("sendmail.eml", H, ReportFormat.SENDMAIL, "student@example.edu", "5.1.1", "failed"),
    ("exchange-2010.eml", H, ReportFormat.EXCHANGE, "left.company@corp.example.com",
     "5.1.1", "failed"),
    ("exchange-2003.eml", S, ReportFormat.EXCHANGE, "quota.user@old.example.com", "5.2.2",
     "failed"),
    ("office365.eml", H, ReportFormat.EXCHANGE, "nobody@contoso.example", "5.1.10",
     "failed"),
    ("gmail-text.eml", H, ReportFormat.GMAIL, "missing@example.org", "5.1.1", "failed"),
    ("gmail-new.eml", S, ReportFormat.GMAIL, "waiting@example.org", None, "delayed"),
    ("generic.eml", H, ReportFormat.GENERIC, "olduser@example.info", "5.1.1", "failed"),
])
def test_single_recipient_bounces(name: str, verdict: Verdict, fmt: ReportFormat,
                                  address: str, status: str | None, action: str,
                                  crlf: bool) -> None:
    result = classify(sample(name, crlf))
    assert (result.verdict, result.format) == (verdict, fmt)
    assert len(result.recipients) == 1
    rcpt = result.recipients[0]
    assert (rcpt.address, rcpt.status, rcpt.action) == (address, status, action)
    assert locate(result, KEY, VERP) == TARGET


@pytest.mark.parametrize("name", ["rfc3464-simple.eml", "postfix-dsn.eml", "qmail.eml", "exim.eml",
                                  "sendmail.eml", "exchange-2010.eml", "gmail-text.eml"])
def test_returned_original_maps_back_without_the_envelope(name: str) -> None:
    result = classify(sample(name))
    assert result.original is not None
    assert result.original.message_id and result.original.message_id.startswith("<")
    assert locate(result, KEY, None) == TARGET
    assert locate(result, KEY, "someone@example.org") == TARGET


def test_rfc3464_multi_recipient_appendix_example() -> None:
    # RFC 3464 appendix: failed 5.0.0, delayed 4.0.0, failed 5.0.0 "user unknown"
    result = classify(sample("rfc3464-multi.eml"))
    assert result.verdict is Verdict.HARD_BOUNCE
    assert [(r.address, r.action, r.status, r.severity) for r in result.recipients] == [
        ("arathib@vnet.ibm.com", "failed", "5.0.0", Severity.HARD),
        ("johnh@hpnjld.njd.hp.com", "delayed", "4.0.0", Severity.SOFT),
        ("wsnell@sdcc13.ucsd.edu", "failed", "5.0.0", Severity.HARD),
    ]
    first = result.recipients[0]
    assert first.remote_mta == "vnet.ibm.com"  # RFC 3464 2.3.5
    assert first.diagnostic == "550 'arathib@vnet.IBM.COM' is not a registered gateway user"
    assert result.original is None  # the appendix has no real message there


def test_rfc5965_appendix_b_example() -> None:
    result = classify(sample("rfc5965-abuse.eml"))
    assert (result.verdict, result.format) == (Verdict.COMPLAINT, ReportFormat.ARF)
    c = result.complaint
    assert c is not None
    assert c.feedback_type == "abuse"          # RFC 5965 3.1
    assert c.user_agent == "SomeGenerator/1.0"
    assert c.original_mail_from == "somespammer@example.net"   # 3.2
    assert c.original_rcpt_to == ("user@example.com",)
    assert c.source_ip == "192.0.2.1"
    assert c.arrival_date == "Thu, 8 Mar 2005 14:00:00 EDT"
    assert c.reported_domain == ("example.net",)
    assert result.original is not None
    assert result.original.subject == "Earn money"
    assert result.original.message_id == "8787KJKJ3K4J3K4J3K4J3.mail@example.net"
    assert locate(result, KEY) is None


def arf(feedback_type: str, original_part: str) -> bytes:
    return (
        "From: fbl@isp.example\r\nTo: abuse@lists.example.org\r\nSubject: complaint\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type="feedback-report"; boundary="b"\r\n'
        "\r\n--b\r\nContent-Type: text/plain\r\n\r\nA complaint.\r\n"
        "--b\r\nContent-Type: message/feedback-report\r\n\r\n"
        f"Feedback-Type: {feedback_type}\r\nUser-Agent: FBL/2.0\r\nVersion: 1\r\n"
        "Original-Rcpt-To: <redacted@isp.example>\r\n"
        "Original-Rcpt-To: second@isp.example\r\n"
        "\r\n--b\r\n" + original_part + "--b--\r\n").encode()


ORIGINAL_HEADERS = (f"Return-Path: <{VERP}>\r\nFrom: news@lists.example.org\r\n"
                    "To: xxxxxxxx@isp.example\r\nMessage-ID: <nov-20@lists.example.org>\r\n"
                    "List-Id: News <news.lists.example.org>\r\n"
                    "Feedback-ID: 42:1001:news:mailyard\r\nSubject: =?utf-8?q?N=C3=BCws?=\r\n")


@pytest.mark.parametrize("part", [
    "Content-Type: message/rfc822\r\n\r\n" + ORIGINAL_HEADERS + "\r\nBody.\r\n",
    "Content-Type: text/rfc822-headers\r\n\r\n" + ORIGINAL_HEADERS + "\r\n",
])
def test_redacted_complaint_maps_back_through_the_original(part: str) -> None:
    # RFC 5965 2 (third part: the message or its header) and 3.2 (repeated Rcpt-To)
    result = classify(arf("abuse", part))
    assert result.verdict is Verdict.COMPLAINT
    assert result.complaint is not None
    assert result.complaint.original_rcpt_to == ("redacted@isp.example", "second@isp.example")
    original = result.original
    assert original is not None
    assert original.list_id == "News <news.lists.example.org>"
    assert original.feedback_id == "42:1001:news:mailyard"
    assert original.message_id == "<nov-20@lists.example.org>"
    assert original.subject == "Nüws"
    assert locate(result, KEY, "abuse@lists.example.org") == TARGET


@pytest.mark.parametrize("kind,verdict", [
    ("abuse", Verdict.COMPLAINT), ("fraud", Verdict.COMPLAINT), ("virus", Verdict.COMPLAINT),
    ("other", Verdict.COMPLAINT), ("something-new", Verdict.COMPLAINT),  # RFC 5965 3.1
    ("not-spam", Verdict.NOT_BOUNCE), ("auth-failure", Verdict.NOT_BOUNCE),  # RFC 6591
    ("ABUSE", Verdict.COMPLAINT),
])
def test_feedback_types(kind: str, verdict: Verdict) -> None:
    result = classify(arf(kind, "Content-Type: text/rfc822-headers\r\n\r\n"
                                + ORIGINAL_HEADERS + "\r\n"))
    assert result.verdict is verdict
    assert result.complaint is not None and result.complaint.feedback_type == kind.lower()


def test_dsn_written_by_mailyard_reads_back() -> None:
    envelope = Envelope(sender=VERP, recipients=(Recipient("bob@example.net"),
                                                 Recipient("carol@example.net")))
    original = (f"Return-Path: <{VERP}>\r\nFrom: news@lists.example.org\r\n"
                "To: bob@example.net\r\nMessage-ID: <x-1@lists.example.org>\r\n"
                "Subject: hi\r\n\r\nBody\r\n").encode()
    reports = [
        RecipientReport(Recipient("bob@example.net"), DsnAction.FAILED, "5.1.1",
                        "550 5.1.1 <bob@example.net>: user unknown", "mx.example.net",
                        diagnostic_type="smtp"),
        RecipientReport(Recipient("carol@example.net"), DsnAction.DELAYED, "4.4.1",
                        "connection timed out", diagnostic_type="smtp"),
    ]
    _env, data = build_report("mail.lists.example.org", envelope, reports,
                              io.BytesIO(original), len(original), now=1_700_000_000.0)
    result = classify(data)
    assert (result.verdict, result.format) == (Verdict.HARD_BOUNCE, ReportFormat.DSN)
    assert [(r.address, r.severity, r.status) for r in result.recipients] == [
        ("bob@example.net", Severity.HARD, "5.1.1"),
        ("carol@example.net", Severity.SOFT, "4.4.1")]
    assert result.recipients[0].remote_mta == "mx.example.net"
    assert result.original is not None
    assert result.original.message_id == "<x-1@lists.example.org>"
    assert locate(result, KEY) == TARGET


def dsn(recipient_block: str, report_type: str = "message/delivery-status") -> bytes:
    return ("From: MAILER-DAEMON@mx.example.net\r\nTo: x@example.org\r\n"
            "Subject: Delivery Status Notification\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n'
            "\r\n--B\r\nContent-Type: text/plain\r\n\r\nSee below.\r\n"
            f"--B\r\nContent-Type: {report_type}\r\n\r\n"
            "Reporting-MTA: dns; mx.example.net\r\n\r\n" + recipient_block +
            "\r\n--B--\r\n").encode()


@pytest.mark.parametrize("block,verdict,severity", [
    # RFC 3464 2.3.3: delivered/relayed/expanded are not bounces
    ("Final-Recipient: rfc822; a@example.org\r\nAction: delivered\r\nStatus: 2.0.0\r\n",
     Verdict.NOT_BOUNCE, Severity.NONE),
    ("Final-Recipient: rfc822; a@example.org\r\nAction: relayed\r\nStatus: 2.0.0\r\n",
     Verdict.NOT_BOUNCE, Severity.NONE),
    ("Final-Recipient: rfc822; a@example.org\r\nAction: expanded\r\nStatus: 2.0.0\r\n",
     Verdict.NOT_BOUNCE, Severity.NONE),
    ("Final-Recipient: rfc822; a@example.org\r\nAction: delayed\r\nStatus: 4.4.7\r\n"
     "Will-Retry-Until: Tue, 4 Nov 2025 10:00:00 +0000\r\n", Verdict.SOFT_BOUNCE,
     Severity.SOFT),
    # no Status field: the code comes from Diagnostic-Code (2.3.6)
    ("Final-Recipient: rfc822; a@example.org\r\nAction: failed\r\n"
     "Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n", Verdict.HARD_BOUNCE, Severity.HARD),
    # a lying "failed 2.0.0" is not taken for success
    ("Final-Recipient: rfc822; a@example.org\r\nAction: failed\r\nStatus: 2.0.0\r\n",
     Verdict.SOFT_BOUNCE, Severity.SOFT),
    # RFC 3464 2.3.3 allows comments after the action; case-insensitive
    ("Final-Recipient: RFC822; <a@example.org>\r\nAction: FAILED (bad)\r\n"
     "Status: 5.1.2\r\n", Verdict.HARD_BOUNCE, Severity.HARD),
])
def test_dsn_actions(block: str, verdict: Verdict, severity: Severity) -> None:
    result = classify(dsn(block))
    assert result.verdict is verdict
    assert result.recipients[0].severity is severity
    assert result.recipients[0].address == "a@example.org"


def test_global_delivery_status_rfc6533() -> None:
    block = ("Original-Recipient: utf-8; jörg@example.de\r\n"
             "Final-Recipient: utf-8; jörg@example.de\r\nAction: failed\r\nStatus: 5.1.1\r\n")
    result = classify(dsn(block, "message/global-delivery-status"))
    assert result.verdict is Verdict.HARD_BOUNCE
    assert result.recipients[0].address == "jörg@example.de"


def test_original_recipient_when_final_is_missing() -> None:
    result = classify(dsn("Original-Recipient: rfc822; o@example.org\r\nAction: failed\r\n"
                          "Status: 5.1.1\r\n"))
    assert result.recipients[0].address == "o@example.org"


@pytest.mark.parametrize("name", ["ooo-rfc3834.eml", "ooo-xautoreply.eml",
                                  "ooo-precedence.eml", "ooo-subject.eml"])
def test_auto_replies_are_not_bounces(name: str) -> None:
    # RFC 3834 5: Auto-Submitted; and the older X-Autoreply / Precedence / subject signs
    result = classify(sample(name))
    assert result.verdict is Verdict.AUTO_REPLY
    assert result.recipients == ()


def test_a_person_replying_is_not_a_bounce() -> None:
    result = classify(sample("reply.eml"))
    assert (result.verdict, result.format) == (Verdict.NOT_BOUNCE, ReportFormat.NONE)


def test_exim_failed_recipients_header_when_text_names_none() -> None:
    raw = (b"From: Mail Delivery System <Mailer-Daemon@mx.example.com>\r\n"
           b"X-Failed-Recipients: hidden@example.com\r\nSubject: Mail delivery failed\r\n\r\n"
           b"This message was created automatically by mail delivery software.\r\n\r\n"
           b"A message that you sent could not be delivered. 550 5.1.1 unknown user\r\n")
    result = classify(raw)
    assert result.verdict is Verdict.HARD_BOUNCE
    assert result.recipients[0].address == "hidden@example.com"


def test_bounce_to_own_address_is_not_taken_for_the_recipient() -> None:
    raw = (f"From: MAILER-DAEMON@mx.example.net\r\nTo: {VERP}\r\n"
           "Subject: Undelivered Mail Returned to Sender\r\n\r\n"
           f"{VERP}\r\n  is where this was from.\r\n\r\n"
           "The following recipient failed:\r\n\r\n"
           "<real@example.net>: 550 5.1.1 user unknown\r\n").encode()
    result = classify(raw)
    assert [r.address for r in result.recipients] == ["real@example.net"]


def test_json_form() -> None:
    data = classify(sample("exim.eml")).to_json()
    assert data["verdict"] == "hard-bounce" and data["format"] == "exim"
    assert data["recipients"] == [{
        "address": "gone@example.com", "severity": "hard", "action": "failed",
        "status": "5.1.1",
        "diagnostic": "host mx1.example.com [192.0.2.25] SMTP error from remote mail "
                      "server after RCPT TO:<gone@example.com>: 550 5.1.1 "
                      "<gone@example.com>: Recipient address rejected: User unknown",
        "original_recipient": None, "remote_mta": None}]


@pytest.mark.parametrize("cte,body", [
    ("base64", "RmluYWwtUmVjaXBpZW50OiByZmM4MjI7IGFAZXhhbXBsZS5vcmcNCkFjdGlvbjogZmFpbGVk\r\n"
               "DQpTdGF0dXM6IDUuMS4xDQo=\r\n"),
    ("quoted-printable", "Final-Recipient: rfc822; a@example.org=0D=0A"
                         "Action: failed=0D=0AStatus: 5.1.1=0D=0A\r\n"),
])
def test_encoded_status_part_is_decoded(cte: str, body: str) -> None:
    # RFC 2046 5.2 allows only 7bit/8bit/binary for message/*; some systems encode anyway
    raw = ("From: MAILER-DAEMON@mx.example.net\r\nMIME-Version: 1.0\r\n"
           'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n'
           "\r\n--B\r\nContent-Type: message/delivery-status\r\n"
           f"Content-Transfer-Encoding: {cte}\r\n\r\n{body}--B--\r\n").encode()
    result = classify(raw)
    assert (result.verdict, result.format) == (Verdict.HARD_BOUNCE, ReportFormat.DSN)
    assert result.recipients[0].address == "a@example.org"


def test_unreadable_bounce_from_mailer_daemon_is_soft_without_address() -> None:
    raw = (b"From: Mail Delivery Subsystem <MAILER-DAEMON@mx.example.net>\r\n"
           b"Subject: Returned mail\r\n\r\nSomething went wrong.\r\n")
    result = classify(raw)
    assert (result.verdict, result.format) == (Verdict.SOFT_BOUNCE, ReportFormat.GENERIC)
    assert result.recipients[0].address is None


def test_unparseable_bytes() -> None:
    assert classify(b"\r\n").verdict is Verdict.NOT_BOUNCE


def test_unknown_language_bounce_with_auto_submitted_is_still_a_bounce() -> None:
    # RFC 3834 5: bounces carry Auto-Submitted too; sender and subject say bounce
    raw = (b"From: MAILER-DAEMON@mail.example.de (Mail-Zustellsystem)\r\n"
           b"Subject: Unzustellbare Nachricht\r\nAuto-Submitted: auto-replied\r\n"
           b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
           b"Dies ist das Mailsystem auf dem Rechner mail.example.de.\r\n\r\n"
           b"Ihre Nachricht konnte nicht zugestellt werden:\r\n\r\n"
           b"<weg@example.de>: host mx.example.de said: 550 5.1.1 Benutzer unbekannt\r\n"
           )
    result = classify(raw)
    assert (result.verdict, result.format) == (Verdict.HARD_BOUNCE, ReportFormat.GENERIC)
    assert result.recipients[0].address == "weg@example.de"
