"""Mail transactions of the sans-IO client: MAIL/RCPT parameters, pipelining
(RFC 2920), DATA and BDAT (RFC 3030), per-recipient results and session-level failures."""

from __future__ import annotations

import pytest

from mailyard.envelope import DsnRecipient, Envelope, Recipient
from mailyard.proto.smtp.client import (
    NeedData,
    Send,
    SessionReady,
    SmtpClient,
    State,
    TransactionDone,
    TransactionResult,
)
from mailyard.proto.smtp.replies import (
    REPLY_NO_VALID_RECIPIENTS,
    REPLY_REMOTE_LOST,
    REPLY_REMOTE_NO_BINARYMIME,
    REPLY_REMOTE_NO_SMTPUTF8,
    Reply,
)
from tests.unit.smtp_client.transcript import CHUNKERS, Script, Transcript, commands

PIPELINING = (b"250-mx\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 1000\r\n"
              b"250 ENHANCEDSTATUSCODES\r\n")
PLAIN = b"250-mx\r\n250 8BITMIME\r\n"
CHUNKING = b"250-mx\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 BINARYMIME\r\n"

ENV = Envelope("sender@origin.example", (Recipient("a@dest.example"), Recipient("b@dest.example"),
                                         Recipient("c@dest.example")))
CONTENT = b"Subject: hi\r\n\r\n.leading dot\r\nbody\n"
WIRE_BODY = b"Subject: hi\r\n\r\n..leading dot\r\nbody\r\n.\r\n"


@pytest.fixture(params=sorted(CHUNKERS))
def chunker(request):
    return CHUNKERS[request.param]


def ready(chunker, ehlo: bytes = PIPELINING, content: bytes = CONTENT, **kw) -> Transcript:
    t = Transcript(SmtpClient("client.example", tls="none", **kw), Script(chunker),
                   content=content, content_chunker=chunker)
    t.script.reply(b"220 mx\r\n", ehlo)
    assert t.pump() == [SessionReady()]
    t.take()
    return t


def run(t: Transcript, *server: bytes, env: Envelope = ENV, size: int = 40) -> TransactionResult:
    t.client.start_transaction(env, env.recipients, size)
    t.script.reply(*server)
    (done,) = t.pump()
    assert isinstance(done, TransactionDone)
    return done.result


def codes(result: TransactionResult) -> list[int]:
    return [r.reply.code for r in result.recipients]


def test_pipelined_transaction(chunker) -> None:
    """RFC 2920 3.1: MAIL, every RCPT and DATA go in one group; the content follows 354."""
    t = ready(chunker)
    result = run(t, b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 unknown\r\n250 2.1.5 ok\r\n"
                    b"354 go\r\n", b"250 2.0.0 queued as ABC\r\n")
    assert t.take() == (b"MAIL FROM:<sender@origin.example> SIZE=40\r\n"
                        b"RCPT TO:<a@dest.example>\r\nRCPT TO:<b@dest.example>\r\n"
                        b"RCPT TO:<c@dest.example>\r\nDATA\r\n" + WIRE_BODY)
    assert codes(result) == [250, 550, 250]
    assert result.recipients[0].reply == Reply(250, "2.0.0", "queued as ABC")
    assert result.recipients[1].reply == Reply(550, "5.1.1", "unknown")
    assert not any(r.retry_elsewhere for r in result.recipients)
    assert result.content_sent and t.client.usable and t.client.transactions == 1


def test_pipelined_group_is_one_write() -> None:
    """RFC 2920 3.1: the whole group is written before any reply is awaited."""
    client = SmtpClient("c", tls="none")
    client.receive_data(b"220 x\r\n")
    client.next_event()
    client.receive_data(PIPELINING)
    assert client.next_event() == SessionReady()
    client.start_transaction(ENV, ENV.recipients, 10)
    sent = client.next_event()
    assert isinstance(sent, Send) and commands(sent.data)[0].startswith("MAIL")
    assert commands(sent.data)[-1] == "DATA" and len(commands(sent.data)) == 5
    assert isinstance(client.next_event(), NeedData)


