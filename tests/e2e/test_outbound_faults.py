"""Outbound delivery under faults, end to end.

The real ``mailyard serve`` resolves remote domains through a test DNS server whose MX
records point at hosts on distinct loopback addresses, where Postfix's ``smtp-sink``
(or, for faults smtp-sink cannot make, a scripted fake MX) listens on the port set as
``delivery.smtp_port``.  Mail is submitted on port 587 or with ``mailyard sendmail``.
Retries are quick (``retry_schedule = [1, 2]``) and timeouts short, so each test
takes seconds.

Zones (tests/support/outbound.py ``remote_zones``): ``remote.test`` has MX 10
``mx1`` (127.0.0.2) and MX 20 ``mx2`` (127.0.0.3); ``other.test`` has one MX
(127.0.0.4); ``nullmx.test`` has a Null MX.
"""

from __future__ import annotations

import re
import shutil
import smtplib

import pytest

from tests.support.dnsserver import DnsTestServer
from tests.support.fake_mx import FakeMx
from tests.support.mailyard_server import MailyardServer, free_port
from tests.support.outbound import (
    SENDER,
    DumpSink,
    bounces,
    make_message,
    outbound_server,
    recipient_states,
    remote_zones,
    sendmail,
    submit,
    wait_bounce,
    wait_deferred,
    wait_queue_empty,
    wait_until,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.postfix,
    pytest.mark.timeout(90),
    pytest.mark.skipif(shutil.which("smtp-sink", path="/usr/sbin:/usr/bin") is None,
                       reason="Postfix's smtp-sink is not installed"),
]

MX1, MX2, OTHER_MX = "127.0.0.2", "127.0.0.3", "127.0.0.4"


# --- fixtures ----------------------------------------------------------------------------
@pytest.fixture
def mx_port() -> int:
    return free_port()


@pytest.fixture
def dns():
    with DnsTestServer(remote_zones()) as server:
        yield server


@pytest.fixture
def start_mailyard(tmp_path, dns, mx_port):
    """``start_mailyard(**delivery)``: a running Mailyard with those delivery settings."""
    servers: list[MailyardServer] = []

    def start(**delivery: object) -> MailyardServer:
        srv = outbound_server(tmp_path / f"mailyard{len(servers)}", dns, mx_port, delivery,
                              start=False)
        servers.append(srv)
        return srv.start()

    yield start
    for srv in servers:
        srv.stop()
        if srv.proc is not None and srv.proc.poll() is None:
            srv.kill()
        print(f"--- {srv.root} ---\n{srv.output()}")  # shown when the test failed


@pytest.fixture
def sinks(mx_port):
    """``sink(host, *fault_args)``: a running smtp-sink on ``host:mx_port``."""
    started: list[DumpSink] = []

    def sink(host: str, *args: str) -> DumpSink:
        s = DumpSink(host, mx_port, *args, name=f"sink-{host}").start()
        started.append(s)
        return s

    yield sink
    for s in started:
        s.close()


@pytest.fixture
def fake_mx(mx_port):
    """``fake_mx(host)``: a running scripted MX on ``host:mx_port``."""
    started: list[FakeMx] = []

    def make(host: str) -> FakeMx:
        f = FakeMx(host, mx_port, name=f"fake-{host}").start()
        started.append(f)
        return f

    yield make
    for f in started:
        f.stop()


def heal(sink: DumpSink, sinks) -> DumpSink:  # type: ignore[no-untyped-def]
    """Replace a faulty smtp-sink by a healthy one on the same address."""
    sink.stop()
    return sinks(sink.host)


def tokens_in(messages) -> list[str]:  # type: ignore[no-untyped-def]
    out = []
    for m in messages:
        data = m.content if hasattr(m, "content") else m.data
        found = re.search(rb"X-Test-Token: (\w+)", data)
        out.append(found.group(1).decode() if found else "")
    return out


def header(block, name: str) -> str:  # type: ignore[no-untyped-def]
    return str(block.get(name, "")).strip()


