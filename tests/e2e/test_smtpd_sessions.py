"""smtpd end to end with smtplib: MX delivery, submission with STARTTLS and AUTH,
implicit TLS, CHUNKING, DSN, SMTPUTF8, logging and metrics."""

from __future__ import annotations

import logging
import smtplib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support.smtpd_fakes import RawClient, RunningSmtpd, client_tls_context  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

MESSAGE = b"From: a@client.test\r\nTo: user@mx.test\r\nSubject: hi\r\n\r\nHello.\r\n"


@pytest.fixture(params=["asyncio", "uvloop"])
def smtpd(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningSmtpd]:
    with RunningSmtpd(tmp_path, uvloop=request.param == "uvloop") as server:
        yield server


def test_mx_accepts_local_recipient(smtpd: RunningSmtpd) -> None:
    """RFC 5321 3.3: a whole transaction over port 25; the message is queued with a
    Received field first (RFC 5321 4.4) and on_queued is called with the queue id."""
    with smtplib.SMTP("127.0.0.1", smtpd.ports["smtp"], timeout=10) as client:
        client.ehlo("client.test")
        assert client.has_extn("pipelining") and client.has_extn("chunking")
        assert client.has_extn("starttls") and not client.has_extn("auth")
        refused = client.sendmail("a@client.test", ["user@mx.test"], MESSAGE)
        assert refused == {}
    assert len(smtpd.spool.messages) == 1
    qid, (envelope, content) = next(iter(smtpd.spool.messages.items()))
    assert smtpd.queued == [qid]
    assert envelope.sender == "a@client.test"
    assert [r.address for r in envelope.recipients] == ["user@mx.test"]
    assert envelope.client_ip == "127.0.0.1" and envelope.client_helo == "client.test"
    head, _, rest = content.partition(b"\r\n\tby ")
    assert head.startswith(b"Received: from client.test ([127.0.0.1])")
    assert rest.startswith(b"mx.test (Mailyard) with ESMTP id " + qid.encode())
    assert b"for <user@mx.test>;" in content
    assert content.endswith(MESSAGE)
    assert smtpd.metrics.get("messages_accepted_total") == 1
    assert smtpd.metrics.get("connections_total", listener="smtp") == 1


def test_relay_denied_and_unknown_user(smtpd: RunningSmtpd) -> None:
    """Port 25 takes mail for local recipients only: 554 5.7.1 / 550 5.1.1 at RCPT."""
    with smtplib.SMTP("127.0.0.1", smtpd.ports["smtp"], timeout=10) as client:
        client.ehlo("client.test")
        client.mail("a@client.test")
        code, text = client.rcpt("someone@elsewhere.example")
        assert (code, text[:5]) == (554, b"5.7.1")
        code, text = client.rcpt("nobody@mx.test")
        assert (code, text[:5]) == (550, b"5.1.1")
        code, _ = client.rcpt("Postmaster")
        assert code == 250
        code, _ = client.rcpt("user+tag@MX.TEST")
        assert code == 250
        code, _ = client.data(MESSAGE)
        assert code == 250
    envelope, _ = next(iter(smtpd.spool.messages.values()))
    assert [r.address for r in envelope.recipients] == ["Postmaster@mx.test", "user+tag@MX.TEST"]