def test_without_pipelining_one_command_at_a_time(chunker) -> None:
    t = ready(chunker, ehlo=PLAIN)
    sends: list[bytes] = []
    client = t.client
    client.start_transaction(ENV, ENV.recipients, 40)
    replies = [b"250 ok\r\n", b"250 ok\r\n", b"550 no\r\n", b"250 ok\r\n", b"354 go\r\n",
               b"250 done\r\n"]
    while True:
        ev = client.next_event()
        if isinstance(ev, Send):
            sends.append(ev.data)
        elif isinstance(ev, NeedData):
            assert len(replies) > 0
            client.receive_data(replies.pop(0))
        elif isinstance(ev, TransactionDone):
            break
        else:
            client.send_content(CONTENT)
            client.end_content()
    assert all(len(commands(s)) == 1 for s in sends[:5])
    assert [commands(s)[0] for s in sends[:5]] == [
        "MAIL FROM:<sender@origin.example>",
        "RCPT TO:<a@dest.example>", "RCPT TO:<b@dest.example>", "RCPT TO:<c@dest.example>",
        "DATA"]
    assert codes(ev.result) == [250, 550, 250]


def test_mail_parameters() -> None:
    """SIZE (RFC 1870), BODY=8BITMIME (RFC 6152), SMTPUTF8 (RFC 6531), DSN (RFC 3461)."""
    ehlo = b"250-mx\r\n250-PIPELINING\r\n250-SIZE\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 DSN\r\n"
    t = ready(CHUNKERS["whole"], ehlo=ehlo)
    env = Envelope("s@o.example", (Recipient("ü@d.example", DsnRecipient(
        ("SUCCESS", "FAILURE"), "rfc822;orig+x=y@d.example")),), body_type="8BITMIME",
        ret="HDRS", envid="id+1=2")
    run(t, b"250 ok\r\n250 ok\r\n354 go\r\n", b"250 ok\r\n", env=env, size=12)
    mail, rcpt = commands(t.take())[:2]
    assert mail == ("MAIL FROM:<s@o.example> SIZE=12 BODY=8BITMIME SMTPUTF8 RET=HDRS "
                    "ENVID=id+2B1+3D2")
    assert rcpt == ("RCPT TO:<ü@d.example> NOTIFY=SUCCESS,FAILURE "
                    "ORCPT=rfc822;orig+2Bx+3Dy@d.example")


def test_dsn_parameters_only_when_offered() -> None:
    """RFC 3461 4: the parameters go only to a server that announced DSN."""
    t = ready(CHUNKERS["whole"], ehlo=PLAIN)
    never = DsnRecipient(("NEVER",), "rfc822;r@d.example")
    env = Envelope("s@o.example", (Recipient("r@d.example", never),),
                   ret="FULL", envid="x", body_type="8BITMIME")
    run(t, b"250 ok\r\n", b"250 ok\r\n", b"354 go\r\n", b"250 ok\r\n", env=env)
    sent = commands(t.take())
    assert sent[0] == "MAIL FROM:<s@o.example> BODY=8BITMIME"
    assert sent[1] == "RCPT TO:<r@d.example>"


def test_null_sender() -> None:
    t = ready(CHUNKERS["whole"])
    env = Envelope("", (Recipient("r@d.example"),))
    run(t, b"250 ok\r\n250 ok\r\n354 go\r\n", b"250 ok\r\n", env=env)
    assert commands(t.take())[0] == "MAIL FROM:<> SIZE=40"


def test_size_over_the_peer_limit_fails_before_sending() -> None:
    """RFC 1870 6: a message larger than the announced SIZE is not sent; 552 5.3.4."""
    t = ready(CHUNKERS["whole"])
    result = run(t, env=ENV, size=1001)
    assert result.reply.code == 552 and result.reply.status == "5.3.4"
    assert codes(result) == [552, 552, 552]
    assert t.take() == b"" and t.client.usable