# --- delivery through MX resolution ------------------------------------------------------
def test_delivers_through_mx_to_smtp_sink(start_mailyard, sinks):
    """RFC 5321 5.1: the MX host is looked up and the message reaches it unchanged."""
    mx1, mx2 = sinks(MX1), sinks(MX2)
    srv = start_mailyard()
    token = submit(srv, ["bob@remote.test"], "through the MX", body="line one\n.dot line\n")
    [got] = mx1.wait_messages(1)
    wait_queue_empty(srv)
    assert mx2.messages() == []
    assert got.mail_from == SENDER
    assert got.recipients == ["bob@remote.test"]
    head, _, body = got.content.partition(b"\n\n")
    # Dot-stuffing (RFC 5321 4.5.2) was undone by the receiver: the body is intact.
    assert body.rstrip(b"\n") == b"line one\n.dot line"
    assert f"X-Test-Token: {token}".encode() in head
    assert b"Subject: through the MX" in head
    assert b"From: alice@example.test" in head and b"To: bob@remote.test" in head
    received = re.findall(rb"^Received:.*(?:\n[ \t].*)*", head, re.M)
    assert any(b"by mx.example.test" in r for r in received), received
    # One log line per attempt, with the result as a word (docs/configuration.md [log]).
    assert re.search(r"delivery attempt .*to=bob@remote.test .*relay=mx1.remote.test "
                     r"result=delivered", srv.output()), srv.output()


def test_mx_preference_order(start_mailyard, sinks):
    """RFC 5321 5.1: the lowest preference value is tried first (the zone lists the MX
    with preference 20 first, so the order comes from the values)."""
    mx1, mx2 = sinks(MX1), sinks(MX2)
    srv = start_mailyard()
    tokens = [submit(srv, [f"user{i}@remote.test"], f"preference {i}") for i in range(3)]
    mx1.wait_messages(3)
    wait_queue_empty(srv)
    assert sorted(tokens_in(mx1.messages())) == sorted(tokens)
    assert mx2.messages() == []


def test_falls_back_to_second_mx_when_first_refuses_connections(start_mailyard, sinks):
    """RFC 5321 5.1: when the best MX cannot be reached, the next one is tried in the
    same attempt (nothing listens on mx1's address: connection refused)."""
    mx2 = sinks(MX2)
    srv = start_mailyard(retry_schedule=[600])
    token = submit(srv, ["bob@remote.test"], "fallback")
    [got] = mx2.wait_messages(1)
    wait_queue_empty(srv)
    assert tokens_in([got]) == [token]


def test_falls_back_to_second_mx_when_first_refuses_mail_temporarily(start_mailyard, sinks):
    """RFC 5321 5.1 / 4.5.4.1: a 4xx to MAIL from the best MX sends the message on to
    the next MX within the same attempt."""
    mx1, mx2 = sinks(MX1, "-r", "MAIL"), sinks(MX2)
    srv = start_mailyard(retry_schedule=[600])
    token = submit(srv, ["bob@remote.test"], "fallback after 450")
    [got] = mx2.wait_messages(1)
    wait_queue_empty(srv)
    assert tokens_in([got]) == [token]
    assert mx1.messages() == []


def test_all_mx_hosts_down_defers_then_delivers(start_mailyard, sinks):
    """RFC 5321 4.5.4.1: no MX reachable is a temporary failure; retried on schedule."""
    srv = start_mailyard()
    token = submit(srv, ["bob@remote.test"], "all down")
    rec = wait_deferred(srv, "bob@remote.test", attempts=2)
    assert rec["last_reply"].startswith("451 4.4.1"), rec
    assert bounces(srv) == []
    mx2 = sinks(MX2)
    [got] = mx2.wait_messages(1)
    wait_queue_empty(srv)
    assert tokens_in([got]) == [token]


# --- temporary refusals ------------------------------------------------------------------
@pytest.mark.parametrize("command", ["MAIL", "RCPT", "DATA", "."])
def test_remote_4xx_defers_then_delivers_when_healed(start_mailyard, sinks, command):
    """RFC 5321 4.2.5 / 4.5.4.1: a 4xx reply at MAIL, RCPT, DATA or after the content
    keeps the message queued and it is retried until it is accepted."""
    sink = sinks(OTHER_MX, "-r", command)
    srv = start_mailyard()
    token = submit(srv, ["carol@other.test"], f"4xx at {command}")
    rec = wait_deferred(srv, "carol@other.test")
    assert rec["last_reply"].startswith("450 4.3.0"), rec
    sink = heal(sink, sinks)
    [got] = sink.wait_messages(1)
    wait_queue_empty(srv)
    assert tokens_in([got]) == [token]
    assert bounces(srv) == []


