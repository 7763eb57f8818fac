"""Session set-up of the sans-IO client: greeting, EHLO/HELO (RFC 5321 4.1.1.1, 3.2),
STARTTLS (RFC 3207), AUTH (RFC 4954), RSET probe and QUIT."""

from __future__ import annotations

import base64

import pytest

from mailyard.proto.errors import LocalProtocolError
from mailyard.proto.smtp.client import (
    Closed,
    Idle,
    SessionFailed,
    SessionReady,
    SmtpClient,
    StartTls,
    State,
)
from mailyard.proto.smtp.replies import (
    REPLY_REMOTE_AUTH_NO_TLS,
    REPLY_REMOTE_AUTH_UNVERIFIED,
    REPLY_REMOTE_CERT_UNVERIFIED,
    REPLY_REMOTE_LOST,
    REPLY_REMOTE_NO_TLS,
    Reply,
)
from tests.unit.smtp_client.transcript import CHUNKERS, Script, Transcript, commands

EHLO = b"250-mx.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n"


@pytest.fixture(params=sorted(CHUNKERS))
def chunker(request):
    return CHUNKERS[request.param]


def session(chunker, *writes: bytes, tls: str = "none", auth=None, auth_unverified=False,
            verified=False) -> Transcript:
    client = SmtpClient("client.example", tls=tls, auth=auth, auth_unverified=auth_unverified)
    t = Transcript(client, Script(chunker).reply(*writes))
    t.tls_verified = verified
    return t


def test_greeting_and_ehlo(chunker) -> None:
    t = session(chunker, b"220 mx.example ESMTP\r\n", EHLO)
    assert t.pump() == [SessionReady()]
    assert commands(t.take()) == ["EHLO client.example"]
    assert t.client.usable and "PIPELINING" in t.client.extensions


def test_helo_fallback_when_ehlo_is_refused(chunker) -> None:
    """RFC 5321 3.2: a server that does not know EHLO gets HELO, and no extensions."""
    t = session(chunker, b"220 old.example\r\n", b"502 5.5.2 what?\r\n", b"250 old.example\r\n")
    assert t.pump() == [SessionReady()]
    assert commands(t.take()) == ["EHLO client.example", "HELO client.example"]
    assert not t.client.extensions.keywords


def test_helo_refused_is_a_permanent_session_failure(chunker) -> None:
    t = session(chunker, b"220 x\r\n", b"500 no\r\n", b"550 5.7.1 go away\r\n")
    (failed,) = t.pump()
    assert isinstance(failed, SessionFailed) and failed.stage == "helo" and failed.permanent


def test_ehlo_4xx_is_temporary(chunker) -> None:
    t = session(chunker, b"220 x\r\n", b"451 4.3.0 busy\r\n")
    (failed,) = t.pump()
    assert failed == SessionFailed(Reply(451, "4.3.0", "busy"), "ehlo")
    assert not failed.permanent and t.client.can_quit


def test_554_greeting_then_quit(chunker) -> None:
    """RFC 5321 3.1: after a 554 greeting the client should send QUIT."""
    t = session(chunker, b"554 5.3.2 no service here\r\n", b"221 bye\r\n")
    (failed,) = t.pump()
    assert failed.stage == "greeting" and failed.permanent
    t.client.quit()
    assert t.pump() == [Closed()]
    assert commands(t.take()) == ["QUIT"]
    assert t.client.state is State.CLOSED


def test_421_greeting(chunker) -> None:
    t = session(chunker, b"421 4.7.0 too many connections\r\n")
    (failed,) = t.pump()
    assert failed.reply.code == 421 and not failed.permanent
    assert t.client.state is State.CLOSED


def test_connection_closed_before_greeting() -> None:
    t = Transcript(SmtpClient("c", tls="none"), Script().hang_up())
    assert t.pump() == [SessionFailed(REPLY_REMOTE_LOST, "greeting")]


def test_starttls_then_fresh_ehlo(chunker) -> None:
    """RFC 3207 4.2: after the handshake the client forgets what it knew and says EHLO again."""
    t = session(chunker, b"220 x\r\n", b"250-x\r\n250-STARTTLS\r\n250 SIZE 100\r\n",
                b"220 2.0.0 go ahead\r\n", b"250-x\r\n250 CHUNKING\r\n", tls="may")
    events = t.pump()
    assert events == [SessionReady()]
    assert commands(t.take()) == ["EHLO client.example", "STARTTLS", "EHLO client.example"]
    assert t.client.tls_active
    assert "CHUNKING" in t.client.extensions and t.client.extensions.size_limit is None