def test_smtputf8_needed_but_not_offered() -> None:
    """RFC 6531 3.2: a non-ASCII address cannot go to a server without SMTPUTF8:
    553 5.6.7 for that recipient; the others are delivered."""
    t = ready(CHUNKERS["whole"])
    env = Envelope("s@o.example", (Recipient("ü@d.example"), Recipient("r@d.example")))
    result = run(t, b"250 ok\r\n250 ok\r\n354 go\r\n", b"250 ok\r\n", env=env)
    assert result.recipients[0].reply == REPLY_REMOTE_NO_SMTPUTF8
    assert codes(result) == [553, 250]
    assert "ü".encode() not in t.take()
    sender = Envelope("ß@o.example", (Recipient("r@d.example"),))
    result = run(t, env=sender)
    assert result.reply == REPLY_REMOTE_NO_SMTPUTF8 and codes(result) == [553]


def test_smtputf8_flag_without_support_is_sent_plain() -> None:
    t = ready(CHUNKERS["whole"])
    env = Envelope("s@o.example", (Recipient("r@d.example"),), smtputf8=True)
    result = run(t, b"250 ok\r\n250 ok\r\n354 go\r\n", b"250 ok\r\n", env=env)
    assert codes(result) == [250]
    assert b"SMTPUTF8" not in t.take()


def test_command_injection_in_addresses_is_refused() -> None:
    t = ready(CHUNKERS["whole"])
    env = Envelope("s@o.example", (Recipient("x@d.example>\r\nRSET"), Recipient("r@d.example")))
    result = run(t, b"250 ok\r\n250 ok\r\n354 go\r\n", b"250 ok\r\n", env=env)
    assert codes(result) == [553, 250]
    assert b"RSET" not in t.take()


def test_all_recipients_refused_after_pipelined_data_354(chunker) -> None:
    """RFC 2920 3.1: if DATA got 354 although no RCPT succeeded, send a lone '.'."""
    t = ready(chunker)
    result = run(t, b"250 ok\r\n550 a\r\n550 b\r\n450 c\r\n354 go\r\n",
                 b"554 no valid recipients\r\n")
    assert codes(result) == [550, 550, 450]
    assert result.reply == REPLY_NO_VALID_RECIPIENTS and not result.content_sent
    assert t.take().endswith(b"DATA\r\n.\r\n")


def test_all_recipients_refused_data_554(chunker) -> None:
    t = ready(chunker)
    result = run(t, b"250 ok\r\n550 a\r\n550 b\r\n550 c\r\n554 5.5.1 no valid recipients\r\n")
    assert codes(result) == [550, 550, 550]
    assert t.client.usable


def test_rset_before_the_next_transaction_only_after_an_unfinished_one() -> None:
    """RFC 5321 4.1.1.5: a transaction left open is reset before the next MAIL."""
    t = ready(CHUNKERS["whole"])
    run(t, b"250 ok\r\n550 a\r\n550 b\r\n550 c\r\n554 no\r\n")
    t.take()
    run(t, b"250 reset\r\n250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n", b"250 ok\r\n")
    assert commands(t.take())[:2] == ["RSET", "MAIL FROM:<sender@origin.example> SIZE=40"]
    run(t, b"250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n", b"250 ok\r\n")
    assert commands(t.take())[0].startswith("MAIL")


@pytest.mark.parametrize("mail_reply, retry", [(b"451 4.3.0 later\r\n", True),
                                               (b"553 5.7.1 sender refused\r\n", False)])
def test_mail_refused(chunker, mail_reply: bytes, retry: bool) -> None:
    """The RCPT and DATA replies of the pipelined group (503s) do not hide the MAIL reply."""
    t = ready(chunker)
    result = run(t, mail_reply + b"503 5.5.1 need MAIL\r\n" * 3 + b"503 5.5.1 need RCPT\r\n")
    assert codes(result) == [int(mail_reply[:3])] * 3
    assert all(r.retry_elsewhere is retry for r in result.recipients)
    assert t.client.usable


def test_data_refused_after_accepted_recipients(chunker) -> None:
    t = ready(chunker)
    result = run(t, b"250 ok\r\n250 ok\r\n550 no\r\n250 ok\r\n451 4.3.0 try later\r\n")
    assert codes(result) == [451, 550, 451]
    assert not any(r.retry_elsewhere for r in result.recipients)


@pytest.mark.parametrize("final", [b"451 4.3.0 later\r\n", b"554 5.7.1 spam\r\n"])
def test_final_reply_decides(chunker, final: bytes) -> None:
    t = ready(chunker)
    result = run(t, b"250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n", final)
    assert codes(result) == [int(final[:3])] * 3
    assert result.content_sent


