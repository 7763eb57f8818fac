"""The IMAP connection core: transcripts fed whole, byte by byte and in random
pieces (RFC 9051 and RFC 3501 examples), states, STARTTLS, AUTHENTICATE, IDLE,
APPEND streaming, limits and hostile input."""

from __future__ import annotations

import base64
import dataclasses

import pytest
from imap_core_harness import SETTINGS, FakePlain, run_all_ways, run_session

from mailyard.proto.imap.events import (
    AppendAborted,
    AppendData,
    AppendRequested,
    AuthResult,
    Enabled,
    LoginRequested,
    SaslChallenge,
    SaslSuccess,
    SelectRequested,
    StartTlsRequested,
)
from mailyard.proto.imap.server import LocalProtocolError, ServerConnection
from mailyard.proto.imap.states import State

TLS_SETTINGS = dataclasses.replace(SETTINGS, plaintext_auth=False, starttls=True)
LOGIN = b"a0 LOGIN alice secret\r\n"


def test_rfc9051_sample_session() -> None:
    """RFC 9051 8 (and RFC 3501 8): the sample IMAP4rev2 connection."""
    run = run_all_ways(
        b"a001 login mrc secret\r\n" b"a001 LOGIN alice secret\r\n" b"a002 select inbox\r\n"
        b"a003 fetch 12 full\r\n" b"a004 fetch 12 body[header]\r\n"
        b"a005 store 12 +flags \\deleted\r\n" b"a006 logout\r\n")
    assert run.tagged() == [(b"a001", b"NO"), (b"a001", b"OK"), (b"a002", b"OK"),
                            (b"a003", b"OK"), (b"a004", b"OK"), (b"a005", b"OK"),
                            (b"a006", b"OK")]
    assert run.output.startswith(b"* OK [CAPABILITY IMAP4rev2 IMAP4rev1 ")
    assert b"a002 OK [READ-WRITE] SELECT completed\r\n" in run.output
    assert b"* BYE imap.test logging out\r\na006 OK LOGOUT completed\r\n" in run.output
    assert run.conn.closed and run.conn.state is State.LOGOUT
    auth = run.of_type(AuthResult)
    assert [a.success for a in auth] == [False, True]  # type: ignore[attr-defined]


def test_commands_valid_only_in_their_state() -> None:
    """RFC 9051 6 and 3: a command outside its state is BAD; a failed SELECT leaves
    the authenticated state (6.3.2); ENABLE only before SELECT (RFC 5161 3.1)."""
    run = run_all_ways(
        b"a1 FETCH 1 FLAGS\r\na2 SELECT INBOX\r\n" + LOGIN +
        b"a3 FETCH 1 FLAGS\r\na4 LOGIN alice secret\r\na5 SELECT INBOX\r\n"
        b"a6 ENABLE CONDSTORE\r\na7 SELECT nosuch\r\na8 FETCH 1 FLAGS\r\n"
        b"a9 CLOSE\r\n")
    assert [s for _, s in run.tagged()] == [b"BAD", b"BAD", b"OK", b"BAD", b"BAD", b"OK",
                                            b"BAD", b"NO", b"BAD", b"BAD"]
    assert b"* OK [CLOSED] Previous mailbox closed" in run.output  # RFC 7162 3.2.11
    assert run.conn.state is State.AUTHENTICATED


def test_pipelined_commands_answered_in_order() -> None:
    """RFC 9051 5.5: pipelined commands are processed, and answered, in order."""
    run = run_all_ways(LOGIN + b"b1 SELECT INBOX\r\nb2 NOOP\r\nb3 UID SEARCH ALL\r\n"
                       b"b4 FETCH 1 UID\r\nb5 CAPABILITY\r\nb6 UNSELECT\r\nb7 NOOP\r\n")
    assert [t for t, _ in run.tagged()] == [b"a0", b"b1", b"b2", b"b3", b"b4", b"b5", b"b6",
                                            b"b7"]
    assert run.output.index(b"* SEARCH 2 84 882") < run.output.index(b"b3 OK")


