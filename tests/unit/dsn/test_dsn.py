"""Delivery status notifications: RFC 3464 structure, RFC 3461 NOTIFY/RET/ENVID/ORCPT,
RFC 6533 for UTF-8 addresses, checked with Python's email parser."""

from __future__ import annotations

import email
import io
from email import policy
from email.message import Message

import pytest

from mailyard.envelope import DsnRecipient, Envelope, Recipient
from mailyard.message.dsn import (
    MAX_HEADER_BLOCK,
    DsnAction,
    Notify,
    RecipientReport,
    action_of,
    bounce_envelope_and_content,
    build_report,
    should_notify,
    status_of,
)
from mailyard.proto.smtp.replies import Reply
from mailyard.queue.api import AttemptStatus, DeliveryReply

HOST = "mail.example.org"
NOW = 1_700_000_000.0
ORIGINAL = (b"From: Alice <alice@example.org>\r\nTo: bob@example.net\r\n"
            b"Subject: quarterly figures\r\nMessage-ID: <orig-1@example.org>\r\n\r\n"
            b"Line one.\r\n.leading dot stays\r\nLast line.\r\n")


def envelope(**kw) -> Envelope:
    base = dict(sender="alice@example.org",
                recipients=(Recipient("bob@example.net",
                                      DsnRecipient(("FAILURE",), "rfc822;bob@example.net")),
                            Recipient("carol@example.net"),
                            Recipient("dave@example.net", DsnRecipient(("SUCCESS",)))),
                envid="QQ314159", received_at=NOW - 3600, auth_user="alice@example.org")
    base.update(kw)
    return Envelope(**base)


USER_UNKNOWN = Reply(550, "5.1.1", "<bob@example.net>: User unknown")


def failed(env: Envelope, i: int = 0, reply: Reply = USER_UNKNOWN):
    return RecipientReport.from_reply(env.recipients[i], DsnAction.FAILED, reply,
                                      "mx.example.net", NOW - 10)


def build(env: Envelope, reports, content: bytes | None = ORIGINAL, **kw):
    stream = io.BytesIO(content) if content is not None else None
    return build_report(HOST, env, reports, stream, len(content or b""), NOW - 3600,
                        now=NOW, **kw)


def parse(data: bytes) -> Message:
    return email.message_from_bytes(data, policy=policy.compat32)


def status_blocks(msg: Message) -> list[Message]:
    return msg.get_payload()[1].get_payload()


def test_structure_rfc3464():
    """RFC 3464 2 / RFC 6522 3: multipart/report with text, delivery-status, message."""
    env = envelope()
    dsn_env, data = build(env, [failed(env)])
    msg = parse(data)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    parts = msg.get_payload()
    assert [p.get_content_type() for p in parts] == [
        "text/plain", "message/delivery-status", "message/rfc822"]
    assert msg["From"] == '"Mail Delivery System" <MAILER-DAEMON@mail.example.org>'
    assert msg["To"] == "alice@example.org"
    assert msg["Auto-Submitted"] == "auto-replied"  # RFC 3834 5
    assert email.utils.parsedate_to_datetime(msg["Date"]).timestamp() == NOW
    assert msg["Message-ID"].startswith("<") and msg["Message-ID"].endswith("@mail.example.org>")
    assert "User unknown" in parts[0].get_payload()
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    assert b"\n" not in data.replace(b"\r\n", b"")


def test_dsn_envelope_has_null_sender():
    """RFC 3461 6.2 / RFC 5321 4.5.5: DSNs are sent with MAIL FROM:<>."""
    env = envelope()
    dsn_env, _ = build(env, [failed(env)])
    assert dsn_env.sender == ""
    assert [r.address for r in dsn_env.recipients] == ["alice@example.org"]
    assert dsn_env.received_at == NOW and dsn_env.body_type == "7BIT"
    assert not dsn_env.smtputf8


def test_per_message_and_per_recipient_fields():
    """RFC 3464 2.2 and 2.3; ENVID echoed as Original-Envelope-Id (RFC 3461 4.4),
    ORCPT as Original-Recipient (RFC 3461 4.2)."""
    env = envelope()
    _, data = build(env, [failed(env)], qid="Q7")
    per_message, per_rcpt = status_blocks(parse(data))
    assert per_message["Reporting-MTA"] == "dns; mail.example.org"
    assert per_message["Original-Envelope-Id"] == "QQ314159"
    assert per_message["X-Mailyard-Queue-ID"] == "Q7"
    assert email.utils.parsedate_to_datetime(per_message["Arrival-Date"]).timestamp() == NOW - 3600
    assert per_rcpt["Original-Recipient"] == "rfc822; bob@example.net"
    assert per_rcpt["Final-Recipient"] == "rfc822; bob@example.net"
    assert per_rcpt["Action"] == "failed"
    assert per_rcpt["Status"] == "5.1.1"
    assert per_rcpt["Remote-MTA"] == "dns; mx.example.net"
    assert per_rcpt["Diagnostic-Code"] == "smtp; 550 5.1.1 <bob@example.net>: User unknown"
    assert per_rcpt["Last-Attempt-Date"]
    assert per_rcpt["Will-Retry-Until"] is None


