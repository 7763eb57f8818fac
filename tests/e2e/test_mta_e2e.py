"""End to end: the real ``mailyard serve`` on 127.0.0.1, driven by smtplib, swaks and
the CLI, with delivery into Maildir checked on disk."""

from __future__ import annotations

import shutil
import smtplib
import subprocess
import urllib.request
from email.message import EmailMessage

import pytest

from tests.support.certs import unverified_tls
from tests.support.mailyard_server import MailyardServer, free_port
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


def _msg(sender: str, to: str, subject: str, body: str = "hello\n") -> EmailMessage:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = sender, to, subject
    m.set_content(body)
    return m


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    metrics_port = free_port()
    srv = MailyardServer(tmp_path_factory.mktemp("mta"), domains=("example.test",),
                         overrides={"metrics": {"listen": f"127.0.0.1:{metrics_port}"}},
                         workers=2)
    srv.metrics_port = metrics_port
    srv.add_user("alice@example.test", "alice-secret")
    srv.add_user("bob@example.test", "bob-secret")
    srv.cli("alias", "add", "team@example.test", "alice@example.test", "bob@example.test")
    with srv:
        yield srv


def test_port25_delivers_to_maildir(server):
    before = len(server.messages("alice@example.test"))
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        s.send_message(_msg("carol@remote.test", "alice@example.test", "port 25"))
    msgs = server.wait_for_messages("alice@example.test", before + 1)
    assert len(msgs) == before + 1
    latest = [m for m in msgs if b"Subject: port 25" in m][0]
    # RFC 5321 4.4: Return-Path added at final delivery; Delivered-To as Postfix/Dovecot do.
    assert latest.startswith(b"Return-Path: <carol@remote.test>\r\n")
    assert b"Delivered-To: alice@example.test\r\n" in latest
    assert b"Received: from " in latest and b"by mx.example.test" in latest


def test_relay_refused_on_port25(server):
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        s.ehlo("client.test")
        s.mail("carol@remote.test")
        code, text = s.rcpt("someone@elsewhere.test")
    # RFC 5321 3.6.2: no open relay.
    assert code == 554 and text.startswith(b"5.7.1")


def test_unknown_local_user_refused_at_rcpt(server):
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        s.ehlo("client.test")
        s.mail("carol@remote.test")
        code, text = s.rcpt("nobody@example.test")
    assert code == 550 and text.startswith(b"5.1.1")


def test_submission_starttls_auth_delivers(server):
    before = len(server.messages("bob@example.test"))
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=10) as s:
        s.ehlo("laptop.test")
        s.starttls(context=unverified_tls())
        s.ehlo("laptop.test")
        s.login("alice@example.test", "alice-secret")
        s.send_message(_msg("alice@example.test", "bob@example.test", "via 587"))
    msgs = server.wait_for_messages("bob@example.test", before + 1)
    assert any(b"Subject: via 587" in m for m in msgs)
    assert any(b"ESMTPSA" in m for m in msgs if b"via 587" in m)


def test_submission_requires_tls_then_auth(server):
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=10) as s:
        s.ehlo("laptop.test")
        code, text = s.mail("alice@example.test")
        assert code == 530 and text.startswith(b"5.7.0")
        s.starttls(context=unverified_tls())
        s.ehlo("laptop.test")
        code, text = s.mail("alice@example.test")
        assert code == 530 and text.startswith(b"5.7.0")


def test_submission_sender_must_be_owned(server):
    with smtplib.SMTP_SSL("127.0.0.1", server.ports["submissions"], timeout=10,
                          context=unverified_tls()) as s:
        s.login("alice@example.test", "alice-secret")
        code, text = s.mail("bob@example.test")
    assert code == 553 and text.startswith(b"5.7.1")


def test_submissions_wrong_password(server):
    with (
        smtplib.SMTP_SSL("127.0.0.1", server.ports["submissions"], timeout=10,
                         context=unverified_tls()) as s,
        pytest.raises(smtplib.SMTPAuthenticationError) as err,
    ):
        s.login("alice@example.test", "wrong")
    assert err.value.smtp_code == 535


def test_alias_expands_to_every_member(server):
    a0 = len(server.messages("alice@example.test"))
    b0 = len(server.messages("bob@example.test"))
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        s.send_message(_msg("carol@remote.test", "team@example.test", "to the team"))
    assert len(server.wait_for_messages("alice@example.test", a0 + 1)) == a0 + 1
    assert len(server.wait_for_messages("bob@example.test", b0 + 1)) == b0 + 1


def _files_with(server, address: str, token: bytes) -> list:
    return [p for p in server.message_files(address) if token in p.read_bytes()]