@pytest.mark.parametrize("command", ["MAIL", "RCPT", "DATA"])
def test_remote_4xx_until_lifetime_bounces_with_expired_status(start_mailyard, sinks,
                                                               command):
    """RFC 3463 4.4.7: a message still refused temporarily when its queue lifetime is
    over is returned to the sender (Action: failed), naming the last error."""
    sinks(OTHER_MX, "-r", command)
    srv = start_mailyard(retry_schedule=[1], max_lifetime=4)
    token = submit(srv, ["carol@other.test"], f"expires at {command}")
    [dsn] = wait_bounce(srv, timeout=30)
    wait_queue_empty(srv)
    block = dsn.recipient("carol@other.test")
    assert header(block, "Action") == "failed"
    assert header(block, "Status") == "4.4.7"
    assert "450 4.3.0" in header(block, "Diagnostic-Code")
    assert dsn.returned is not None and token in dsn.returned.as_string()


def test_delay_warning_sent_once_then_delivered(start_mailyard, sinks):
    """RFC 3464 2.3.3 / RFC 3461 4.1: after ``delivery.delay_warning`` the sender gets
    one "delayed" report (not a failure); the message stays queued and is delivered
    when the remote recovers."""
    sink = sinks(OTHER_MX, "-r", "MAIL")
    srv = start_mailyard(retry_schedule=[1], delay_warning=2, max_lifetime=120)
    token = submit(srv, ["carol@other.test"], "delayed")
    [dsn] = wait_bounce(srv, timeout=20)
    block = dsn.recipient("carol@other.test")
    assert header(block, "Action") == "delayed"
    assert header(block, "Status").startswith("4.")
    assert "450 4.3.0" in header(block, "Diagnostic-Code")
    # More failed attempts after the warning: still exactly one warning.
    rec = wait_deferred(srv, "carol@other.test", attempts=4)
    assert rec["state"] == "deferred"
    sink = heal(sink, sinks)
    [got] = sink.wait_messages(1)
    wait_queue_empty(srv)
    assert tokens_in([got]) == [token]
    assert len(bounces(srv)) == 1


@pytest.mark.parametrize("command", ["RCPT", "."])
def test_421_mid_session_defers_then_delivers(start_mailyard, sinks, command):
    """RFC 5321 3.8: 421 closes the session; the message is retried later."""
    sink = sinks(OTHER_MX, "-Q", command)
    srv = start_mailyard()
    token = submit(srv, ["carol@other.test"], f"421 at {command}")
    rec = wait_deferred(srv, "carol@other.test")
    assert rec["last_reply"].startswith("421"), rec
    sink = heal(sink, sinks)
    [got] = sink.wait_messages(1)
    wait_queue_empty(srv)
    assert tokens_in([got]) == [token]
    assert bounces(srv) == []


# --- permanent refusals: RFC 3464 bounces -----------------------------------------------
@pytest.mark.parametrize("command", ["MAIL", "RCPT", "DATA", "."])
def test_remote_5xx_bounces_to_local_sender(start_mailyard, sinks, command):
    """RFC 5321 4.2.5 and RFC 3464: a 5xx reply fails the recipient at once and the
    sender gets a multipart/report with a message/delivery-status part."""
    sinks(OTHER_MX, "-f", command)
    srv = start_mailyard(retry_schedule=[600])
    token = submit(srv, ["carol@other.test"], f"5xx at {command}")
    [dsn] = wait_bounce(srv)
    wait_queue_empty(srv)
    raw = bounces(srv)[0]
    # RFC 3461 6.2 / RFC 5321 4.5.5: a DSN is sent with the null reverse-path.
    assert raw.startswith(b"Return-Path: <>")
    assert "mx.example.test" in header(dsn.per_message, "Reporting-MTA")
    block = dsn.recipient("carol@other.test")
    assert header(block, "Action") == "failed"
    assert re.fullmatch(r"5\.\d{1,3}\.\d{1,3}", header(block, "Status")), header(block, "Status")
    assert header(block, "Final-Recipient").lower() == "rfc822; carol@other.test"
    diagnostic = header(block, "Diagnostic-Code")
    assert diagnostic.lower().startswith("smtp;") and "500 5.3.0" in diagnostic, diagnostic
    assert "mx.other.test" in header(block, "Remote-MTA")
    assert dsn.returned is not None and token in dsn.returned.as_string()
    assert str(dsn.message["To"]).strip() == SENDER or SENDER in str(dsn.message["To"])


