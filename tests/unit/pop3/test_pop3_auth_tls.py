"""POP3 core: STLS (RFC 2595), USER/PASS policy (RFC 1939 7), AUTH (RFC 5034)."""

from __future__ import annotations

import base64

from pop3_core_harness import SETTINGS, run_all_ways

from mailyard.proto.pop3 import NEED_DATA, PAUSED, AuthFailed, Login, Pop3Connection, Pop3Settings

STORED = {"u1": b"Subject: s\r\n\r\nbody\r\n"}
PLAIN_OK = base64.b64encode(b"\0alice\0secret")
PLAIN_BAD = base64.b64encode(b"\0alice\0wrong")


def test_rfc2595_user_refused_before_tls() -> None:
    """RFC 2595 3.1 / RFC 8314: before TLS USER gets -ERR [AUTH] and AUTH likewise."""
    run = run_all_ways(b"USER alice\r\nPASS secret\r\nAUTH PLAIN " + PLAIN_OK + b"\r\n",
                       tls=False, stored=STORED)
    assert run.lines[1].startswith(b"-ERR [AUTH] Plaintext authentication disallowed")
    assert run.lines[2] == b"-ERR Command not valid in this state"
    assert run.lines[3].startswith(b"-ERR [AUTH] Plaintext")
    assert run.of_type(Login) == []


def test_plaintext_login_when_policy_allows() -> None:
    """RFC 1939 7: USER/PASS without TLS where the operator allows it."""
    settings = Pop3Settings(hostname="pop.test", allow_plaintext_login=True)
    run = run_all_ways(b"CAPA\r\nUSER alice\r\nPASS secret\r\nSTAT\r\n", tls=False,
                       stored=STORED, settings=settings)
    assert b"USER" in run.lines and b"+OK 1 20" in run.lines


def test_rfc2595_stls_discards_pipelined_plaintext() -> None:
    """RFC 2595 4 (CVE-2011-0411): commands sent after STLS in the same packet are
    dropped, and so is anything arriving before the handshake ends; afterwards the
    session starts over on TLS and STLS is no longer offered."""
    conn = Pop3Connection(SETTINGS, tls_active=False)
    conn.greet()
    conn.receive_data(b"STLS\r\nUSER injected\r\nPASS secret\r\n")
    assert conn.next_event() is PAUSED and conn.tls_pending
    conn.receive_data(b"CAPA\r\n")  # still plaintext: ignored
    assert conn.data_to_send() == (b"+OK pop.test POP3 server ready\r\n"
                                   b"+OK Begin TLS negotiation\r\n")
    conn.tls_established()
    assert conn.next_event() is NEED_DATA and conn.data_to_send() == b""
    conn.receive_data(b"CAPA\r\n")
    assert conn.next_event() is NEED_DATA
    capa = conn.data_to_send().split(b"\r\n")
    assert b"STLS" not in capa and b"USER" in capa and conn.username == ""


def test_rfc2595_no_stls_twice_or_after_login() -> None:
    """RFC 2595 4: STLS only once and only in AUTHORIZATION."""
    run = run_all_ways(b"STLS\r\nUSER a\r\nPASS secret\r\nSTLS\r\n", tls=True, stored=STORED)
    assert run.lines[1] == b"-ERR TLS already active"
    assert run.lines[4] == b"-ERR Command not valid in this state"
    unavailable = run_all_ways(b"STLS\r\n", tls=False,
                               settings=Pop3Settings(hostname="pop.test"))
    assert unavailable.lines[1] == b"-ERR STLS not available"


def test_rfc5034_auth_with_initial_response() -> None:
    """RFC 5034 4: AUTH PLAIN with SASL-IR; the password goes to the Login decision."""
    run = run_all_ways(b"AUTH PLAIN " + PLAIN_OK + b"\r\nSTAT\r\n", stored=STORED)
    assert run.lines[1:] == [b"+OK maildrop has 1 messages (20 octets)", b"+OK 1 20"]
    login = run.of_type(Login)[0]
    assert (login.username, login.mechanism, login.password) == ("alice", "PLAIN", "secret")  # type: ignore[attr-defined]