def test_maildir_files_have_lf_line_ends_and_parse(server):
    """Stored as maildir(5) and Dovecot want it: LF line ends (mutt would show ^M and
    s-nail would find no end of header with CRLF); S= is the file size and W= the size
    with CRLF line ends, the message as received plus the trace header fields."""
    import email
    import email.policy
    import mailbox

    body = "line one\nline two\n"
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        s.send_message(_msg("carol@remote.test", "bob@example.test", "lf check", body))
    server.wait_queue_empty()
    (path,) = _files_with(server, "bob@example.test", b"Subject: lf check")
    data = path.read_bytes()
    assert b"\r" not in data
    sizes = dict(part.split("=") for part in path.name.split(":")[0].split(",")[1:])
    assert int(sizes["S"]) == len(data)
    assert int(sizes["W"]) == len(data) + data.count(b"\n")
    box = mailbox.Maildir(server.maildir("bob@example.test"), factory=None, create=False)
    (msg,) = [box.get_message(k) for k in box.iterkeys()
              if box.get_message(k)["Subject"] == "lf check"]
    parsed = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
    assert parsed["Delivered-To"] == "bob@example.test"
    assert parsed["From"] == "carol@remote.test"
    assert parsed.get_content() == body
    assert not parsed.defects


def test_one_copy_per_mailbox_after_alias_expansion(server):
    """To: alice plus Bcc: team (team -> alice, bob): alice gets one copy, not two."""
    token = b"dedupe-after-expansion"
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        s.send_message(_msg("carol@remote.test", "alice@example.test", token.decode()),
                       to_addrs=["alice@example.test", "team@example.test"])
    server.wait_queue_empty()
    assert len(_files_with(server, "bob@example.test", token)) == 1
    assert len(_files_with(server, "alice@example.test", token)) == 1


def _bounces_at_postmaster(server, token: bytes) -> list[bytes]:
    return [m for m in server.messages("postmaster@example.test")
            if token in m and b"multipart/report" in m]


def test_cli_send_default_sender_gets_the_bounce(server):
    """The default sender of ``mailyard send`` can receive mail: the OS user has no
    mailbox here, so it is postmaster@, and the bounce lands there."""
    token = b"cli-bounce-token"
    server.cli("send", "--to", "nobody@example.test", "--subject", token.decode(),
               input=b"will bounce\n")
    server.wait_queue_empty()
    [bounce] = wait_for(lambda: _bounces_at_postmaster(server, token))
    assert b"Final-Recipient: rfc822; nobody@example.test" in bounce


def test_bounce_to_a_sender_without_mailbox_goes_to_postmaster(server):
    """A bounce that cannot be delivered (its sender has no mailbox) is not dropped:
    it reaches postmaster as a double bounce."""
    token = b"double-bounce-token"
    server.cli("sendmail", "-i", "-f", "ghost@example.test", "nobody@example.test",
               input=b"Subject: " + token + b"\n\nbody\n")
    server.wait_queue_empty()
    [report] = wait_for(lambda: _bounces_at_postmaster(server, token))
    assert b"Final-Recipient: rfc822; ghost@example.test" in report
    assert b"Final-Recipient: rfc822; nobody@example.test" in report  # the bounce inside


def test_subaddress_goes_to_user(server):
    before = len(server.messages("alice@example.test"))
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        s.send_message(_msg("carol@remote.test", "alice+news@example.test", "tagged"))
    msgs = server.wait_for_messages("alice@example.test", before + 1)
    tagged = [m for m in msgs if b"Subject: tagged" in m]
    assert tagged and b"Delivered-To: alice@example.test" in tagged[0]


def test_postmaster_always_exists(server):
    before = len(server.messages("postmaster@example.test"))
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        s.send_message(_msg("carol@remote.test", "postmaster@example.test", "hi pm"))
    msgs = server.wait_for_messages("postmaster@example.test", before + 1)
    assert any(b"Subject: hi pm" in m for m in msgs)


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks not installed")
def test_swaks_port25(server):
    before = len(server.messages("bob@example.test"))
    res = subprocess.run(
        ["swaks", "--server", "127.0.0.1", "--port", str(server.ports["smtp"]),
         "--from", "dave@remote.test", "--to", "bob@example.test",
         "--header", "Subject: from swaks", "--timeout", "10"],
        capture_output=True, timeout=30)
    assert res.returncode == 0, res.stdout.decode() + res.stderr.decode()
    msgs = server.wait_for_messages("bob@example.test", before + 1)
    assert any(b"Subject: from swaks" in m for m in msgs)


def test_cli_send_and_sendmail(server):
    before = len(server.messages("bob@example.test"))
    alice_before = len(server.messages("alice@example.test"))
    server.cli("send", "--from", "alice@example.test", "--to", "bob@example.test",
               "--subject", "from the cli", input=b"body text\n")
    raw = (b"From: alice@example.test\nTo: bob@example.test\nBcc: alice@example.test\n"
           b"Subject: via sendmail\n\nline one\n")
    server.cli("sendmail", "-t", "-i", "-f", "alice@example.test", input=raw)
    msgs = server.wait_for_messages("bob@example.test", before + 2)
    assert any(b"Subject: from the cli" in m for m in msgs)
    via = [m for m in msgs if b"Subject: via sendmail" in m]
    assert via and b"Bcc:" not in via[0] and b"Message-ID:" in via[0]
    # -t also sent the Bcc copy to alice.
    assert any(b"Subject: via sendmail" in m for m in server.wait_for_messages(
        "alice@example.test", alice_before + 1))


def test_metrics_endpoint(server):
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        s.noop()
    import time
    deadline = time.monotonic() + 15
    body = ""
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics",
                                    timeout=5) as r:
            body = r.read().decode()
        if "mailyard_connections_total" in body:
            break
        time.sleep(0.5)
    assert "mailyard_connections_total" in body