def test_no_envid_no_orcpt_fields():
    env = envelope(envid="")
    _, data = build(env, [failed(env, 1)])
    per_message, per_rcpt = status_blocks(parse(data))
    assert per_message["Original-Envelope-Id"] is None
    assert per_rcpt["Original-Recipient"] is None


def test_mixed_statuses_multiple_recipients():
    """RFC 3464 2.3: one block per recipient, each with its own action and status."""
    env = envelope()
    reports = [
        failed(env),
        RecipientReport.from_reply(env.recipients[1], DsnAction.DELAYED,
                                   Reply(451, "4.4.1", "Connection timed out"),
                                   "mx.example.net", NOW),
        RecipientReport.from_reply(env.recipients[2], DsnAction.DELIVERED,
                                   Reply(250, "2.0.0", "Ok: queued as ABC"), "mx.example.net",
                                   NOW),
    ]
    _, data = build(env, reports, retry_until=NOW + 86400)
    msg = parse(data)
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    blocks = status_blocks(msg)[1:]
    assert [(b["Final-Recipient"], b["Action"], b["Status"]) for b in blocks] == [
        ("rfc822; bob@example.net", "failed", "5.1.1"),
        ("rfc822; carol@example.net", "delayed", "4.4.1"),
        ("rfc822; dave@example.net", "delivered", "2.0.0"),
    ]
    retry_until = email.utils.parsedate_to_datetime(blocks[1]["Will-Retry-Until"])
    assert retry_until.timestamp() == NOW + 86400
    assert blocks[0]["Will-Retry-Until"] is None


def test_delay_only_notice_returns_headers():
    """RFC 3461 4.3: RET=FULL applies to failure notices; a delay notice returns the
    header only."""
    env = envelope(ret="FULL")
    report = RecipientReport.from_reply(env.recipients[1], DsnAction.DELAYED,
                                        Reply(421, "4.7.0", "Try again later"),
                                        "mx.example.net", NOW)
    _, data = build(env, [report], retry_until=NOW + 3600)
    msg = parse(data)
    assert msg["Subject"].startswith("Delayed Mail")
    assert msg.get_payload()[2].get_content_type() == "text/rfc822-headers"


def test_ret_full_returns_whole_message_byte_for_byte():
    """RFC 3461 4.3: RET=FULL -> message/rfc822 with the original content."""
    env = envelope(ret="FULL")
    _, data = build(env, [failed(env)])
    assert ORIGINAL in data
    inner = parse(data).get_payload()[2].get_payload()[0]
    assert inner["Subject"] == "quarterly figures"
    assert ".leading dot stays" in inner.get_payload()


def test_ret_hdrs_returns_headers_only():
    """RFC 3461 4.3: RET=HDRS -> text/rfc822-headers, no body."""
    env = envelope(ret="HDRS")
    _, data = build(env, [failed(env)])
    part = parse(data).get_payload()[2]
    assert part.get_content_type() == "text/rfc822-headers"
    assert "Subject: quarterly figures" in part.get_payload()
    assert b"Line one." not in data


def test_default_ret_returns_small_message_whole_large_one_headers():
    env = envelope()
    _, small = build(env, [failed(env)])
    assert parse(small).get_payload()[2].get_content_type() == "message/rfc822"
    large = ORIGINAL + (b"x" * 78 + b"\r\n") * 3000
    for size in (len(large), 0):  # known size, or found out while reading
        _, data = build_report(HOST, env, [failed(env)], io.BytesIO(large), size, NOW,
                               now=NOW, max_return_size=100_000)
        part = parse(data).get_payload()[2]
        assert part.get_content_type() == "text/rfc822-headers"
        assert b"x" * 78 not in data