def test_starttls_event_is_reported_to_the_adapter() -> None:
    client = SmtpClient("c", tls="require")
    client.receive_data(b"220 x\r\n")
    client.next_event()  # EHLO
    client.receive_data(b"250-x\r\n250 STARTTLS\r\n")
    client.next_event()  # STARTTLS
    client.receive_data(b"220 go\r\n")
    assert client.next_event() == StartTls()
    assert client.state is State.TLS_HANDSHAKE
    client.tls_failed("handshake failure")
    failed = client.next_event()
    assert isinstance(failed, SessionFailed) and failed.tls_failure and failed.stage == "tls"


def test_plaintext_injected_after_starttls_220_is_refused() -> None:
    """RFC 3207 5 (the STARTTLS command injection attack): bytes after the 220 in clear
    must not be taken as replies in the TLS session."""
    t = session(CHUNKERS["whole"], b"220 x\r\n", b"250-x\r\n250 STARTTLS\r\n",
                b"220 go\r\n250 injected\r\n", tls="may")
    (failed,) = t.pump()
    assert isinstance(failed, SessionFailed) and failed.reply.status == "4.5.0"


@pytest.mark.parametrize("policy, expected", [
    ("may", SessionReady()),
    ("require", SessionFailed(REPLY_REMOTE_NO_TLS, "starttls")),
])
def test_no_starttls_offered(chunker, policy: str, expected) -> None:
    t = session(chunker, b"220 x\r\n", EHLO, tls=policy)
    assert t.pump() == [expected]
    assert commands(t.take()) == ["EHLO client.example"]


@pytest.mark.parametrize("policy, ready", [("may", True), ("require", False)])
def test_starttls_refused(chunker, policy: str, ready: bool) -> None:
    t = session(chunker, b"220 x\r\n", b"250-x\r\n250 STARTTLS\r\n",
                b"454 4.7.0 TLS not available\r\n", tls=policy)
    (event,) = t.pump()
    assert isinstance(event, SessionReady) is ready
    assert not t.client.tls_active


def test_auth_plain(chunker) -> None:
    """RFC 4954 4 with the initial response; RFC 4616 PLAIN message."""
    t = session(chunker, b"220 x\r\n", b"250-x\r\n250 AUTH LOGIN PLAIN\r\n", b"235 2.7.0 ok\r\n",
                auth=("user", "pa ss"), auth_unverified=True)
    assert t.pump() == [SessionReady()]
    ehlo, auth = commands(t.take())
    token = base64.b64encode(b"\0user\0pa ss").decode()
    assert auth == f"AUTH PLAIN {token}"


def test_auth_login(chunker) -> None:
    t = session(chunker, b"220 x\r\n", b"250-x\r\n250 AUTH LOGIN\r\n", b"334 VXNlcm5hbWU6\r\n",
                b"334 UGFzc3dvcmQ6\r\n", b"235 2.7.0 ok\r\n",
                auth=("user", "secret"), auth_unverified=True)
    assert t.pump() == [SessionReady()]
    assert commands(t.take())[1:] == ["AUTH LOGIN", "dXNlcg==", "c2VjcmV0"]


def test_auth_failure_is_not_permanent(chunker) -> None:
    t = session(chunker, b"220 x\r\n", b"250-x\r\n250 AUTH PLAIN\r\n",
                b"535 5.7.8 bad credentials\r\n", auth=("u", "p"), auth_unverified=True)
    (failed,) = t.pump()
    assert failed.stage == "auth" and failed.reply.code == 535 and not failed.permanent


def test_no_credentials_in_clear_unless_policy_is_none() -> None:
    t = session(CHUNKERS["whole"], b"220 x\r\n", b"250-x\r\n250 AUTH PLAIN\r\n", tls="may",
                auth=("u", "p"))
    assert t.pump() == [SessionFailed(REPLY_REMOTE_AUTH_NO_TLS, "auth")]
    assert b"AUTH" not in t.take()


def test_no_auth_when_not_offered() -> None:
    t = session(CHUNKERS["whole"], b"220 x\r\n", EHLO, auth=("u", "p"))
    assert t.pump() == [SessionReady()]


def test_rset_probe(chunker) -> None:
    t = session(chunker, b"220 x\r\n", EHLO)
    t.pump()
    t.take()
    t.client.reset()
    t.script.reply(b"250 2.0.0 ok\r\n")
    assert t.pump() == [SessionReady()]
    t.client.reset()
    t.script.reply(b"421 4.4.2 idle timeout\r\n")
    (failed,) = t.pump()
    assert failed.stage == "rset" and failed.reply.code == 421
    assert t.client.state is State.CLOSED and not t.client.can_quit


