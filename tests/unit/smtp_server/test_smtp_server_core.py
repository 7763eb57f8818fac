"""Transcript tests for the sans-IO SMTP server core (RFC 5321 and extensions).

Every transcript is fed whole, byte by byte and in random pieces (run_all_ways)."""

from __future__ import annotations

import dataclasses

import pytest
from smtpd_core_harness import SPLITS, accept_all, run_all_ways, run_session

from mailyard.proto.errors import LocalProtocolError
from mailyard.proto.smtp.events import (
    CLOSED,
    PAUSED,
    DataChunk,
    DataStart,
    HeaderSection,
    Helo,
    MailFrom,
    MessageComplete,
    MessageRefused,
    RcptTo,
    TransactionAborted,
)
from mailyard.proto.smtp.replies import (
    REPLY_BAD_CHARS,
    REPLY_BAD_SENDER_ADDRESS,
    REPLY_BAD_SEQUENCE,
    REPLY_BARE_LINE_ENDING,
    REPLY_BYE,
    REPLY_LINE_TOO_LONG,
    REPLY_LOOP,
    REPLY_MESSAGE_TOO_BIG,
    REPLY_NEED_HELO,
    REPLY_NEED_MAIL,
    REPLY_NEED_RCPT,
    REPLY_NEEDS_SMTPUTF8,
    REPLY_NESTED_MAIL,
    REPLY_NOT_IMPLEMENTED,
    REPLY_PARAM_NOT_IMPLEMENTED,
    REPLY_QUEUED,
    REPLY_RCPT_OK,
    REPLY_SENDER_OK,
    REPLY_SYNTAX,
    REPLY_TOO_MANY_ERRORS,
    REPLY_TOO_MANY_RECIPIENTS,
    REPLY_UNKNOWN_COMMAND,
    REPLY_UNKNOWN_USER,
    REPLY_VRFY_CANNOT,
    Reply,
)
from mailyard.proto.smtp.server import ServerConnection, ServerSettings

HEAD = b"EHLO client.test\r\nMAIL FROM:<a@client.test>\r\nRCPT TO:<b@mx.test>\r\n"
SETTINGS = ServerSettings(hostname="mx.test")


def settings(**kw: object) -> ServerSettings:
    return dataclasses.replace(SETTINGS, **kw)


def test_greeting_and_basic_transaction() -> None:
    """RFC 5321 3.3 / 4.3.2: 220, 250 EHLO, 250 MAIL, 250 RCPT, 354, 250, 221."""
    run = run_all_ways(HEAD + b"DATA\r\nSubject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n")
    assert run.codes == ["220", "250", "250 2.1.0", "250 2.1.5", "354", "250 2.0.0", "221 2.0.0"]
    assert run.output.startswith(b"220 mx.test ESMTP")
    assert run.messages == [b"Subject: hi\r\n\r\nbody\r\n"]
    txn_events = [type(e) for e in run.events if not isinstance(e, DataChunk)]
    assert txn_events == [Helo, MailFrom, RcptTo, DataStart, HeaderSection, MessageComplete]


def test_ehlo_keywords() -> None:
    """RFC 5321 4.1.1.1 and the extensions' RFCs: the EHLO keywords offered."""
    run = run_all_ways(b"EHLO c\r\n", settings=settings(starttls=True, auth=True,
                                                         max_message_size=1234))
    text = run.output.decode()
    for keyword in ("PIPELINING", "SIZE 1234", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES",
                    "CHUNKING", "DSN", "STARTTLS"):
        assert f"250-{keyword}\r\n" in text or f"250 {keyword}\r\n" in text
    assert "AUTH" not in text  # RFC 4954 / RFC 8314: no AUTH before TLS


def test_ehlo_after_tls_offers_auth_not_starttls() -> None:
    """RFC 3207 4.2: STARTTLS not offered again; AUTH offered once TLS is active."""
    run = run_all_ways(b"EHLO c\r\n", settings=settings(starttls=True, auth=True,
                                                         implicit_tls=True))
    text = run.output.decode()
    assert "STARTTLS" not in text
    assert "AUTH PLAIN LOGIN SCRAM-SHA-256" in text


