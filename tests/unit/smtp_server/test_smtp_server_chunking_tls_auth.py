"""Transcript tests: CHUNKING/BDAT (RFC 3030), STARTTLS (RFC 3207), AUTH (RFC 4954)."""

from __future__ import annotations

import base64
import dataclasses

from smtpd_core_harness import accept_all, run_all_ways, run_session

from mailyard.proto.smtp.events import (
    AuthCredentials,
    AuthResult,
    DataStart,
    Event,
    Helo,
    MessageComplete,
    MessageRefused,
    ScramLookup,
    StartTlsRequested,
    TransactionAborted,
)
from mailyard.proto.smtp.replies import (
    REPLY_ALREADY_AUTH,
    REPLY_AUTH_BAD_BASE64,
    REPLY_AUTH_CANCELLED,
    REPLY_AUTH_FAILED,
    REPLY_AUTH_LOCKED_OUT,
    REPLY_AUTH_MALFORMED,
    REPLY_AUTH_MECH,
    REPLY_AUTH_NEEDS_TLS,
    REPLY_AUTH_OK,
    REPLY_BAD_BDAT,
    REPLY_BAD_SEQUENCE,
    REPLY_BARE_LINE_ENDING,
    REPLY_BDAT_MIXED,
    REPLY_DISK_FULL,
    REPLY_SENDER_OK,
    REPLY_TOO_MANY_AUTH_FAILURES,
)
from mailyard.proto.smtp.server import ServerConnection, ServerSettings
from mailyard.sasl.scram import ScramCredentials, scram_client_final
from mailyard.sasl.scram import derive_credentials as derive_scram_credentials

HEAD = b"EHLO client.test\r\nMAIL FROM:<a@client.test>\r\nRCPT TO:<b@mx.test>\r\n"
TLS_AUTH = ServerSettings(hostname="mx.test", starttls=True, auth=True, implicit_tls=True,
                          max_auth_failures=3)
PLAIN_AUTH = dataclasses.replace(TLS_AUTH, implicit_tls=False)


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


# --- RFC 3030 CHUNKING -----------------------------------------------------------

def test_bdat_chunks() -> None:
    """RFC 3030 2: each chunk is answered; LAST ends the message; octets are taken as
    they are (no dot handling)."""
    run = run_all_ways(HEAD + b"BDAT 5\r\n.\r\nabBDAT 6 LAST\r\ncdef\r\nQUIT\r\n")
    assert run.codes[-3:] == ["250 2.0.0", "250 2.0.0", "221 2.0.0"]
    assert b"250 2.0.0 5 octets received" in run.output
    assert run.messages == [b".\r\nabcdef\r\n"]


def test_bdat_zero_last() -> None:
    """RFC 3030 2: 'BDAT 0 LAST' ends the message."""
    normalizing = ServerSettings(hostname="mx.test", normalize_bare_line_endings=True)
    run = run_all_ways(HEAD + b"BDAT 3\r\nab\nBDAT 0 LAST\r\n", settings=normalizing)
    assert run.messages == [b"ab\r\n"]
    run = run_all_ways(HEAD + b"BDAT 0 LAST\r\n")
    assert run.messages == [b""]


def test_bdat_after_failed_mail_consumes_chunk() -> None:
    """RFC 3030 2: a refused BDAT still has its chunk read, so the octets are never
    taken for commands."""
    def policy(conn: ServerConnection, event: Event) -> None:
        from mailyard.proto.smtp.events import MailFrom
        if isinstance(event, MailFrom):
            conn.reject(REPLY_DISK_FULL)
        else:
            accept_all(conn, event)
    chunk = b"RSET\r\nQUIT\r\n"
    run = run_all_ways(b"EHLO c\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<b@mx.test>\r\n"
                       b"BDAT %d LAST\r\n" % len(chunk) + chunk + b"NOOP\r\n", policy=policy)
    assert run.codes[2:] == ["452 4.3.1", "503 5.5.1", "503 5.5.1", "250 2.0.0"]
    assert not run.conn.closed or run.codes[-1] == "250 2.0.0"