def test_submission_requires_tls_then_auth(smtpd: RunningSmtpd) -> None:
    """RFC 6409 4.3 / RFC 3207: on 587, MAIL before STARTTLS is 530 5.7.0; after
    STARTTLS without AUTH it is 530 5.7.0 (auth required); AUTH over plaintext is
    538 5.7.11 (RFC 4954 4)."""
    with smtplib.SMTP("127.0.0.1", smtpd.ports["submission"], timeout=10) as client:
        client.ehlo("client.test")
        assert not client.has_extn("auth")
        code, text = client.mail("user@mx.test")
        assert (code, text) == (530, b"5.7.0 Must issue a STARTTLS command first")
        code, text = client.docmd("AUTH", "PLAIN AHVzZXJAbXgudGVzdABzZWNyZXQ=")
        assert (code, text[:6]) == (538, b"5.7.11")
        client.rset()
        client.starttls(context=client_tls_context())
        client.ehlo("client.test")
        assert "PLAIN" in client.esmtp_features["auth"]
        assert "SCRAM-SHA-256" in client.esmtp_features["auth"]
        code, text = client.mail("user@mx.test")
        assert (code, text[:5]) == (530, b"5.7.0") and b"Authentication required" in text
        client.login("user@mx.test", "secret")
        refused = client.sendmail("user@mx.test", ["someone@elsewhere.example"], MESSAGE)
        assert refused == {}
    envelope, content = next(iter(smtpd.spool.messages.values()))
    assert envelope.auth_user == "user@mx.test"
    assert b"with ESMTPSA id" in content and b"(using TLSv1." in content


def test_submission_sender_ownership(smtpd: RunningSmtpd) -> None:
    """An authenticated user may only use a MAIL FROM it owns: 553 5.7.1."""
    with smtplib.SMTP_SSL("127.0.0.1", smtpd.ports["submissions"], timeout=10,
                          context=client_tls_context()) as client:
        client.login("user@mx.test", "secret")
        code, text = client.mail("other@mx.test")
        assert (code, text[:5]) == (553, b"5.7.1")
        code, _ = client.mail("user+news@mx.test")
        assert code == 250


def test_auth_failures_then_421(tmp_path: Path) -> None:
    """535 5.7.8 for bad credentials; at smtpd.max_auth_failures, 421 4.7.0 and close."""
    with RunningSmtpd(tmp_path, max_auth_failures=2) as smtpd:
        with RawClient(smtpd.ports["submissions"], tls=True) as raw:
            assert raw.code() == "220"
            assert raw.command(b"EHLO c") == "250"
            bad = b"AUTH PLAIN AHVzZXJAbXgudGVzdAB3cm9uZw=="
            assert raw.command(bad) == "535 5.7.8"
            assert raw.command(bad) == "535 5.7.8"
            assert raw.code() == "421 4.7.0"
            assert raw.closed()
        assert smtpd.metrics.get("auth_failures_total") == 2


def test_auth_login_and_scram(smtpd: RunningSmtpd) -> None:
    """LOGIN via smtplib; SCRAM-SHA-256 (RFC 7677) by hand."""
    import base64

    from mailyard.sasl.scram import scram_client_final

    with smtplib.SMTP_SSL("127.0.0.1", smtpd.ports["submissions"], timeout=10,
                          context=client_tls_context()) as client:
        client.ehlo("c")
        client.user, client.password = "user@mx.test", "secret"
        code, _ = client.auth("LOGIN", client.auth_login)
        assert code == 235
    with RawClient(smtpd.ports["submissions"], tls=True) as raw:
        raw.code()
        raw.command(b"EHLO c")
        bare = "n=user@mx.test,r=abcdefgh"
        raw.send(b"AUTH SCRAM-SHA-256 " + base64.b64encode(("n,," + bare).encode()) + b"\r\n")
        challenge = raw.reply()
        assert challenge.startswith(b"334 ")
        server_first = base64.b64decode(challenge[4:]).decode()
        final, expected = scram_client_final("secret", bare, server_first)
        raw.send(base64.b64encode(final.encode()) + b"\r\n")
        server_final = raw.reply()
        assert base64.b64decode(server_final[4:]).decode() == expected
        assert raw.command(b"") == "235 2.7.0"