def test_bounce_honours_ret_hdrs_envid_and_orcpt(start_mailyard, sinks):
    """RFC 3461 4.3 (RET=HDRS: only the header comes back, as text/rfc822-headers),
    4.4 (ENVID returned as Original-Envelope-Id) and 4.2 (ORCPT returned as
    Original-Recipient) in the RFC 3464 report of a 5xx refusal."""
    sinks(OTHER_MX, "-f", "RCPT")
    srv = start_mailyard(retry_schedule=[600])
    token = submit(srv, ["carol@other.test"], "ret hdrs", body="secret body text\n",
                   mail_options=("RET=HDRS", "ENVID=env-42"),
                   rcpt_options=("ORCPT=rfc822;carol+2Borig@other.test",))  # xtext
    [dsn] = wait_bounce(srv)
    wait_queue_empty(srv)
    assert header(dsn.per_message, "Original-Envelope-Id") == "env-42"
    block = dsn.recipient("carol@other.test")
    assert header(block, "Original-Recipient").lower() == "rfc822; carol+orig@other.test"
    assert dsn.returned is not None
    assert dsn.returned.get_content_type() == "text/rfc822-headers"
    returned = dsn.returned.as_string()
    assert token in returned and "secret body text" not in returned


def test_bounce_to_remote_sender_goes_out_with_null_reverse_path(start_mailyard, sinks,
                                                                fake_mx):
    """Mail from a remote sender, forwarded by a local alias to a remote address that
    refuses it: the DSN goes back to the sender's MX with ``MAIL FROM:<>``
    (RFC 5321 4.5.5, RFC 3461 6.2)."""
    refusing = fake_mx(OTHER_MX)
    refusing.script(rcpt_replies={"carol@other.test": "550 5.1.1 No such user here"})
    sender_mx = sinks(MX1)
    srv = start_mailyard(retry_schedule=[600])
    srv.cli("alias", "add", "fwd@example.test", "carol@other.test")
    msg, token = make_message("dave@remote.test", ["fwd@example.test"], "forward me")
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=10) as client:
        client.send_message(msg)
    [report] = sender_mx.wait_messages(1)
    wait_queue_empty(srv)
    assert report.mail_from == "" and report.mail_args.startswith("<>")
    assert report.recipients == ["dave@remote.test"]
    assert b"multipart/report" in report.content and b"delivery-status" in report.content
    assert b"Final-Recipient: rfc822; carol@other.test" in report.content
    assert b"550 5.1.1 No such user here" in report.content
    assert token.encode() in report.content
    assert refusing.messages == []


def test_notify_success_relayed_to_server_without_dsn(start_mailyard, sinks):
    """RFC 3461 5.2.2: NOTIFY=SUCCESS, and the next hop does not offer DSN: the sender
    gets a success report whose action is "relayed" (RFC 3464 2.3.3), not
    "delivered" (the message did not reach its final mailbox here)."""
    sink = sinks(OTHER_MX, "-N")
    srv = start_mailyard()
    token = submit(srv, ["carol@other.test"], "notify success",
                   rcpt_options=("NOTIFY=SUCCESS,FAILURE",))
    [got] = sink.wait_messages(1)
    [dsn] = wait_bounce(srv)
    wait_queue_empty(srv)
    assert tokens_in([got]) == [token]
    dump = next(p for p in sink.dump_dir.rglob("*") if p.is_file()).read_text()
    assert "X-Rcpt-Args: <carol@other.test>\n" in dump  # no NOTIFY to a non-DSN server
    block = dsn.recipient("carol@other.test")
    assert header(block, "Action") == "relayed"
    assert header(block, "Status").startswith("2.")


