"""The state table (``proto/smtp/states.py``) is what the core does: every (verb,
state) pair is driven through the server core and the resulting state and reply are
compared with the table (RFC 5321 4.1.4, 3.3; RFC 3030 2; RFC 3207 4.2; RFC 4954 4)."""

from __future__ import annotations

import base64

import pytest
from smtpd_core_harness import run_session

from mailyard.proto.smtp.replies import Reply
from mailyard.proto.smtp.server import ServerSettings
from mailyard.proto.smtp.states import SAME, SEQUENCE, State

# A transcript that leaves the core in each state.
REACH: dict[State, bytes] = {
    State.START: b"",
    State.READY: b"EHLO c.test\r\n",
    State.MAIL: b"EHLO c.test\r\nMAIL FROM:<a@c.test>\r\n",
    State.RCPT: b"EHLO c.test\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<b@mx.test>\r\n",
    State.CHUNKING: (b"EHLO c.test\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<b@mx.test>\r\n"
                     b"BDAT 4\r\nab\r\n"),
}
PLAIN = base64.b64encode(b"\0user@mx.test\0secret")
# One well-formed instance of each verb; DATA brings its content when it may proceed.
COMMAND: dict[str, bytes] = {
    "EHLO": b"EHLO other.test\r\n",
    "HELO": b"HELO other.test\r\n",
    "MAIL": b"MAIL FROM:<x@c.test>\r\n",
    "RCPT": b"RCPT TO:<y@mx.test>\r\n",
    "DATA": b"DATA\r\n",
    "BDAT": b"BDAT 3\r\nxyz",
    "RSET": b"RSET\r\n",
    "AUTH": b"AUTH PLAIN " + PLAIN + b"\r\n",
    "STARTTLS": b"STARTTLS\r\n",
    "NOOP": b"NOOP\r\n",
    "HELP": b"HELP\r\n",
    "VRFY": b"VRFY someone\r\n",
    "QUIT": b"QUIT\r\n",
}
CONTENT = b"Subject: t\r\n\r\nbody\r\n.\r\n"
# AUTH needs TLS and an AUTH listener (else 502/538 come before the sequence check),
# STARTTLS needs plaintext with a TLS context.
AUTH_SETTINGS = ServerSettings(hostname="mx.test", auth=True, implicit_tls=True)
TLS_SETTINGS = ServerSettings(hostname="mx.test", starttls=True)

PAIRS = [(verb, state) for verb in SEQUENCE for state in State]


def test_the_walk_covers_every_verb_and_state() -> None:
    assert set(COMMAND) == set(SEQUENCE)
    assert all(set(row) == set(State) for row in SEQUENCE.values())


@pytest.mark.parametrize("verb, state", PAIRS, ids=[f"{v}-{s.name}" for v, s in PAIRS])
def test_core_follows_the_table(verb: str, state: State) -> None:
    settings = TLS_SETTINGS if verb == "STARTTLS" else AUTH_SETTINGS
    prefix = run_session(REACH[state], settings=settings, eof=False)
    assert prefix.conn.state is state
    expected = SEQUENCE[verb][state]
    command = COMMAND[verb]
    if verb == "DATA" and isinstance(expected, State):
        command += CONTENT
    run = run_session(REACH[state] + command, settings=settings, eof=False)
    sent = run.replies[len(prefix.replies):]
    assert sent, "the command got no reply"
    if isinstance(expected, Reply):
        assert sent[-1] == expected.encode()
        assert run.conn.state is state
        return
    assert all(int(reply[:3]) < 400 for reply in sent), sent
    assert run.conn.state is (state if expected == SAME else expected)