def test_bdat_refused_data_start_consumes_chunks() -> None:
    """A refused first chunk ends the transaction; later chunks are read and refused."""
    def policy(conn: ServerConnection, event: Event) -> None:
        if isinstance(event, DataStart):
            conn.reject(REPLY_DISK_FULL)
        else:
            accept_all(conn, event)
    run = run_all_ways(HEAD + b"BDAT 4\r\nMAILBDAT 4 LAST\r\nDATANOOP\r\n", policy=policy)
    assert run.codes[-3:] == ["452 4.3.1", "503 5.5.1", "250 2.0.0"]
    assert [e.reason for e in run.of_type(TransactionAborted)] == ["chunk refused"]  # type: ignore[attr-defined]


def test_bdat_bad_size_closes() -> None:
    """RFC 3030 2: a chunk size that cannot be read loses sync: 501, then close."""
    run = run_all_ways(HEAD + b"BDAT ten\r\nNOOP\r\n")
    assert run.last == REPLY_BAD_BDAT.encode()
    assert run.conn.closed


def test_data_after_bdat() -> None:
    """RFC 3030 2: DATA may not follow BDAT in a transaction: 503."""
    run = run_all_ways(HEAD + b"BDAT 2\r\nabDATA\r\nBDAT 0 LAST\r\n")
    assert run.codes[-2:] == [f"503 {REPLY_BDAT_MIXED.status}", "250 2.0.0"]
    assert run.messages == [b"ab"]


def test_bdat_over_size_limit() -> None:
    """RFC 3030 2 / RFC 1870: an over-size chunk is read, discarded and refused 552."""
    settings = ServerSettings(hostname="mx.test", max_message_size=10)
    run = run_all_ways(HEAD + b"BDAT 8\r\n12345678BDAT 8 LAST\r\n12345678NOOP\r\n",
                       settings=settings)
    assert run.codes[-3:] == ["250 2.0.0", "552 5.3.4", "250 2.0.0"]
    assert run.messages == []


def test_bdat_bare_lf_refused() -> None:
    """Bare LF in non-binary BDAT content is refused like in DATA (RFC 5321 2.3.8)."""
    run = run_all_ways(HEAD + b"BDAT 7 LAST\r\na\n.\nb\r\n")
    assert run.of_type(MessageRefused)[0].reply == REPLY_BARE_LINE_ENDING  # type: ignore[attr-defined]


def test_bdat_binarymime_passes_octets() -> None:
    """RFC 3030 3: BINARYMIME content is not checked for line structure."""
    data = b"\x00\n\r\xff" * 300
    run = run_all_ways(b"EHLO c\r\nMAIL FROM:<a@c.test> BODY=BINARYMIME\r\nRCPT TO:<b@mx.test>\r\n"
                       b"BDAT %d LAST\r\n" % len(data) + data)
    assert run.messages == [data]


# --- RFC 3207 STARTTLS -----------------------------------------------------------

def test_starttls_discards_pipelined_plaintext() -> None:
    """RFC 3207 4.2 / CVE-2011-0411: commands sent after STARTTLS in the same packet
    are discarded, and the session starts over (EHLO needed again)."""
    settings = ServerSettings(hostname="mx.test", starttls=True)
    run = run_session(b"EHLO c\r\nSTARTTLS\r\nRSET\r\nMAIL FROM:<a@c.test>\r\n", settings=settings,
                      eof=False)
    assert run.codes == ["220", "250", "220 2.0.0"]
    assert run.conn.session.tls and not run.conn.session.helo
    run.conn.receive_data(b"MAIL FROM:<a@c.test>\r\n")
    from smtpd_core_harness import pump
    pump(run, accept_all)
    assert run.codes[-1] == "503 5.5.1"
    assert len(run.of_type(StartTlsRequested)) == 1


def test_starttls_not_offered_or_repeated() -> None:
    run = run_all_ways(b"EHLO c\r\nSTARTTLS\r\n")
    assert run.codes[-1] == "502 5.5.1"
    run = run_all_ways(b"EHLO c\r\nSTARTTLS\r\n", settings=TLS_AUTH)
    assert run.codes[-1] == "503 5.5.1"


# --- RFC 4954 AUTH -----------------------------------------------------------------

def check_password(conn: ServerConnection, event: Event) -> None:
    if isinstance(event, AuthCredentials):
        if (event.username, event.password) == ("user@mx.test", "secret"):
            conn.accept()
        else:
            conn.reject(REPLY_AUTH_FAILED)
    else:
        accept_all(conn, event)