def test_notify_success_passed_on_to_server_with_dsn(start_mailyard, sinks):
    """RFC 3461 5.2.1: the next hop offers DSN: NOTIFY is passed on with the RCPT and
    the success report is the next hop's to give, not ours."""
    sink = sinks(OTHER_MX)
    srv = start_mailyard()
    submit(srv, ["carol@other.test"], "notify passed on",
           rcpt_options=("NOTIFY=SUCCESS,FAILURE",))
    sink.wait_messages(1)
    wait_queue_empty(srv)
    dump = next(p for p in sink.dump_dir.rglob("*") if p.is_file()).read_text()
    assert "X-Rcpt-Args: <carol@other.test> NOTIFY=SUCCESS,FAILURE" in dump
    # A report, if one were coming, is queued before the recipient is recorded as
    # delivered; with the queue empty it would be in the mailbox already.
    wait_queue_empty(srv)
    assert bounces(srv) == []


def test_null_mx_bounces_immediately(start_mailyard):
    """RFC 7505 3.2: a domain with a Null MX does not accept mail: bounce at once with
    5.1.10, no retries (the schedule here would wait ten minutes)."""
    srv = start_mailyard(retry_schedule=[600])
    submit(srv, ["someone@nullmx.test"], "null mx")
    [dsn] = wait_bounce(srv, timeout=15)
    wait_queue_empty(srv)
    block = dsn.recipient("someone@nullmx.test")
    assert header(block, "Action") == "failed"
    assert header(block, "Status") == "5.1.10"
    assert "556" in header(block, "Diagnostic-Code")


def test_nxdomain_bounces(start_mailyard):
    """RFC 5321 5.1: a domain that does not exist (NXDOMAIN) is a permanent failure."""
    srv = start_mailyard(retry_schedule=[600])
    submit(srv, ["someone@nowhere.test"], "nxdomain")
    [dsn] = wait_bounce(srv, timeout=15)
    wait_queue_empty(srv)
    block = dsn.recipient("someone@nowhere.test")
    assert header(block, "Action") == "failed"
    assert header(block, "Status").startswith("5.1.")


# --- DNS trouble ---------------------------------------------------------------------------
@pytest.mark.parametrize("fault", ["servfail", "drop"])
def test_dns_temporary_failure_defers_then_delivers(start_mailyard, sinks, dns, fault):
    """RFC 5321 5.1 / RFC 2308: SERVFAIL or no answer is temporary: defer, retry."""
    sink = sinks(OTHER_MX)
    getattr(dns, fault)("other.test")
    srv = start_mailyard()
    token = submit(srv, ["carol@other.test"], f"dns {fault}")
    rec = wait_deferred(srv, "carol@other.test")
    assert rec["last_reply"].startswith("451 4.4.3"), rec
    assert sink.messages() == []
    dns.heal()
    [got] = sink.wait_messages(1)
    wait_queue_empty(srv)
    assert tokens_in([got]) == [token]
    assert bounces(srv) == []


# --- faults smtp-sink cannot make ----------------------------------------------------------
def test_connection_dropped_mid_data_defers_then_delivers_exactly_once(start_mailyard,
                                                                      fake_mx):
    """RFC 5321 4.1.1.4 / 6.1: a message is delivered only on the final 2xx; a cut
    inside the content defers it, and the retry delivers it once."""
    mx = fake_mx(OTHER_MX)
    mx.script(drop_after_content_bytes=2000)
    srv = start_mailyard()
    token = submit(srv, ["carol@other.test"], "dropped mid-DATA", body=("y" * 70 + "\n") * 200)
    rec = wait_deferred(srv, "carol@other.test")
    assert rec["last_reply"].startswith("451 4.4.2"), rec
    assert mx.messages == []
    mx.heal()
    mx.wait_messages(1)
    wait_queue_empty(srv)
    assert tokens_in(mx.messages) == [token]
    assert any(s.ended == "dropped" for s in mx.sessions)