def test_helo() -> None:
    """RFC 5321 4.1.1.1: HELO gets a one-line 250; ESMTP parameters then refused."""
    run = run_all_ways(b"HELO c\r\nMAIL FROM:<a@c.test> SIZE=10\r\nMAIL FROM:<a@c.test>\r\n")
    assert run.replies[1:] == [b"250 mx.test\r\n",
                               REPLY_SYNTAX.with_text("Parameters need EHLO").encode(),
                               REPLY_SENDER_OK.encode()]


def test_dot_stuffing_removed() -> None:
    """RFC 5321 4.5.2: a leading dot is removed from every line that starts with one."""
    body = b"..leading\r\n.\r\nx\r\n"  # second line is the terminator
    run = run_all_ways(HEAD + b"DATA\r\n" + body + b"QUIT\r\n")
    assert run.messages == [b".leading\r\n"]
    run = run_all_ways(HEAD + b"DATA\r\nA\r\n...\r\n..\r\n.\r\n")
    assert run.messages == [b"A\r\n..\r\n.\r\n"]


def test_empty_message() -> None:
    """RFC 5321 4.1.1.4: the CRLF of DATA counts, so '.' on the first line ends it."""
    run = run_all_ways(HEAD + b"DATA\r\n.\r\nQUIT\r\n")
    assert run.messages == [b""]
    assert run.codes[-2:] == ["250 2.0.0", "221 2.0.0"]