def test_auth_plain() -> None:
    """RFC 4616 / RFC 4954 4: PLAIN with an initial response, and after 334."""
    token = b64(b"\x00user@mx.test\x00secret")
    run = run_all_ways(b"EHLO c\r\nAUTH PLAIN " + token + b"\r\n", settings=TLS_AUTH,
                       policy=check_password, eof=False)
    assert run.codes[-1] == "235 2.7.0"
    assert run.conn.session.auth_user == "user@mx.test"
    run = run_all_ways(b"EHLO c\r\nAUTH PLAIN\r\n" + token + b"\r\n", settings=TLS_AUTH,
                       policy=check_password)
    assert run.codes[-2:] == ["334", "235 2.7.0"]
    assert [e.success for e in run.of_type(AuthResult)] == [True]  # type: ignore[attr-defined]


def test_auth_login() -> None:
    run = run_all_ways(b"EHLO c\r\nAUTH LOGIN\r\n" + b64(b"user@mx.test") + b"\r\n" +
                       b64(b"secret") + b"\r\n", settings=TLS_AUTH, policy=check_password)
    assert b"334 VXNlcm5hbWU6\r\n" in run.output and b"334 UGFzc3dvcmQ6\r\n" in run.output
    assert run.codes[-1] == "235 2.7.0"


def test_auth_requires_tls() -> None:
    """RFC 4954 4 / RFC 3207: AUTH over plaintext gets 538 5.7.11."""
    token = b64(b"\x00user@mx.test\x00secret")
    run = run_all_ways(b"EHLO c\r\nAUTH PLAIN " + token + b"\r\n", settings=PLAIN_AUTH,
                       policy=check_password)
    assert run.last == REPLY_AUTH_NEEDS_TLS.encode()
    assert not run.of_type(AuthCredentials)


def test_auth_not_offered() -> None:
    run = run_all_ways(b"EHLO c\r\nAUTH PLAIN AAAA\r\n")
    assert run.codes[-1] == "502 5.5.1"


def test_auth_failures_then_421() -> None:
    """535 5.7.8 per failure; reaching smtpd.max_auth_failures closes with 421 4.7.0."""
    bad = b"AUTH PLAIN " + b64(b"\x00user@mx.test\x00wrong") + b"\r\n"
    run = run_all_ways(b"EHLO c\r\n" + bad * 4, settings=TLS_AUTH, policy=check_password)
    assert run.codes[2:] == ["535 5.7.8", "535 5.7.8", "535 5.7.8",
                             f"421 {REPLY_TOO_MANY_AUTH_FAILURES.status}"]
    assert run.conn.closed


def test_auth_cancel_bad_base64_and_sequence() -> None:
    """RFC 4954 4: '*' cancels (501); undecodable base64 is 501 5.5.2; AUTH inside a
    transaction is 503; a second AUTH after success is 503."""
    run = run_all_ways(b"EHLO c\r\nAUTH LOGIN\r\n*\r\nAUTH PLAIN !!!\r\nAUTH FOO\r\n"
                       b"MAIL FROM:<a@c.test>\r\nAUTH PLAIN\r\n", settings=TLS_AUTH)
    assert run.replies[2:] == [b"334 VXNlcm5hbWU6\r\n", REPLY_AUTH_CANCELLED.encode(),
                               REPLY_AUTH_BAD_BASE64.encode(), REPLY_AUTH_MECH.encode(),
                               REPLY_SENDER_OK.encode(), REPLY_BAD_SEQUENCE.encode()]
    token = b64(b"\x00user@mx.test\x00secret")
    run = run_all_ways(b"EHLO c\r\nAUTH PLAIN " + token + b"\r\nAUTH PLAIN " + token + b"\r\n",
                       settings=TLS_AUTH, policy=check_password)
    assert run.replies[2:] == [REPLY_AUTH_OK.encode(), REPLY_ALREADY_AUTH.encode()]