@pytest.mark.parametrize("stage,setting", [("CONNECT", "connect_timeout"),
                                           ("MAIL", "command_timeout"),
                                           (".", "data_timeout")])
def test_slow_remote_times_out_and_defers(start_mailyard, fake_mx, stage, setting):
    """RFC 5321 4.5.3.2: each wait for a reply is bounded; a timeout is temporary, and
    the server that never answered did not take the message."""
    mx = fake_mx(OTHER_MX)
    mx.script(delays={stage: 20.0})
    srv = start_mailyard(**{setting: 1.5})
    token = submit(srv, ["carol@other.test"], f"slow at {stage}")
    rec = wait_deferred(srv, "carol@other.test")
    assert rec["last_reply"].startswith("451 4.4."), rec
    mx.heal()
    mx.wait_messages(1)
    wait_queue_empty(srv)
    assert tokens_in(mx.messages) == [token]


def test_tls_handshake_failure_with_tls_may_retries_in_clear(start_mailyard, fake_mx):
    """RFC 3207 4.1 (opportunistic TLS, RFC 7435): when STARTTLS is offered but the
    handshake fails, the message is sent again without TLS rather than held."""
    mx = fake_mx(OTHER_MX)
    mx.script(starttls="broken")
    srv = start_mailyard(tls="may", retry_schedule=[600])
    token = submit(srv, ["carol@other.test"], "tls falls back")
    mx.wait_messages(1)
    wait_queue_empty(srv)
    assert tokens_in(mx.messages) == [token]
    first = mx.sessions[0]
    assert first.tls_attempted and first.ended == "tls-broken"
    delivering = mx.sessions[mx.messages[0].session - 1]
    assert not any(c.upper() == "STARTTLS" for c in delivering.commands)


def test_one_recipient_refused_others_delivered(start_mailyard, fake_mx):
    """RFC 5321 3.3: RCPT replies count per recipient; the refused one bounces (RFC
    3464, one report for it only), the others are delivered in the same transaction."""
    mx = fake_mx(OTHER_MX)
    mx.script(rcpt_replies={"bad@other.test": "550 5.1.1 No such user here"})
    srv = start_mailyard(retry_schedule=[600])
    rcpts = ["good1@other.test", "bad@other.test", "good2@other.test"]
    token = submit(srv, rcpts, "per recipient")
    [msg] = mx.wait_messages(1)
    [dsn] = wait_bounce(srv)
    wait_queue_empty(srv)
    assert msg.recipients == ["good1@other.test", "good2@other.test"]
    assert tokens_in([msg]) == [token]
    assert len(dsn.recipients) == 1
    block = dsn.recipient("bad@other.test")
    assert header(block, "Action") == "failed"
    assert header(block, "Status") == "5.1.1"
    assert "550 5.1.1 No such user here" in header(block, "Diagnostic-Code")


def test_one_recipient_deferred_others_delivered_then_it_follows(start_mailyard, fake_mx):
    """A 4xx for one RCPT defers that recipient only; the retry sends the message
    to it alone (the others are not sent a second copy)."""
    mx = fake_mx(OTHER_MX)
    mx.script(rcpt_replies={"later@other.test": "451 4.2.1 Mailbox busy"})
    srv = start_mailyard(retry_schedule=[600])
    token = submit(srv, ["now@other.test", "later@other.test"], "half now")
    [first] = mx.wait_messages(1)
    rec = wait_deferred(srv, "later@other.test")
    assert rec["last_reply"].startswith("451 4.2.1"), rec
    states = recipient_states(srv)
    assert states["now@other.test"]["state"] == "delivered", states
    assert first.recipients == ["now@other.test"]
    mx.heal()
    srv.cli("queue", "flush")
    second = mx.wait_messages(2)[1]
    wait_queue_empty(srv)
    assert second.recipients == ["later@other.test"]
    assert tokens_in(mx.messages) == [token, token]
    assert bounces(srv) == []