def test_unsolicited_reply_is_a_protocol_error() -> None:
    client = SmtpClient("c", tls="none")
    t = Transcript(client, Script().reply(b"220 x\r\n", EHLO))
    t.pump()
    client.receive_data(b"250 surprise\r\n")
    (failed,) = t.pump()
    assert isinstance(failed, Closed)
    assert client.state is State.CLOSED


def test_commands_out_of_order_are_refused() -> None:
    client = SmtpClient("c")
    with pytest.raises(LocalProtocolError):
        client.reset()
    with pytest.raises(LocalProtocolError):
        client.send_content(b"x")
    with pytest.raises(LocalProtocolError):
        client.quit()
    with pytest.raises(ValueError):
        SmtpClient("c", tls="sometimes")


# --- TLS levels and credentials -------------------------------------------------------
STARTTLS_THEN_AUTH = (b"220 x\r\n", b"250-x\r\n250 STARTTLS\r\n", b"220 go\r\n",
                      b"250-x\r\n250 AUTH PLAIN\r\n")


@pytest.mark.parametrize("level", ["encrypt", "require", "verify", "secure"])
def test_levels_that_require_tls_fail_without_starttls(level: str) -> None:
    t = session(CHUNKERS["whole"], b"220 x\r\n", EHLO, tls=level)
    assert t.pump() == [SessionFailed(REPLY_REMOTE_NO_TLS, "starttls")]


def test_credentials_not_sent_after_an_unverified_handshake(chunker) -> None:
    """encrypt: the session is encrypted, but nobody checked who is at the other end."""
    t = session(chunker, *STARTTLS_THEN_AUTH, tls="encrypt", auth=("u", "p"))
    assert t.pump() == [SessionFailed(REPLY_REMOTE_AUTH_UNVERIFIED, "auth")]
    assert b"AUTH" not in t.take() and not t.client.tls_verified


def test_credentials_sent_after_a_verified_handshake(chunker) -> None:
    t = session(chunker, *STARTTLS_THEN_AUTH, b"235 2.7.0 ok\r\n", tls="verify", auth=("u", "p"),
                verified=True)
    assert t.pump() == [SessionReady()]
    assert commands(t.take())[-1].startswith("AUTH PLAIN ")


def test_credentials_over_unverified_tls_only_when_the_operator_allows_it() -> None:
    t = session(CHUNKERS["whole"], *STARTTLS_THEN_AUTH, b"235 2.7.0 ok\r\n", tls="encrypt",
                auth=("u", "p"), auth_unverified=True)
    assert t.pump() == [SessionReady()]
    assert commands(t.take())[-1].startswith("AUTH PLAIN ")
    # ... but never in clear unless the level is "none".
    t = session(CHUNKERS["whole"], b"220 x\r\n", b"250-x\r\n250 AUTH PLAIN\r\n", tls="may",
                auth=("u", "p"), auth_unverified=True)
    assert t.pump() == [SessionFailed(REPLY_REMOTE_AUTH_NO_TLS, "auth")]


def _in_handshake(level: str = "verify") -> SmtpClient:
    client = SmtpClient("c", tls=level)
    for data in (b"220 x\r\n", b"250-x\r\n250 STARTTLS\r\n", b"220 go\r\n"):
        client.next_event()
        client.receive_data(data)
    assert client.next_event() == StartTls()
    return client


def test_certificate_failure_is_temporary_and_not_retried_in_clear() -> None:
    client = _in_handshake()
    client.tls_failed("Hostname mismatch", certificate=True)
    failed = client.next_event()
    assert isinstance(failed, SessionFailed) and failed.stage == "tls"
    assert failed.reply.code == 451 and failed.reply.status == REPLY_REMOTE_CERT_UNVERIFIED.status
    assert "Hostname mismatch" in failed.reply.text
    assert not failed.tls_failure and not failed.permanent


def test_cleartext_during_the_handshake_fails_the_session() -> None:
    """RFC 3207 5: bytes received between the 220 and the end of the handshake came in
    clear; the adapter reports them and the session ends (temporary, no retry in clear)."""
    client = _in_handshake("may")
    client.cleartext_in_handshake(27)
    failed = client.next_event()
    assert isinstance(failed, SessionFailed) and failed.stage == "tls"
    assert (failed.reply.code, failed.reply.status) == (451, "4.5.0")
    assert "in clear during the STARTTLS handshake" in failed.reply.text
    assert not failed.tls_failure and client.state is State.CLOSED
    assert client.next_event() == Idle()