def test_logindisabled_and_starttls() -> None:
    """RFC 9051 6.2.1, 6.2.3, 7.2.2: before TLS LOGINDISABLED, no AUTH=, LOGIN and
    AUTHENTICATE are NO [PRIVACYREQUIRED]; after STARTTLS the capabilities change."""
    run = run_all_ways([b"a1 CAPABILITY\r\na2 LOGIN alice secret\r\n"
                        b"a3 AUTHENTICATE PLAIN\r\na4 STARTTLS\r\n",
                        b"a5 CAPABILITY\r\na6 LOGIN alice secret\r\na7 STARTTLS\r\n"],
                       settings=TLS_SETTINGS)
    lines = run.lines
    before = next(ln for ln in lines if ln.startswith(b"* CAPABILITY"))
    assert b"LOGINDISABLED" in before and b"STARTTLS" in before and b"AUTH=" not in before
    assert run.line_of(b"a2") == b"a2 NO [PRIVACYREQUIRED] LOGIN is disabled; use STARTTLS first"
    assert run.status_of(b"a3") == b"NO"
    assert run.line_of(b"a4") == b"a4 OK Begin TLS negotiation now"
    after = [ln for ln in lines if ln.startswith(b"* CAPABILITY")][1]
    assert b"LOGINDISABLED" not in after and b"AUTH=PLAIN" in after and b"STARTTLS" not in after
    assert run.status_of(b"a6") == b"OK"
    assert run.status_of(b"a7") == b"BAD"  # STARTTLS only in not-authenticated state


def test_starttls_discards_pipelined_plaintext() -> None:
    """RFC 9051 6.2.1 and 11.1 (CVE-2011-0411-style injection): bytes sent with
    STARTTLS, before the handshake, are discarded, never executed."""
    run = run_session(b"a1 STARTTLS\r\na2 LOGIN alice secret\r\n", settings=TLS_SETTINGS)
    assert run.of_type(StartTlsRequested) and not run.of_type(LoginRequested)
    assert b"a2" not in run.output and run.conn.session.tls


def test_authenticate_exchange_with_fake_sasl() -> None:
    """RFC 9051 6.2.2: ``+`` challenges in base64, responses on their own lines,
    ``*`` cancels with BAD, bad base64 is BAD; SASL-IR (RFC 4959) needs no round
    trip."""
    plain = base64.b64encode(b"\x00alice\x00secret")
    run = run_all_ways(b"a1 AUTHENTICATE PLAIN\r\n*\r\na2 AUTHENTICATE PLAIN\r\n!!\r\n"
                       b"a3 AUTHENTICATE PLAIN\r\n" + plain + b"\r\na4 NOOP\r\n")
    assert run.tagged() == [(b"a1", b"BAD"), (b"a2", b"BAD"), (b"a3", b"OK"), (b"a4", b"OK")]
    assert run.output.count(b"+ \r\n") == 3
    assert run.conn.session.user == "alice" and run.conn.state is State.AUTHENTICATED
    ir = run_all_ways(b"a1 AUTHENTICATE PLAIN " + plain + b"\r\n")
    assert ir.status_of(b"a1") == b"OK" and b"+ " not in ir.output


def test_authenticate_failures_end_the_connection() -> None:
    """RFC 9051 6.2.2 NO [AUTHENTICATIONFAILED] (RFC 5530); repeated failures end
    with BYE; an unknown mechanism is NO."""
    bad = base64.b64encode(b"\x00alice\x00wrong")
    run = run_all_ways(b"a0 AUTHENTICATE CRAM-MD5\r\n" +
                       b"".join(b"a%d AUTHENTICATE PLAIN %s\r\n" % (i, bad) for i in (1, 2, 3))
                       + b"a4 NOOP\r\n")
    assert run.status_of(b"a0") == b"NO"
    assert run.line_of(b"a1") == b"a1 NO [AUTHENTICATIONFAILED] Authentication failed"
    assert b"* BYE Too many authentication failures\r\n" in run.output
    assert b"a4" not in run.output and run.conn.closed


def test_sasl_exchange_protocol_fake() -> None:
    """The SaslExchange seam: a fake mechanism drives challenge and success."""
    fake = FakePlain()
    assert fake.step(None) == SaslChallenge(b"")
    assert fake.step(b"\x00alice\x00secret") == SaslSuccess("alice")


def test_synchronizing_literal_gets_continuation() -> None:
    """RFC 9051 4.3 and 7.6: ``{n}`` gets ``+`` before the client sends the octets;
    LITERAL+ ``{n+}`` (RFC 7888 3) does not."""
    run = run_all_ways(b"a1 LOGIN {5}\r\nalice {6}\r\nsecret\r\n")
    assert run.output.count(b"+ Ready for literal data\r\n") == 2
    assert run.status_of(b"a1") == b"OK"
    run = run_all_ways(b"a1 LOGIN {5+}\r\nalice {6+}\r\nsecret\r\n")
    assert b"+ Ready" not in run.output and run.status_of(b"a1") == b"OK"