@pytest.mark.parametrize("fake_end", [b"\n.\n", b"\r.\r", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n"])
def test_smuggling_variants_do_not_end_data(fake_end: bytes) -> None:
    """RFC 5321 4.1.1.4 / 2.3.8 and CVE-2023-51764: only CRLF.CRLF ends DATA; a bare
    CR or LF makes the whole message refused after the real terminator, and the
    'smuggled' commands never run."""
    smuggled = b"MAIL FROM:<evil@x.test>\r\nRCPT TO:<v@mx.test>\r\nDATA\r\nspoof\r\n"
    data = HEAD + b"DATA\r\nSubject: a\r\n\r\nbody" + fake_end + smuggled + b".\r\nQUIT\r\n"
    run = run_all_ways(data)
    assert run.messages == []
    refused = run.of_type(MessageRefused)
    assert [e.reply for e in refused] == [REPLY_BARE_LINE_ENDING]  # type: ignore[attr-defined]
    assert len(run.of_type(MailFrom)) == 1
    assert run.codes[-2:] == ["554 5.6.11", "221 2.0.0"]


def test_bare_lf_normalized_when_configured() -> None:
    """smtpd.bare_line_endings = "normalize": bare CR/LF become CRLF; the message is
    accepted and '\\n.\\n' still does not end it."""
    data = HEAD + b"DATA\r\nA\nB\r\nx\n.\nC\rD\r\n.\r\n"
    run = run_all_ways(data, settings=settings(normalize_bare_line_endings=True))
    assert run.messages == [b"A\r\nB\r\nx\r\n.\r\nC\r\nD\r\n"]
    # Dot-stuffing is undone on CRLF lines only (that is what the client stuffed).
    run = run_all_ways(HEAD + b"DATA\r\n..\nA\r\n.\r\n",
                       settings=settings(normalize_bare_line_endings=True))
    assert run.messages == [b".\r\nA\r\n"]


def test_long_bare_lf_message_normalized() -> None:
    """Normalizing must work for a long LF-only message (no CRLF for many lines)."""
    body = b"".join(b"line %d\n" % i for i in range(500))
    run = run_all_ways(HEAD + b"DATA\r\n" + body + b"\r\n.\r\n",
                       settings=settings(normalize_bare_line_endings=True))
    assert run.messages == [body.replace(b"\n", b"\r\n") + b"\r\n"]


def test_data_line_too_long() -> None:
    """RFC 5321 4.5.3.1.6: 1000 octets per text line including CRLF; longer lines get
    500 5.5.6 after the terminator, the message having been discarded."""
    ok = b"x" * 998 + b"\r\n"
    run = run_all_ways(HEAD + b"DATA\r\n" + ok + b".\r\n")
    assert run.messages == [ok]
    run = run_all_ways(HEAD + b"DATA\r\n" + b"x" * 999 + b"\r\n.\r\nNOOP\r\n")
    assert run.messages == []
    assert run.codes[-2:] == ["500 5.5.6", "250 2.0.0"]
    assert run.of_type(MessageRefused)[0].reply == REPLY_LINE_TOO_LONG  # type: ignore[attr-defined]


def test_data_line_without_end_is_bounded() -> None:
    """A huge line without LF is discarded as it comes (memory stays bounded)."""
    conn = ServerConnection(settings(max_line_length=100))
    run = run_session(HEAD + b"DATA\r\n", settings=conn.settings, eof=False)
    for _ in range(100):
        run.conn.receive_data(b"y" * 10_000)
        run.conn.next_event()
        assert run.conn.buffered < 10_001
    run.conn.receive_data(b"\r\n.\r\n")
    from smtpd_core_harness import pump
    pump(run, accept_all)
    assert run.codes[-1] == "500 5.5.6"


def test_command_line_limits() -> None:
    """RFC 5321 4.5.3.1.4: 512 octets for a command line; MAIL/RCPT may reach 2048
    with ESMTP parameters (our documented choice)."""
    long_noop = b"NOOP " + b"a" * 510 + b"\r\n"
    run = run_all_ways(b"EHLO c\r\n" + long_noop + b"NOOP\r\n")
    assert run.codes == ["220", "250", "500 5.5.6", "250 2.0.0"]
    envid = b"e" * 90
    mail = (b"MAIL FROM:<" + b"a" * 200 + b"@c.test> ENVID=" + envid
            + b" AUTH=" + b"x" * 400 + b"\r\n")
    assert 512 < len(mail) < 2048
    run = run_all_ways(b"EHLO c\r\n" + mail)
    assert run.codes[-1] == "250 2.1.0"


def test_very_long_command_line_is_dropped() -> None:
    """A line longer than any limit is discarded while it streams; 500 at its CRLF."""
    run = run_all_ways(b"EHLO c\r\nNOOP " + b"z" * 50_000 + b"\r\nNOOP\r\n")
    assert run.codes == ["220", "250", "500 5.5.6", "250 2.0.0"]


@pytest.mark.parametrize("bad", [b"\x00", b"\r", b"\n"])
def test_cr_lf_nul_in_command(bad: bytes) -> None:
    """RFC 5321 2.3.8 / 4.1.1: commands end only with CRLF; CR, LF or NUL inside an
    argument gets 501 5.5.2."""
    run = run_all_ways(b"EHLO c\r\nMAIL FROM:<a@c" + bad + b".test>\r\nNOOP\r\n")
    assert run.codes == ["220", "250", "501 5.5.2", "250 2.0.0"]
    assert not run.of_type(MailFrom)


def test_bare_lf_does_not_end_command() -> None:
    """A bare LF is not a line ending: 'QUIT\\nNOOP' is one bad line."""
    run = run_all_ways(b"EHLO c\r\nQUIT\nNOOP\r\nNOOP\r\n")
    bad_chars = f"{REPLY_BAD_CHARS.code} {REPLY_BAD_CHARS.status}"
    assert run.codes == ["220", "250", bad_chars, "250 2.0.0"]


def test_unknown_command_and_not_implemented() -> None:
    """RFC 5321 4.2.4: 500 for unrecognized, 502 for known but not implemented."""
    run = run_all_ways(b"EHLO c\r\nFOO bar\r\nEXPN list\r\n")
    assert run.replies[2:] == [REPLY_UNKNOWN_COMMAND.encode(), REPLY_NOT_IMPLEMENTED.encode()]


@pytest.mark.parametrize("commands, reply", [
    (b"MAIL FROM:<a@c.test>\r\n", REPLY_NEED_HELO),
    (b"EHLO c\r\nRCPT TO:<b@mx.test>\r\n", REPLY_NEED_MAIL),
    (b"EHLO c\r\nDATA\r\n", REPLY_NEED_MAIL),
    (b"EHLO c\r\nMAIL FROM:<a@c.test>\r\nDATA\r\n", REPLY_NEED_RCPT),
    (b"EHLO c\r\nMAIL FROM:<a@c.test>\r\nMAIL FROM:<a@c.test>\r\n", REPLY_NESTED_MAIL),
])
def test_out_of_sequence(commands: bytes, reply: Reply) -> None:
    """RFC 5321 4.1.4 / 4.3.2: out-of-sequence commands get 503, each with its own
    reply (they share 503 5.5.1, so the whole reply is compared)."""
    run = run_all_ways(commands)
    assert run.last == reply.encode()


@pytest.mark.parametrize("command", [
    b"MAIL FROM:a@c.test", b"MAIL FRM:<a@c.test>", b"MAIL FROM:<a@@c>", b"RSET now",
    b"QUIT please", b"DATA x",
])
def test_syntax_errors(command: bytes) -> None:
    """RFC 5321 4.2.4: syntax errors in parameters get 501."""
    run = run_all_ways(b"EHLO c\r\n" + command + b"\r\n")
    assert run.codes[-1].startswith("501")


def test_mail_syntax_error_is_5_1_7() -> None:
    run = run_all_ways(b"EHLO c\r\nMAIL FROM:<a b@c>\r\n")
    assert run.last == REPLY_BAD_SENDER_ADDRESS.encode()


def test_unknown_parameter() -> None:
    """RFC 5321 4.1.1.11: unrecognized parameters get 555."""
    run = run_all_ways(b"EHLO c\r\nMAIL FROM:<a@c.test> FOO=1\r\n")
    assert run.last == REPLY_PARAM_NOT_IMPLEMENTED.with_text("Unsupported parameter FOO").encode()


def test_declared_size_over_limit() -> None:
    """RFC 1870 6.1: SIZE= over the limit is refused at MAIL with 552 5.3.4."""
    run = run_all_ways(b"EHLO c\r\nMAIL FROM:<a@c.test> SIZE=1001\r\n"
                       b"MAIL FROM:<a@c.test> SIZE=1000\r\n",
                       settings=settings(max_message_size=1000))
    assert run.codes[2:] == ["552 5.3.4", "250 2.1.0"]


def test_actual_size_over_limit() -> None:
    """RFC 1870 6.3: content over the limit is read to its end and refused 552 5.3.4."""
    body = b"".join(b"line %04d\r\n" % i for i in range(200))
    run = run_all_ways(HEAD + b"DATA\r\n" + body + b".\r\nNOOP\r\n",
                       settings=settings(max_message_size=1000))
    assert run.messages == []
    assert run.codes[-2:] == ["552 5.3.4", "250 2.0.0"]
    assert run.of_type(MessageRefused)[0].reply == REPLY_MESSAGE_TOO_BIG  # type: ignore[attr-defined]


def test_too_many_recipients() -> None:
    """RFC 5321 4.5.3.1.10: 452 4.5.3 past the limit; the transaction goes on."""
    rcpts = b"".join(b"RCPT TO:<u%d@mx.test>\r\n" % i for i in range(102))
    run = run_all_ways(b"EHLO c\r\nMAIL FROM:<a@c.test>\r\n" + rcpts + b"DATA\r\nx\r\n.\r\n",
                       settings=settings(max_recipients=100))
    assert run.codes.count("250 2.1.5") == 100
    assert run.codes.count("452 4.5.3") == 2
    assert run.has(REPLY_TOO_MANY_RECIPIENTS)
    assert run.codes[-1] == "250 2.0.0"


def test_smtputf8_required_for_non_ascii() -> None:
    """RFC 6531 3.4: non-ASCII addresses need SMTPUTF8 on MAIL: 553 5.6.7."""
    run = run_all_ways("EHLO c\r\nMAIL FROM:<ü@c.test>\r\n"
                       "MAIL FROM:<a@c.test>\r\nRCPT TO:<ü@mx.test>\r\n".encode())
    assert run.codes[2:] == ["553 5.6.7", "250 2.1.0", "553 5.6.7"]
    run = run_all_ways("EHLO c\r\nMAIL FROM:<ü@c.test> SMTPUTF8\r\n"
                       "RCPT TO:<ö@mx.test>\r\n".encode(), eof=False)
    assert run.codes[2:] == ["250 2.1.0", "250 2.1.5"]
    assert run.conn.transaction.smtputf8
    assert REPLY_NEEDS_SMTPUTF8.status == "5.6.7"


def test_dsn_parameters_stored() -> None:
    """RFC 3461 4.1-4.4: RET, ENVID (xtext), NOTIFY, ORCPT reach the envelope."""
    run = run_all_ways(b"EHLO c\r\nMAIL FROM:<a@c.test> RET=HDRS ENVID=id+2B1\r\n"
                       b"RCPT TO:<b@mx.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b+40mx.test\r\n"
                       b"RCPT TO:<c@mx.test> NOTIFY=NEVER\r\n", eof=False)
    env = run.conn.transaction.envelope(client_ip="192.0.2.1")
    assert (env.ret, env.envid) == ("HDRS", "id+1")
    assert env.recipients[0].dsn.notify == ("SUCCESS", "FAILURE")
    assert env.recipients[0].dsn.orcpt == "rfc822;b@mx.test"
    assert env.recipients[1].dsn.notify == ("NEVER",)


@pytest.mark.parametrize("param", [b"RET=ALL", b"NOTIFY=NEVER,SUCCESS", b"ORCPT=x", b"ENVID=a+zz"])
def test_dsn_parameters_validated(param: bytes) -> None:
    """RFC 3461 4: malformed DSN parameters get 501."""
    cmd = b"MAIL FROM:<a@c.test> " + param if param.startswith((b"RET", b"ENVID")) else \
        b"MAIL FROM:<a@c.test>\r\nRCPT TO:<b@mx.test> " + param
    run = run_all_ways(b"EHLO c\r\n" + cmd + b"\r\n")
    assert run.codes[-1].startswith("501")


def test_body_types() -> None:
    """RFC 6152 / RFC 3030 3: BODY=8BITMIME ok; BINARYMIME forbids DATA."""
    run = run_all_ways(b"EHLO c\r\nMAIL FROM:<a@c.test> BODY=8BITMIME\r\nRSET\r\n"
                       b"MAIL FROM:<a@c.test> BODY=BINARYMIME\r\nRCPT TO:<b@mx.test>\r\nDATA\r\n")
    assert run.codes[2:] == ["250 2.1.0", "250 2.0.0", "250 2.1.0", "250 2.1.5",
                             f"503 {REPLY_BAD_SEQUENCE.status}"]


def test_too_many_errors_closes() -> None:
    """Hard errors past smtpd.max_errors: 421 and close."""
    run = run_all_ways(b"EHLO c\r\n" + b"BOGUS\r\n" * 5 + b"NOOP\r\n",
                       settings=settings(max_errors=3))
    assert run.codes == ["220", "250", "500 5.5.1", "500 5.5.1", "500 5.5.1",
                         f"421 {REPLY_TOO_MANY_ERRORS.status}"]
    assert run.conn.closed


def test_received_header_loop() -> None:
    """RFC 5321 6.3: too many Received fields (header section only): 554 5.4.6."""
    received = b"Received: from x by y; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
    body = received * 4 + b"Subject: s\r\n\r\n" + received * 10
    run = run_all_ways(HEAD + b"DATA\r\n" + body + b".\r\n",
                       settings=settings(max_received_headers=4))
    assert run.messages == [body]
    run = run_all_ways(HEAD + b"DATA\r\n" + b"rEcEiVeD: a\r\n" * 5 + b"\r\nb\r\n.\r\n",
                       settings=settings(max_received_headers=4))
    assert run.messages == []
    assert run.last == REPLY_LOOP.encode()


def test_rset_noop_help_vrfy_quit() -> None:
    """RFC 5321 4.1.1.5-4.1.1.10."""
    run = run_all_ways(b"EHLO c\r\nMAIL FROM:<a@c.test>\r\nRSET\r\nRCPT TO:<b@mx.test>\r\n"
                       b"NOOP hello\r\nHELP\r\nVRFY someone\r\nQUIT\r\nNOOP\r\n")
    assert run.codes[2:] == ["250 2.1.0", "250 2.0.0", "503 5.5.1", "250 2.0.0", "214 2.0.0",
                             f"252 {REPLY_VRFY_CANNOT.status}", f"221 {REPLY_BYE.status}"]
    assert [e.reason for e in run.of_type(TransactionAborted)] == ["rset"]  # type: ignore[attr-defined]


def test_policy_rejection() -> None:
    """A policy 550 at RCPT; the transaction continues with the accepted recipients."""
    def policy(conn: ServerConnection, event: object) -> None:
        if isinstance(event, RcptTo) and event.address.startswith("nobody"):
            conn.reject(REPLY_UNKNOWN_USER)
        else:
            accept_all(conn, event)  # type: ignore[arg-type]
    run = run_all_ways(b"EHLO c\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<nobody@mx.test>\r\n"
                       b"RCPT TO:<b@mx.test>\r\nDATA\r\nx\r\n.\r\n", policy=policy)
    assert run.codes[2:] == ["250 2.1.0", "550 5.1.1", "250 2.1.5", "354", "250 2.0.0"]
    assert [r.address for r in run.conn.transaction.recipients] == []  # reset after queueing


def test_pipelining_with_deferred_decisions() -> None:
    """RFC 2920 3.1: a pipelined group is answered in order even when decisions come
    later; nothing after a pending decision is processed before it is answered."""
    conn = ServerConnection(SETTINGS)
    conn.greet()
    conn.data_to_send()
    conn.receive_data(HEAD + b"DATA\r\nNOOP\r\n")
    seen: list[object] = []
    while True:
        event = conn.next_event()
        if event is PAUSED:
            # Still waiting: the reply to the pending command is not out, and the next
            # command was not looked at yet.
            assert conn.next_event() is PAUSED
            seen.append(conn.pending)
            if isinstance(conn.pending, DataStart):
                break
            conn.accept()
            continue
        assert event.needs_decision  # type: ignore[union-attr]
    assert [type(e) for e in seen] == [Helo, MailFrom, RcptTo, DataStart]
    out = conn.data_to_send()
    assert out.endswith(b"250 2.1.0 Sender OK\r\n250 2.1.5 Recipient OK\r\n")
    assert b"354" not in out
    conn.accept()
    assert conn.data_to_send() == b"354 End data with <CR><LF>.<CR><LF>\r\n"
    # "NOOP" arrived pipelined after DATA, so it is message content now.
    assert isinstance(conn.next_event(), DataChunk)


def test_streaming_content_is_not_held() -> None:
    """Content comes out as it arrives; the core keeps at most a partial line."""
    run = run_session(HEAD + b"DATA\r\n", eof=False)
    line = b"0123456789" * 7 + b"\r\n"
    total = 0
    for _ in range(200):
        run.conn.receive_data(line * 900)  # ~64 KB
        event = run.conn.next_event()
        if isinstance(event, HeaderSection):  # once, cut at MAX_HEADER_BLOCK
            event = run.conn.next_event()
        assert isinstance(event, DataChunk)
        total += len(event.data)
        assert run.conn.buffered == 0
    assert total == len(line) * 900 * 200


def test_eof_in_data_aborts() -> None:
    run = run_all_ways(HEAD + b"DATA\r\npartial\r\n")
    assert [e.reason for e in run.of_type(TransactionAborted)] == ["connection lost"]  # type: ignore[attr-defined]
    assert run.conn.next_event() is CLOSED


def test_message_refusal_by_policy_resets() -> None:
    """A storage failure at commit: the reply given, the transaction reset."""
    from mailyard.proto.smtp.replies import REPLY_STORAGE_ERROR

    def policy(conn: ServerConnection, event: object) -> None:
        if isinstance(event, MessageComplete):
            conn.reject(REPLY_STORAGE_ERROR)
        else:
            accept_all(conn, event)  # type: ignore[arg-type]
    run = run_all_ways(HEAD + b"DATA\r\nx\r\n.\r\nRCPT TO:<b@mx.test>\r\n", policy=policy)
    assert run.codes[-2:] == ["451 4.3.0", "503 5.5.1"]


def test_splits_cover_all_modes() -> None:
    assert SPLITS == ("whole", "bytes", "random")
    assert REPLY_QUEUED.code == 250 and REPLY_SENDER_OK.code == 250 and REPLY_RCPT_OK.code == 250


def test_http_request_closes() -> None:
    """Cross-protocol requests (an HTTP proxy pointed at port 25) are not SMTP:
    421 and close, nothing after them is read."""
    run = run_all_ways(b"POST / HTTP/1.1\r\nHost: mx\r\n\r\nMAIL FROM:<a@b>\r\n")
    assert run.codes == ["220", "421 4.7.0"]
    assert run.conn.closed


@pytest.mark.parametrize("name", [b"evil\x1b]0;PWNED\x07.example", b"a\tb", b"x\x7f",
                                  "x\u009b31m".encode()])
def test_helo_with_control_characters_refused(name: bytes) -> None:
    """The EHLO/HELO argument is a domain or address literal (RFC 5321 4.1.1.1): a
    control character is refused with 501 and the session stays usable."""
    run = run_all_ways(b"EHLO " + name + b"\r\nHELO " + name + b"\r\nEHLO ok.test\r\n")
    assert run.codes == ["220", f"501 {REPLY_BAD_CHARS.status}", f"501 {REPLY_BAD_CHARS.status}",
                         "250"]
    assert not [e for e in run.events if isinstance(e, Helo) and e.name != "ok.test"]


@pytest.mark.parametrize("name", [b"[1.2.3.4", b"[1.2.3.999]", b"[IPv6:1::2::3]", b"[]",
                                  b"[foo]", b"[1.2.3.4]x", b"[:x]"])
def test_helo_with_a_malformed_address_literal_refused(name: bytes) -> None:
    """An address literal must be one (RFC 5321 4.1.3): 501 5.5.4, session usable;
    the well-formed ones, and any domain, are taken."""
    run = run_all_ways(b"EHLO " + name + b"\r\nHELO " + name + b"\r\nEHLO ok.test\r\n")
    assert run.codes == ["220", f"501 {REPLY_SYNTAX.status}", f"501 {REPLY_SYNTAX.status}",
                         "250"]
    assert not [e for e in run.events if isinstance(e, Helo) and e.name != "ok.test"]


@pytest.mark.parametrize("name", [b"[192.0.2.1]", b"[IPv6:2001:db8::1]", b"[x-tag:content]",
                                  b"unchecked..domain", b"mx.example"])
def test_helo_names_taken(name: bytes) -> None:
    run = run_all_ways(b"EHLO " + name + b"\r\n")
    assert run.codes == ["220", "250"]


def test_adapter_misuse_is_a_local_protocol_error() -> None:
    """Answering a decision that is not pending, or with the wrong method, is the
    adapter's bug: LocalProtocolError (the same type the client core raises)."""
    conn = ServerConnection(SETTINGS)
    conn.greet()
    with pytest.raises(LocalProtocolError):
        conn.accept()
    with pytest.raises(LocalProtocolError):
        conn.tls_established()
    conn.receive_data(b"EHLO c\r\n")
    assert isinstance(conn.next_event(), Helo)
    with pytest.raises(LocalProtocolError):
        conn.accept_scram(None)