def test_null_sender_is_never_bounced(start_mailyard, fake_mx):
    """RFC 5321 4.5.5 / RFC 3461 6.2: a failed message with the null reverse-path is
    not answered with a DSN (nor is any report generated for it)."""
    mx = fake_mx(OTHER_MX)
    mx.script(replies={"RCPT": "550 5.1.1 No such user"})
    srv = start_mailyard(retry_schedule=[600])
    sendmail(srv, ["carol@other.test"], "null sender", sender="<>")
    wait_until(lambda: any(c.upper().startswith("RCPT") for s in mx.sessions
                           for c in s.commands), 15, "the RCPT at the fake MX")
    # The DSN would be queued before the failure is recorded (dispatcher ordering), so
    # an empty queue means no DSN was made.
    wait_queue_empty(srv)
    mails = [c for s in mx.sessions for c in s.commands if c.upper().startswith("MAIL")]
    assert mails and all("<>" in c for c in mails), mails
    assert srv.messages(SENDER) == [] and srv.messages("postmaster@example.test") == []
    assert "dsn queued" not in srv.output()
    assert len(mx.sessions) == 1


def test_mixed_local_and_remote_recipients_each_delivered_once(start_mailyard, sinks):
    """One message to a local mailbox, a healthy remote domain and a failing one: each
    recipient has its own state, so the retry for the failing domain sends no second
    copy to the others."""
    healthy = sinks(MX1)
    failing = sinks(OTHER_MX, "-r", "MAIL")
    srv = start_mailyard(retry_schedule=[600])
    srv.add_user("bob@example.test", "bob-secret")
    token = submit(srv, ["bob@example.test", "dave@remote.test", "carol@other.test"],
                   "three ways")
    rec = wait_deferred(srv, "carol@other.test")
    states = recipient_states(srv)
    assert states["bob@example.test"]["state"] == "delivered", states
    assert states["dave@remote.test"]["state"] == "delivered", states
    failing = heal(failing, sinks)
    srv.cli("queue", "flush", rec["qid"])
    failing.wait_messages(1)
    wait_queue_empty(srv)
    assert tokens_in(failing.messages()) == [token]
    assert tokens_in(healthy.messages()) == [token]
    assert healthy.messages()[0].recipients == ["dave@remote.test"]
    local = srv.messages("bob@example.test")
    assert len(local) == 1 and token.encode() in local[0]


# --- operator's queue tools --------------------------------------------------------------
def test_queue_cli_shows_deferred_recipient_state(start_mailyard, sinks):
    """``mailyard queue list/show``: per recipient state, attempts, next try and the
    last reply from the remote server."""
    sinks(OTHER_MX, "-r", "RCPT")
    srv = start_mailyard(retry_schedule=[600])
    submit(srv, ["carol@other.test"], "inspect me")
    rec = wait_deferred(srv, "carol@other.test")
    assert rec["attempts"] == 1
    assert rec["last_reply"] == "450 4.3.0 Error: command failed", rec
    assert rec["next_attempt"] > rec["last_attempt"] > 0
    listing = srv.cli("queue", "list").stdout.decode()
    assert rec["qid"] in listing and "carol@other.test [deferred, 1 attempts" in listing
    assert "450 4.3.0 Error: command failed" in listing
    shown = srv.cli("queue", "show", rec["qid"]).stdout.decode()
    assert "carol@other.test: deferred, 1 attempt(s)" in shown
    assert "last reply: 450 4.3.0 Error: command failed" in shown


def test_queue_flush_retries_now(start_mailyard, sinks):
    """``mailyard queue flush`` makes deferred mail due at once (the schedule here
    would wait ten minutes)."""
    sink = sinks(OTHER_MX, "-r", "MAIL")
    srv = start_mailyard(retry_schedule=[600])
    token = submit(srv, ["carol@other.test"], "flush me")
    rec = wait_deferred(srv, "carol@other.test")
    sink = heal(sink, sinks)
    out = srv.cli("queue", "flush", rec["qid"]).stdout.decode()
    assert out.startswith("1 recipient")
    [got] = sink.wait_messages(1, timeout=10)
    wait_queue_empty(srv)
    assert tokens_in([got]) == [token]


