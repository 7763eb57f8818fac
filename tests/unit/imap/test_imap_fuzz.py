"""Property tests: whatever a client sends, the IMAP core never raises, gives the
same output however the input is split, and completes every tagged command at most
once -- exactly once for well-formed commands (RFC 9051 2.2.2: every command gets
one tagged completion result response)."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st
from imap_core_harness import run_session

FRAGMENTS = [
    b"a LOGIN alice secret\r\n", b"a SELECT INBOX\r\n", b"a FETCH 1:* (FLAGS BODY[])\r\n",
    b"a STORE 1 +FLAGS \\Seen\r\n", b"a IDLE\r\n", b"DONE\r\n", b"a AUTHENTICATE PLAIN\r\n",
    b"*\r\n", b"a APPEND INBOX {5}\r\n", b"a APPEND INBOX {3+}\r\n", b"hello", b"{2}\r\n",
    b"a LOGIN {5}\r\n", b"~{3}\r\n", b"a STARTTLS\r\n", b"a LOGOUT\r\n", b"(((", b")",
    b"\x00", b"\r", b"\n", b"\r\n", b"\xff\xfe", b"a UID SEARCH OR NOT 1:* ALL\r\n",
    b"a ENABLE UTF8=ACCEPT\r\n", b"x" * 300, b"a CLOSE\r\n", b'"', b"\\",
]
OUT_LINE = re.compile(rb"^(\* |\+ |[^ *+]+ (OK|NO|BAD) )")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=40), st.integers(0, 1000))
def test_any_input_never_crashes(parts: list[bytes], seed: int) -> None:
    data = b"".join(parts)
    whole = run_session(data)
    pieces = run_session(data, "random", seed=seed)
    assert pieces.output == whole.output
    assert pieces.store.appended == whole.store.appended
    assert whole.conn.closed


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000), st.integers(0, 1000))
def test_random_bytes_after_login(data: bytes, seed: int) -> None:
    head = b"a LOGIN alice secret\r\nb SELECT INBOX\r\n"
    whole = run_session(head + data)
    pieces = run_session(head + data, "random", seed=seed)
    assert pieces.output == whole.output


COMMANDS = [
    b"CAPABILITY", b"NOOP", b"LOGIN alice secret", b"LOGIN alice wrong", b"SELECT INBOX",
    b"EXAMINE Sent", b"SELECT nosuch", b"FETCH 1:* (FLAGS UID)", b"UID FETCH 1 BODY.PEEK[]",
    b"STORE 1 +FLAGS (\\Deleted)", b"SEARCH ALL", b"UID SEARCH OR FROM a NOT TO b",
    b"EXPUNGE", b"UID EXPUNGE 1:3", b"CLOSE", b"UNSELECT", b"LIST \"\" *", b"STATUS INBOX "
    b"(MESSAGES)", b"ENABLE CONDSTORE", b"ID NIL", b"NAMESPACE", b"CREATE foo",
    b"RENAME foo bar", b"COPY 1 Sent", b"MOVE 1:2 Sent", b"FROB", b"FETCH", b"SEARCH ((((",
    b"APPEND INBOX {5+}\r\nhello", b"LOGIN {5+}\r\nalice {6+}\r\nsecret", b"CHECK",
    b"AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==", b"GETQUOTAROOT INBOX", b"FETCH 0 FLAGS",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(COMMANDS), max_size=30), st.integers(0, 1000))
def test_every_tagged_command_completed_exactly_once(commands: list[bytes], seed: int) -> None:
    data = b"".join(b"t%d %s\r\n" % (i, c) for i, c in enumerate(commands))
    run = run_session(data, "random", seed=seed)
    tags = [t for t, _ in run.tagged()]
    assert len(tags) == len(set(tags))  # at most once
    if b"* BYE" not in run.output:  # nothing cut the connection short
        assert tags == [b"t%d" % i for i in range(len(commands))]
    for line in run.output.split(b"\r\n")[:-1]:
        assert OUT_LINE.match(line), line  # the fake store sends no literals