def test_literal_refused_before_it_is_sent() -> None:
    """RFC 9051 4.3: a synchronising literal may be refused with a tagged BAD instead
    of ``+``; the client then does not send it.  Before authentication the limit is
    small ([TOOBIG], RFC 9051 7.1)."""
    run = run_all_ways(b"a1 LOGIN {99999999999}\r\na2 FETCH {3}\r\na3 NOOP\r\n")
    assert run.line_of(b"a1") == b"a1 BAD [TOOBIG] Literal too big"
    assert run.line_of(b"a2").startswith(b"a2 BAD FETCH is not valid")
    assert run.status_of(b"a3") == b"OK" and b"+ " not in run.output


def test_literal_minus_and_oversized_nonsync_literal() -> None:
    """RFC 7888 5 (LITERAL-): a non-synchronising literal over 4096 octets, or over
    our limit, cannot be refused without losing sync: BYE [TOOBIG]."""
    run = run_all_ways(b"a1 LOGIN {5000+}\r\n" + b"x" * 5000 + b" y\r\n")
    assert b"* BYE [TOOBIG]" in run.output and run.conn.closed
    assert not run.of_type(LoginRequested)
    plus = dataclasses.replace(SETTINGS, literal_plus=True)
    run = run_all_ways(b"a1 LOGIN {5000+}\r\n" + b"x" * 5000 + b" y\r\n", settings=plus)
    assert b"* BYE [TOOBIG]" in run.output  # still above the pre-auth literal limit


def test_idle() -> None:
    """RFC 9051 6.3.13 (RFC 2177): ``+ idling``, updates while idle, DONE ends it;
    anything else is BAD."""
    run = run_all_ways(LOGIN + b"a1 SELECT INBOX\r\na2 IDLE\r\nDONE\r\na3 IDLE\r\nnope\r\n"
                       b"a4 NOOP\r\n")
    assert b"+ idling\r\n* 173 EXISTS\r\na2 OK IDLE terminated\r\n" in run.output
    assert run.line_of(b"a3") == b"a3 BAD Expected DONE"
    assert run.status_of(b"a4") == b"OK"


def test_append_streams_the_message() -> None:
    """RFC 9051 6.3.12 example: the message arrives as AppendData, never buffered
    as a whole by the core; ``+`` only after the store accepted the head."""
    message = (b"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\nFrom: Fred Foobar "
               b"<foobar@Blurdybloop.example>\r\nSubject: afternoon meeting\r\n\r\n"
               b"Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n")
    run = run_all_ways(LOGIN + b'A003 APPEND saved-messages (\\Seen) "17-Jul-1996 02:44:25 '
                       b'-0700" {%d}\r\n' % len(message) + message + b"\r\nA004 NOOP\r\n")
    assert run.store.appended == [message]
    assert b"+ Ready for literal data\r\n" in run.output
    assert run.line_of(b"A003") == b"A003 OK [APPENDUID 38505 3955] APPEND completed"
    assert run.status_of(b"A004") == b"OK"
    pieces = run_session(LOGIN + b"a1 APPEND INBOX {%d}\r\n" % len(message) + message
                         + b"\r\n", "bytes")
    assert len(pieces.of_type(AppendData)) == len(message)  # streamed, byte by byte here


def test_append_refused() -> None:
    """RFC 9051 6.3.12: NO [TRYCREATE] before the ``+`` (the client does not send);
    a non-synchronising literal is read and discarded first (RFC 7888 4); too big is
    NO [TOOBIG]; extra data after the message (MULTIAPPEND) is BAD."""
    run = run_all_ways(LOGIN + b"a1 APPEND missing {5}\r\na2 APPEND missing {5+}\r\nhello\r\n"
                       b"a3 APPEND INBOX {99999999999}\r\na4 APPEND INBOX {2+}\r\nhi x\r\n"
                       b"a5 NOOP\r\n")
    assert run.line_of(b"a1") == b"a1 NO [TRYCREATE] No such mailbox"
    assert run.line_of(b"a2") == b"a2 NO [TRYCREATE] No such mailbox"
    assert run.line_of(b"a3") == b"a3 NO [TOOBIG] Message too big"
    assert run.status_of(b"a4") == b"BAD" and run.of_type(AppendAborted)
    assert run.status_of(b"a5") == b"OK" and b"+ " not in run.output
    assert run.store.appended == []


def test_append_connection_lost() -> None:
    """An APPEND cut short by the connection's end tells the store to discard it."""
    run = run_session(LOGIN + b"a1 APPEND INBOX {100+}\r\nonly part")
    assert run.of_type(AppendRequested) and run.of_type(AppendAborted)