def test_queue_hold_and_release(start_mailyard, sinks):
    """A held message is not tried, not even by flush, until it is released."""
    sink = sinks(OTHER_MX, "-r", "MAIL")
    srv = start_mailyard(retry_schedule=[600])
    held_token = submit(srv, ["held@other.test"], "hold me")
    free_token = submit(srv, ["free@other.test"], "let me go")
    held = wait_deferred(srv, "held@other.test")
    wait_deferred(srv, "free@other.test")
    srv.cli("queue", "hold", held["qid"])
    assert recipient_states(srv)["held@other.test"]["state"] == "held"
    sink = heal(sink, sinks)
    srv.cli("queue", "flush")
    sink.wait_messages(1)
    # A later message delivered too proves the dispatcher went round again.
    later = submit(srv, ["later@other.test"], "after the flush")
    sink.wait_messages(2)
    wait_until(lambda: set(recipient_states(srv)) == {"held@other.test"}, 10,
               "only the held message left")
    assert sorted(tokens_in(sink.messages())) == sorted([free_token, later])
    assert recipient_states(srv)["held@other.test"]["state"] == "held"
    srv.cli("queue", "release", held["qid"])
    sink.wait_messages(3)
    wait_queue_empty(srv)
    assert held_token in tokens_in(sink.messages())


def test_queue_delete(start_mailyard, sinks):
    """``queue delete`` removes a message for good, without a bounce."""
    sink = sinks(OTHER_MX, "-r", "MAIL")
    srv = start_mailyard(retry_schedule=[600])
    submit(srv, ["gone@other.test"], "delete me")
    rec = wait_deferred(srv, "gone@other.test")
    srv.cli("queue", "delete", rec["qid"])
    assert srv.queue() == []
    sink = heal(sink, sinks)
    srv.cli("queue", "flush")
    kept = submit(srv, ["kept@other.test"], "still delivered")
    [got] = sink.wait_messages(1)
    wait_queue_empty(srv)
    assert tokens_in([got]) == [kept]
    assert bounces(srv) == []
    assert srv.cli("queue", "show", rec["qid"], check=False).returncode != 0


# --- crash ---------------------------------------------------------------------------------
def test_sigkill_mid_delivery_neither_loses_nor_duplicates(start_mailyard, fake_mx):
    """The server is killed (SIGKILL, supervisor and workers) while the remote holds
    its reply to the final dot; the remote then never acknowledged the message, so
    after the restart it is delivered, exactly once (RFC 5321 6.1: the message is
    Mailyard's responsibility until the 250)."""
    mx = fake_mx(OTHER_MX)
    mx.script(delays={".": 60.0})
    srv = start_mailyard()
    token = submit(srv, ["carol@other.test"], "crash mid delivery")
    wait_until(lambda: any(s.content_received for s in mx.sessions), 15,
               "the message content at the fake MX")
    srv.kill()
    wait_until(lambda: all(s.ended for s in mx.sessions), 10, "the fake MX to see the cut")
    assert mx.messages == []
    mx.heal()
    srv.start()
    mx.wait_messages(1, timeout=30)
    wait_queue_empty(srv)
    # One more message through the same path: the dispatcher went round again and
    # did not send the first one a second time.
    later = submit(srv, ["dave@other.test"], "after the restart")
    mx.wait_messages(2)
    wait_queue_empty(srv)
    assert sorted(tokens_in(mx.messages)) == sorted([token, later])


def test_graceful_stop_mid_delivery_keeps_the_message(start_mailyard, fake_mx):
    """SIGTERM while a delivery waits for the remote's final reply: the server stops
    in bounded time, keeps the message, and delivers it once after the restart."""
    mx = fake_mx(OTHER_MX)
    mx.script(delays={".": 60.0})
    srv = start_mailyard(data_timeout=60)
    token = submit(srv, ["carol@other.test"], "stop mid delivery")
    wait_until(lambda: any(s.content_received for s in mx.sessions), 15,
               "the message content at the fake MX")
    srv.stop(timeout=30)
    assert srv.proc is not None and srv.proc.returncode is not None
    wait_until(lambda: all(s.ended for s in mx.sessions), 10, "the fake MX to see the cut")
    assert mx.messages == []
    mx.heal()
    srv.start()
    mx.wait_messages(1, timeout=30)
    wait_queue_empty(srv)
    assert tokens_in(mx.messages) == [token]