def test_chunking_with_smtplib_style_bdat(smtpd: RunningSmtpd) -> None:
    """RFC 3030: BDAT chunks, pipelined, then BDAT LAST."""
    with RawClient(smtpd.ports["smtp"]) as raw:
        raw.code()
        raw.send(b"EHLO c\r\nMAIL FROM:<a@c.test> BODY=8BITMIME\r\nRCPT TO:<user@mx.test>\r\n"
                 b"BDAT 10\r\n0123456789BDAT 5 LAST\r\nabcde")
        assert [raw.code() for _ in range(5)] == ["250", "250 2.1.0", "250 2.1.5", "250 2.0.0",
                                                   "250 2.0.0"]
        assert raw.command(b"QUIT") == "221 2.0.0"
    content = next(iter(smtpd.spool.messages.values()))[1]
    assert content.endswith(b"\r\n0123456789abcde")


def test_dsn_and_smtputf8_reach_envelope(smtpd: RunningSmtpd) -> None:
    """RFC 3461 / RFC 6531: parameters are stored in the Envelope."""
    with smtplib.SMTP("127.0.0.1", smtpd.ports["smtp"], timeout=10) as client:
        client.ehlo("c")
        code, _ = client.mail("ä@client.test", ["SMTPUTF8", "RET=HDRS", "ENVID=x+2By"])
        assert code == 250
        code, _ = client.rcpt("user@mx.test", ["NOTIFY=FAILURE,DELAY",
                                               "ORCPT=rfc822;user+40mx.test"])
        assert code == 250
        assert client.data(MESSAGE)[0] == 250
    envelope, content = next(iter(smtpd.spool.messages.values()))
    assert envelope.smtputf8 and envelope.sender == "ä@client.test"
    assert (envelope.ret, envelope.envid) == ("HDRS", "x+y")
    assert envelope.recipients[0].dsn.notify == ("FAILURE", "DELAY")
    assert envelope.recipients[0].dsn.orcpt == "rfc822;user@mx.test"
    assert b"with UTF8SMTP id" in content


def test_transaction_log_lines(smtpd: RunningSmtpd, caplog: pytest.LogCaptureFixture) -> None:
    """One 'smtp transaction' line per transaction, rejected ones included."""
    caplog.set_level(logging.INFO, logger="mailyard.smtpd")
    with smtplib.SMTP("127.0.0.1", smtpd.ports["smtp"], timeout=10) as client:
        client.ehlo("c")
        client.mail("a@c.test")
        client.rcpt("x@elsewhere.example")
        client.rset()
        client.sendmail("a@c.test", ["user@mx.test"], MESSAGE)
    records = [r for r in caplog.records if r.getMessage() == "smtp transaction"]
    fields = [r.fields for r in records]  # type: ignore[attr-defined]
    assert [f["result"] for f in fields] == ["rejected", "queued"]
    assert fields[0]["reply"].startswith("554 5.7.1")
    assert fields[1]["qid"] and fields[1]["to"] == "user@mx.test" and fields[1]["size"] > 0
    assert smtpd.metrics.get("messages_rejected_total", reason="relay_denied") == 1


def test_vrfy_and_help(smtpd: RunningSmtpd) -> None:
    """RFC 5321 3.5.3: VRFY gets 252 by default."""
    with smtplib.SMTP("127.0.0.1", smtpd.ports["smtp"], timeout=10) as client:
        assert client.verify("user@mx.test")[0] == 252
        assert client.docmd("HELP")[0] == 214


def test_vrfy_answered_when_enabled(tmp_path: Path) -> None:
    """smtpd.vrfy = true: VRFY answers from the directory for local domains
    (RFC 5321 3.5.3: 250 known, 550 unknown, 252 when it cannot tell)."""
    with (
        RunningSmtpd(tmp_path, vrfy=True) as smtpd,
        smtplib.SMTP("127.0.0.1", smtpd.ports["smtp"], timeout=10) as client,
    ):
        assert client.verify("user@mx.test")[0] == 250
        assert client.verify("<nobody@mx.test>")[0] == 550
        assert client.verify("someone@example.org")[0] == 252