def test_examine_is_read_only() -> None:
    """RFC 9051 6.3.3: EXAMINE opens read-only: [READ-ONLY]; STORE, EXPUNGE and MOVE
    are refused."""
    run = run_all_ways(LOGIN + b"a1 EXAMINE INBOX\r\na2 STORE 1 +FLAGS \\Seen\r\n"
                       b"a3 EXPUNGE\r\na4 UID MOVE 1 Sent\r\na5 COPY 1 Sent\r\n")
    assert run.line_of(b"a1") == b"a1 OK [READ-ONLY] SELECT completed"
    assert [s for _, s in run.tagged()][2:] == [b"NO", b"NO", b"NO", b"OK"]


def test_enable_and_utf8_mailbox_names() -> None:
    """RFC 5161 3.1 ENABLE, RFC 6855 3 UTF8=ACCEPT (UTF-8 mailbox names), RFC 7162
    3.2.3 (QRESYNC implies CONDSTORE) and 3.2.5 (QRESYNC SELECT needs ENABLE)."""
    name = "Ölkanne".encode()
    run = run_all_ways(LOGIN + b'a1 SELECT "' + name + b'"\r\n'
                       b"a2 SELECT INBOX (QRESYNC (1 2))\r\n"
                       b"a3 ENABLE UTF8=ACCEPT QRESYNC X-UNKNOWN\r\na4 ENABLE QRESYNC\r\n"
                       b'a5 SELECT "' + name + b'"\r\n')
    assert run.status_of(b"a1") == b"BAD" and run.status_of(b"a2") == b"BAD"
    assert b"* ENABLED UTF8=ACCEPT QRESYNC\r\na3 OK" in run.output
    assert b"* ENABLED\r\na4 OK" in run.output
    assert run.status_of(b"a5") == b"OK"
    assert run.conn.session.enabled == {"UTF8=ACCEPT", "QRESYNC", "CONDSTORE"}
    assert [e.capabilities for e in run.of_type(Enabled)] == [  # type: ignore[attr-defined]
        ("UTF8=ACCEPT", "QRESYNC")]
    select = run.of_type(SelectRequested)
    assert select[0].command.mailbox.name == "Ölkanne"  # type: ignore[attr-defined]


def test_id_namespace() -> None:
    """RFC 2971 3.1 ID and RFC 2342 5 NAMESPACE."""
    run = run_all_ways(b'a1 ID ("name" "sodr")\r\n' + LOGIN + b"a2 NAMESPACE\r\n")
    assert b'* ID ("name" "Mailyard")\r\na1 OK' in run.output
    assert b'* NAMESPACE (("" "/")) NIL NIL\r\na2 OK' in run.output


@pytest.mark.parametrize("data, expected", [
    (b"a1 NO\x00OP\r\n", b"a1 BAD NUL in a command line"),
    (b"\r\n", b"* BAD Empty command line"),
    (b"+x NOOP\r\n", b"* BAD Missing or invalid tag"),
    (b"a1 LOGIN {3+}\r\na\x00b\r\n", b"a1 BAD NUL in a literal (RFC 9051 4.3; use a literal8)"),
    (LOGIN + b"a1 SELECT INBOX\r\na2 SEARCH " + b"(" * 100 + b"ALL" + b")" * 100 + b"\r\n",
     b"a2 BAD [LIMIT] Too deeply nested"),
    (LOGIN + b"a1 SELECT INBOX\r\na2 FETCH " + b"1:*," * 10_001 + b"1 FLAGS\r\n",
     b"a2 BAD [LIMIT] Sequence set has too many elements"),
])
def test_hostile_input_answered_bad(data: bytes, expected: bytes) -> None:
    """RFC 9051 7.1.3 BAD for malformed commands, with [LIMIT] (RFC 5530 3) for
    limits; the connection survives."""
    run = run_all_ways(data + b"z9 NOOP\r\n")
    assert expected + b"\r\n" in run.output
    assert run.status_of(b"z9") == b"OK"


def test_overlong_line_and_too_many_bad_commands() -> None:
    """RFC 9051 7.1.5 BYE with [TOOBIG] for a line over the limit (it cannot be
    resynchronised); too many BAD commands end the connection."""
    run = run_all_ways(b"a1 NOOP " + b"x" * 70_000 + b"\r\na2 NOOP\r\n")
    assert b"* BYE [TOOBIG] Command line too long\r\n" in run.output
    assert b"a2" not in run.output and run.conn.closed
    run = run_all_ways(b"x FROB\r\n" * 25)
    assert run.output.count(b"x BAD") == 20 and b"* BYE Too many bad commands" in run.output


def test_core_misuse_raises() -> None:
    """Adapter errors are LocalProtocolError, not silent."""
    conn = ServerConnection(SETTINGS)
    conn.greet()
    with pytest.raises(LocalProtocolError):
        conn.complete("OK")
    with pytest.raises(LocalProtocolError):
        conn.tls_established()