def test_rfc5034_auth_continuation_and_empty_initial() -> None:
    """RFC 5034 4: without an initial response the server sends "+ " and reads one
    base64 line; "=" is an empty initial response."""
    run = run_all_ways(b"AUTH PLAIN\r\n" + PLAIN_OK + b"\r\nAUTH PLAIN =\r\n", stored=STORED)
    assert run.lines[1] == b"+ "
    assert run.lines[2].startswith(b"+OK maildrop")
    assert run.lines[3] == b"-ERR Command not valid in this state"


def test_rfc5034_cancel_and_bad_base64() -> None:
    """RFC 5034 4: "*" cancels with -ERR; undecodable base64 is refused with -ERR."""
    run = run_all_ways(b"AUTH PLAIN\r\n*\r\nAUTH PLAIN\r\n%%%\r\nAUTH PLAIN !!\r\n")
    assert run.lines[1:] == [b"+ ", b"-ERR Authentication cancelled", b"+ ",
                             b"-ERR Invalid base64 in SASL response",
                             b"-ERR Invalid base64 in SASL response"]


def test_rfc5034_success_data_sent_as_challenge() -> None:
    """RFC 5034 4: data with success goes out as a last "+ " challenge; the client
    answers with an empty line before +OK."""
    data = (b"AUTH X-FAKE-SCRAM " + base64.b64encode(b"bob") + b"\r\n"
            + base64.b64encode(b"proof") + b"\r\n\r\nNOOP\r\n")
    run = run_all_ways(data, stored=STORED)
    assert run.lines[1:] == [b"+ " + base64.b64encode(b"r=nonce"),
                             b"+ " + base64.b64encode(b"v=verifier"),
                             b"+OK maildrop has 1 messages (20 octets)", b"+OK"]


def test_rfc5034_unknown_mechanism() -> None:
    """RFC 5034 4: a mechanism not offered is refused with -ERR."""
    run = run_all_ways(b"AUTH GSSAPI\r\nAUTH\r\n")
    assert run.lines[1:] == [b"-ERR Unsupported authentication mechanism",
                             b"-ERR Syntax: AUTH mechanism [initial-response]"]


def test_rfc3206_auth_failures_delay_then_close() -> None:
    """RFC 3206 4 and RFC 5034 6: bad credentials get -ERR [AUTH] after the adapter's
    delay (AuthFailed decision); the max_auth_failures-th closes the connection."""
    settings = Pop3Settings(hostname="pop.test", max_auth_failures=3,
                            sasl_mechanisms=("PLAIN", "X-FAKE-SCRAM"))
    data = (b"USER a\r\nPASS wrong\r\nAUTH PLAIN " + PLAIN_BAD + b"\r\n"
            b"AUTH X-FAKE-SCRAM Ym9i\r\nbm9wZQ==\r\nUSER a\r\nPASS secret\r\n")
    run = run_all_ways(data, settings=settings, stored=STORED)
    assert run.lines[1:] == [b"+OK Send PASS", b"-ERR [AUTH] Authentication failed",
                             b"-ERR [AUTH] Authentication failed",
                             b"+ " + base64.b64encode(b"r=nonce"),
                             b"-ERR [AUTH] Too many authentication failures, closing connection"]
    assert [e.failures for e in run.of_type(AuthFailed)] == [1, 2, 3]  # type: ignore[attr-defined]
    assert run.conn.closed and run.of_type(Login)[-1].password == "wrong"  # type: ignore[attr-defined]


def test_rfc1939_apop_not_offered() -> None:
    """RFC 1939 7: APOP is optional; Mailyard does not offer it (no timestamp in the
    greeting) and answers -ERR."""
    run = run_all_ways(b"APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n")
    assert b"<" not in run.lines[0]
    assert run.lines[1] == b"-ERR APOP not supported"