def test_sasl_outcomes_map_to_smtp_replies() -> None:
    """The protocol-neutral SASL failures become SMTP replies here: a malformed
    response is 501 5.5.4, an authorization identity other than the user is refused
    like a bad password, 535 5.7.8 (RFC 4954 4, 6; RFC 4616 2)."""
    malformed = b"AUTH PLAIN " + b64(b"only-one-field") + b"\r\n"
    proxy = b"AUTH PLAIN " + b64(b"admin@mx.test\x00user@mx.test\x00secret") + b"\r\n"
    run = run_all_ways(b"EHLO c\r\n" + malformed + proxy, settings=TLS_AUTH,
                       policy=check_password)
    assert run.replies[2:] == [REPLY_AUTH_MALFORMED.encode(), REPLY_AUTH_FAILED.encode()]
    assert not run.of_type(AuthCredentials)
    assert [e.success for e in run.of_type(AuthResult)] == [False, False]  # type: ignore[attr-defined]


def scram_policy(creds: ScramCredentials) -> object:
    def policy(conn: ServerConnection, event: Event) -> None:
        if isinstance(event, ScramLookup):
            conn.accept_scram(creds if event.username == "user@mx.test" else None)
        else:
            accept_all(conn, event)
    return policy


def scram_session(password: str, username: str = "user@mx.test") -> tuple[ServerConnection, bytes]:
    """RFC 5802 5 / RFC 7677: a full SCRAM-SHA-256 exchange, step by step."""
    creds = derive_scram_credentials("secret", b"saltsaltsalt", 4096)
    conn = ServerConnection(TLS_AUTH)
    run = run_session(b"EHLO c\r\n", settings=TLS_AUTH, eof=False)
    conn = run.conn
    from smtpd_core_harness import pump
    policy = scram_policy(creds)
    first_bare = f"n={username},r=clientnonce123"
    conn.receive_data(b"AUTH SCRAM-SHA-256 " + b64(("n,," + first_bare).encode()) + b"\r\n")
    pump(run, policy)  # type: ignore[arg-type]
    challenge = run.output.rsplit(b"\r\n", 2)[-2]
    assert challenge.startswith(b"334 ")
    server_first = base64.b64decode(challenge[4:]).decode()
    assert server_first.startswith("r=clientnonce123")
    final, expected = scram_client_final(password, first_bare, server_first)
    conn.receive_data(b64(final.encode()) + b"\r\n")
    pump(run, policy)  # type: ignore[arg-type]
    last = run.output.rsplit(b"\r\n", 2)[-2]
    if last.startswith(b"334 "):
        assert base64.b64decode(last[4:]).decode() == expected
        conn.receive_data(b"\r\n")
        pump(run, policy)  # type: ignore[arg-type]
    return conn, run.output


def test_scram_success() -> None:
    conn, output = scram_session("secret")
    assert output.endswith(b"235 2.7.0 Authentication successful\r\n")
    assert conn.session.auth_user == "user@mx.test"
    assert conn.session.auth_mechanism == "SCRAM-SHA-256"


def test_scram_wrong_password_and_unknown_user() -> None:
    """RFC 5802 9: a wrong proof fails; an unknown user fails the same way."""
    conn, output = scram_session("wrong")
    assert output.endswith(b"535 5.7.8 Authentication credentials invalid\r\n")
    assert not conn.session.auth_user
    conn, output = scram_session("secret", username="nobody@mx.test")
    assert output.endswith(b"535 5.7.8 Authentication credentials invalid\r\n")


def test_helo_event_names() -> None:
    run = run_all_ways(b"HELO c.test\r\n")
    helo = run.of_type(Helo)[0]
    assert (helo.name, helo.extended) == ("c.test", False)  # type: ignore[attr-defined]
    assert not run.of_type(MessageComplete)


def test_auth_421_from_the_adapter_closes() -> None:
    """RFC 5321 3.8: a 421 answer to AUTH (the AUTH guard's lock-out) closes the
    connection; the AuthResult carries the reply sent."""
    def locked_out(conn: ServerConnection, event: Event) -> None:
        if isinstance(event, AuthCredentials):
            conn.reject(REPLY_AUTH_LOCKED_OUT)
        else:
            accept_all(conn, event)

    bad = b"AUTH PLAIN " + b64(b"\x00user@mx.test\x00wrong") + b"\r\n"
    run = run_all_ways(b"EHLO c\r\n" + bad + b"NOOP\r\n", settings=TLS_AUTH, policy=locked_out)
    assert run.last == REPLY_AUTH_LOCKED_OUT.encode()
    assert run.conn.closed
    assert [e.reply for e in run.of_type(AuthResult)] == [REPLY_AUTH_LOCKED_OUT]  # type: ignore[attr-defined]