def test_large_message_is_not_read_whole():
    """The original is streamed with a cap: a 50 MB message is not read into memory."""

    class Endless(io.RawIOBase):
        read_bytes = 0

        def readable(self) -> bool:
            return True

        def readinto(self, buf) -> int:
            chunk = (b"Subject: x\r\n\r\n" if self.read_bytes == 0 else b"y" * len(buf))[:len(buf)]
            buf[: len(chunk)] = chunk
            self.read_bytes += len(chunk)
            return len(chunk)

    env = envelope(ret="FULL")
    stream = Endless()
    _, data = build_report(HOST, env, [failed(env)], stream, 0, NOW, now=NOW,
                           max_return_size=1000)
    assert stream.read_bytes <= 2 * MAX_HEADER_BLOCK
    assert parse(data).get_payload()[2].get_content_type() == "text/rfc822-headers"


def test_binarymime_original_is_returned_as_headers():
    env = envelope(ret="FULL", body_type="BINARYMIME")
    _, data = build(env, [failed(env)])
    assert parse(data).get_payload()[2].get_content_type() == "text/rfc822-headers"


def test_missing_original():
    env = envelope()
    _, data = build(env, [failed(env)], content=None)
    msg = parse(data)
    assert len(msg.get_payload()) == 2
    assert "not available" in msg.get_payload()[0].get_payload()


def test_eight_bit_original_makes_8bitmime_dsn():
    env = envelope(body_type="8BITMIME")
    original = ORIGINAL.replace(b"Line one.", "Zeile eins: Grüße".encode())
    dsn_env, data = build(env, [failed(env)], content=original)
    assert dsn_env.body_type == "8BITMIME"
    assert "Content-Transfer-Encoding: 8bit" in parse(data).get_payload()[2].as_string()


def test_utf8_addresses_use_rfc6533_forms():
    """RFC 6533 3 and 6: UTF-8 addresses -> utf-8 address type in a
    message/global-delivery-status part; UTF-8 header fields -> message/global."""
    env = Envelope(sender="jöran@bücher.example",
                   recipients=(Recipient("用户@例子.example",
                                         DsnRecipient((), "utf-8;用户@例子.example")),),
                   smtputf8=True, ret="FULL", auth_user="jöran@bücher.example")
    original = "From: jöran@bücher.example\r\nTo: 用户@例子.example\r\nSubject: hé\r\n\r\nhi\r\n"
    dsn_env, data = build(env, [failed(env, 0, Reply(550, "5.1.1", "no such user"))],
                          content=original.encode())
    assert dsn_env.smtputf8 and dsn_env.body_type == "8BITMIME"
    msg = email.message_from_bytes(data, policy=policy.SMTPUTF8)
    assert msg["To"] == "jöran@bücher.example"
    parts = msg.get_payload()
    assert [p.get_content_type() for p in parts] == [
        "text/plain", "message/global-delivery-status", "message/global"]
    status = data.decode("utf-8").split("message/global-delivery-status", 1)[1]
    assert "Final-Recipient: utf-8; 用户@例子.example" in status
    assert "Original-Recipient: utf-8; 用户@例子.example" in status


def test_non_ascii_diagnostic_in_ascii_report_is_replaced():
    env = envelope()
    report = failed(env, 0, Reply(550, "5.7.1", "Refusé\r\nInjected: header"))
    _, data = build(env, [report])
    per_rcpt = status_blocks(parse(data))[1]
    assert per_rcpt["Diagnostic-Code"] == "smtp; 550 5.7.1 Refus? Injected: header"
    assert per_rcpt["Injected"] is None


def test_long_diagnostic_is_folded():
    env = envelope()
    reply = Reply(550, "5.7.1", " ".join(["policy"] * 60))
    _, data = build(env, [failed(env, 0, reply)])
    assert all(len(line) <= 78 for line in data.split(b"\r\n") if line.startswith(b"Diagnostic"))
    assert status_blocks(parse(data))[1]["Diagnostic-Code"].replace("\n ", " ").replace(
        "\r", "").endswith("policy policy")


def test_local_error_uses_x_diagnostic_type():
    env = envelope()
    report = RecipientReport(env.recipients[0], DsnAction.FAILED, "5.0.0",
                             "mailbox path is not writable")
    assert report.diagnostic_field == "X-Mailyard; mailbox path is not writable"
    smtp = RecipientReport.from_reply(env.recipients[0], DsnAction.FAILED, Reply(554, "", "no"))
    assert (smtp.status, smtp.diagnostic_field) == ("5.0.0", "smtp; 554 no")


def test_null_sender_gets_no_dsn():
    """RFC 3461 6.2: never a DSN about a message with a null reverse-path."""
    env = envelope(sender="")
    with pytest.raises(ValueError):
        build(env, [failed(env)])
    assert bounce_envelope_and_content(HOST, env, [failed(env)], io.BytesIO(ORIGINAL),
                                       now=NOW) is None