def test_421_mid_rcpt_closes_and_defers_the_rest(chunker) -> None:
    """RFC 5321 3.8: 421 means the server is closing; open recipients may go elsewhere."""
    t = ready(chunker)
    result = run(t, b"250 ok\r\n250 ok\r\n550 5.1.1 no\r\n421 4.3.2 shutting down\r\n")
    assert codes(result) == [421, 550, 421]
    assert [r.retry_elsewhere for r in result.recipients] == [True, False, True]
    assert t.client.state is State.CLOSED and not t.client.usable


def test_connection_lost_before_the_end_of_data_may_go_elsewhere(chunker) -> None:
    t = ready(chunker)
    t.client.start_transaction(ENV, ENV.recipients, 40)
    t.script.reply(b"250 ok\r\n250 ok\r\n").hang_up()
    (done,) = t.pump()
    assert [r.reply for r in done.result.recipients] == [REPLY_REMOTE_LOST] * 3
    assert all(r.retry_elsewhere for r in done.result.recipients)


def test_connection_lost_after_the_final_dot_is_never_delivered(chunker) -> None:
    """Delivered only on the final 2xx; and no second host, the first may have it."""
    t = ready(chunker)
    t.client.start_transaction(ENV, ENV.recipients, 40)
    t.script.reply(b"250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n").hang_up()
    (done,) = t.pump()
    assert codes(done.result) == [451] * 3
    assert not any(r.retry_elsewhere for r in done.result.recipients)
    assert done.result.content_sent


def test_bdat_when_chunking_is_offered(chunker) -> None:
    """RFC 3030 2: content in BDAT chunks, the last one marked LAST, no dot-stuffing."""
    content = b".x\n" * 10  # 30 bytes -> 40 on the wire
    t = ready(chunker, ehlo=CHUNKING, content=content, bdat_chunk=16)
    result = run(t, b"250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n",
                 b"250 16 octets\r\n", b"250 16 octets\r\n", b"250 2.0.0 queued\r\n")
    sent = t.take()
    body = sent.split(b"RCPT TO:<c@dest.example>\r\n", 1)[1]
    assert b"DATA" not in sent
    pieces, rest = [], body
    while rest:
        header, rest = rest.split(b"\r\n", 1)
        n = int(header.split()[1])
        pieces.append((header, rest[:n]))
        rest = rest[n:]
    assert b"".join(p for _, p in pieces) == b".x\r\n" * 10
    assert pieces[-1][0].endswith(b" LAST") and all(not h.endswith(b"LAST") for h, _ in pieces[:-1])
    assert codes(result) == [250, 250, 250]


def test_bdat_chunk_refused(chunker) -> None:
    t = ready(chunker, ehlo=CHUNKING, content=b"y" * 40, bdat_chunk=16)
    result = run(t, b"250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n", b"552 5.3.4 too big\r\n")
    assert codes(result) == [552] * 3
    assert t.client.usable


def test_binarymime_needs_the_extension() -> None:
    """RFC 3030 3: binary content cannot be downgraded; refuse without BINARYMIME."""
    env = Envelope("s@o.example", (Recipient("r@d.example"),), body_type="BINARYMIME")
    t = ready(CHUNKERS["whole"])
    assert run(t, env=env).reply == REPLY_REMOTE_NO_BINARYMIME
    t = ready(CHUNKERS["whole"], ehlo=CHUNKING, content=b"\x00bin\nary\r")
    result = run(t, b"250 ok\r\n250 ok\r\n", b"250 ok\r\n", env=env)
    sent = t.take()
    assert b"BODY=BINARYMIME" in sent and sent.endswith(b"BDAT 9 LAST\r\n\x00bin\nary\r")
    assert codes(result) == [250]


def test_quit_after_transaction() -> None:
    t = ready(CHUNKERS["whole"])
    run(t, b"250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n", b"250 ok\r\n")
    t.take()
    t.client.quit()
    t.script.reply(b"221 bye\r\n")
    assert [type(e).__name__ for e in t.pump()] == ["Closed"]
    assert t.take() == b"QUIT\r\n"