@pytest.mark.parametrize("notify,kind,expected", [
    ((), "failure", True), ((), "delay", True), ((), "success", False),
    (("NEVER",), "failure", False), (("NEVER",), "delay", False),
    (("SUCCESS",), "success", True), (("SUCCESS",), "failure", False),
    (("FAILURE", "DELAY"), "delay", True), (("failure",), "failure", True),
    (("DELAY",), "failure", False),
])
def test_should_notify(notify, kind, expected):
    """RFC 3461 4.1: NOTIFY=NEVER, or any of SUCCESS/FAILURE/DELAY; absent means
    FAILURE,DELAY."""
    assert should_notify(Recipient("x@example.net", DsnRecipient(notify)), kind) is expected


def test_should_notify_rejects_unknown_kind():
    with pytest.raises(ValueError):
        should_notify(Recipient("x@example.net"), "bounce")


def test_bounce_envelope_and_content_applies_notify():
    env = envelope(recipients=(Recipient("bob@example.net", DsnRecipient(("NEVER",))),
                               Recipient("carol@example.net")))
    reports = [failed(env, 0), failed(env, 1, Reply(550, "5.2.2", "Mailbox full"))]
    result = bounce_envelope_and_content(HOST, env, reports, io.BytesIO(ORIGINAL), now=NOW)
    assert result is not None
    blocks = status_blocks(parse(result[1]))[1:]
    assert [b["Final-Recipient"] for b in blocks] == ["rfc822; carol@example.net"]
    assert bounce_envelope_and_content(HOST, env, reports[:1], io.BytesIO(ORIGINAL),
                                       now=NOW) is None


def test_from_attempt_maps_attempt_outcomes():
    """One table from attempt outcomes to DSN actions (RFC 3464 2.3.3)."""
    r = Recipient("bob@example.net")
    failed_ = RecipientReport.from_attempt(r, AttemptStatus.FAILED,
                                           DeliveryReply(Reply(550, "5.1.1", "x")))
    assert (failed_.action, failed_.action.notify_kind) == (DsnAction.FAILED, Notify.FAILURE)
    delayed = RecipientReport.from_attempt(r, AttemptStatus.DEFERRED,
                                           DeliveryReply(Reply(451, "4.4.1", "x"), "mx"), "mx", NOW)
    assert (delayed.action, delayed.remote_mta, delayed.last_attempt) == \
        (DsnAction.DELAYED, "mx", NOW)
    assert delayed.action.notify_kind is Notify.DELAY
    ok = RecipientReport.from_attempt(r, AttemptStatus.DELIVERED,
                                      DeliveryReply(Reply(250, "", "ok")))
    assert (ok.action, ok.status) == (DsnAction.DELIVERED, "2.0.0")
    relayed = RecipientReport.from_attempt(r, AttemptStatus.DELIVERED,
                                           DeliveryReply(Reply(250, "2.0.0", "ok")), relayed=True)
    assert relayed.action is DsnAction.RELAYED and relayed.action.notify_kind is Notify.SUCCESS
    with pytest.raises(ValueError):
        action_of(AttemptStatus.POSTPONED)


@pytest.mark.parametrize("reply,status", [
    (Reply(550, "5.1.1", "User unknown"), "5.1.1"),
    (Reply(550, "5.7.26", "Unauthenticated"), "5.7.26"),
    (Reply(554, "", "Transaction failed"), "5.0.0"),
    (Reply(421, "", "Service not available"), "4.0.0"),
    (Reply(250, "", "ok"), "2.0.0"),
])
def test_status_of(reply, status):
    """RFC 3463 2: status from the enhanced code, else the reply class."""
    assert status_of(reply) == status


def test_unauthenticated_sender_gets_headers_only_even_with_ret_full():
    """Backscatter: mail that came in without authentication may carry a forged
    sender, so its failure notice returns the header only (RET=HDRS semantics)."""
    env = envelope(auth_user="", ret="FULL")
    _, data = build(env, [failed(env)])
    part = parse(data).get_payload()[2]
    assert part.get_content_type() == "text/rfc822-headers"
    assert "Subject: quarterly figures" in part.get_payload()
    assert b"Line one." not in data


def test_loop_failure_returns_headers_only_to_authenticated_sender():
    env = envelope(ret="FULL")
    loop = Reply(554, "5.4.6", "Mail forwarding loop for bob@example.net")
    _, data = build(env, [failed(env, 0, loop)])
    assert parse(data).get_payload()[2].get_content_type() == "text/rfc822-headers"
    assert b"Line one." not in data
    _, other = build(env, [failed(env)])
    assert b"Line one." in other  # other failures: whole, as asked
