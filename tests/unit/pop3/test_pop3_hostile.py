"""POP3 core against hostile input: limits (RFC 2449 4), bad numbers (RFC 1939 5),
stray bytes, and a hypothesis property over arbitrary command mixes."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st
from pop3_core_harness import SETTINGS, run_all_ways, run_session

from mailyard.proto.pop3 import Login, Pop3Settings, Retrieve
from mailyard.proto.pop3.content import ContentEncoder

STORED = {"u1": b"Subject: s\r\n\r\nbody\r\n", "u2": b".\n..\nx\n"}
LOGIN = b"USER a\r\nPASS secret\r\n"


def test_rfc1939_bad_message_numbers() -> None:
    """RFC 1939 5: a message number must name an existing message: 0, negative, signed,
    huge, non-ASCII digits and out-of-range numbers all get -ERR and nothing is asked."""
    bad = [b"0", b"-1", b"+1", b"3", b"99999999999999999999999", b"1 2", b"\xd9\xa1",
           b"0x1", b"", b" 1"]
    data = LOGIN + b"".join(b"RETR " + n + b"\r\n" for n in bad) + b"TOP 1 -1\r\nQUIT\r\n"
    settings = Pop3Settings(hostname="pop.test", max_bad_commands=100)
    run = run_all_ways(data, stored=STORED, settings=settings)
    assert run.of_type(Retrieve) == []
    assert all(ln.startswith(b"-ERR") for ln in run.status_lines[3:-1])
    assert len(run.status_lines) == 3 + len(bad) + 1 + 1


def test_rfc1939_transaction_commands_before_login() -> None:
    """RFC 1939 4: only USER/PASS/AUTH/CAPA/STLS/QUIT in AUTHORIZATION."""
    data = b"STAT\r\nLIST\r\nRETR 1\r\nDELE 1\r\nPASS secret\r\nNOOP\r\n"
    run = run_all_ways(data, stored=STORED)
    assert run.lines[1:] == [b"-ERR Command not valid in this state"] * 6
    assert run.of_type(Login) == [] and run.of_type(Retrieve) == []


def test_rfc2449_long_line_then_keeps_going() -> None:
    """RFC 2449 4: command lines are at most 255 octets; a longer one gets -ERR and the
    session goes on; however it is split, the answer is the same."""
    data = b"NOOP " + b"A" * 300 + b"\r\n" + b"X" * 20000 + b"\r\n" + LOGIN + b"NOOP\r\n"
    run = run_all_ways(data, stored=STORED)
    assert run.lines[1:] == [b"-ERR Line too long", b"-ERR Line too long", b"+OK Send PASS",
                             b"+OK maildrop has 2 messages (30 octets)", b"+OK"]


def test_repeated_abuse_closes() -> None:
    """RFC 2449 4 and RFC 1939 3: after max_bad_commands bad lines the connection
    closes; the last answer says why (still one status line per command)."""
    settings = Pop3Settings(hostname="pop.test", max_bad_commands=3)
    run = run_all_ways(b"X\r\n" + b"Y" * 400 + b"\r\nZ\r\nNOOP\r\n", settings=settings)
    assert run.lines[1:] == [b"-ERR Unknown command", b"-ERR Line too long",
                             b"-ERR Too many bad commands, closing connection"]
    assert run.conn.closed


def test_rfc1939_nul_and_bare_lf_in_commands() -> None:
    """RFC 1939 3: commands are CRLF-terminated printable text; NUL, a bare LF or CR
    inside the line, and invalid UTF-8 are refused."""
    run = run_all_ways(b"CAPA\x00\r\nCA\nPA\r\nUS\rER a\r\n\xff\xfe\r\n")
    assert run.lines[1:] == [b"-ERR Control characters not allowed in commands"] * 3 + \
        [b"-ERR Command is not valid UTF-8"]


def test_pass_spaces_kept() -> None:
    """RFC 1939 7 PASS: spaces in the argument are part of the password."""
    run = run_all_ways(b"USER a\r\nPASS two words \r\n")
    assert run.of_type(Login)[0].password == "two words "  # type: ignore[attr-defined]


def test_content_encoder_split_anywhere() -> None:
    """RFC 1939 3: byte-stuffing and CRLF conversion give the same bytes whatever the
    chunking of the stored message."""
    message = b".a\r\n..b\n\r\n.\r\r\n.\n\rx\r"
    expected = b"..a\r\n...b\r\n\r\n..\r\r\n..\r\n\rx\r\r\n.\r\n"
    rng = random.Random(7)
    for _ in range(200):
        enc, out, pos = ContentEncoder(), b"", 0
        while pos < len(message):
            n = rng.randint(1, 4)
            out += enc.feed(message[pos : pos + n])
            pos += n
        assert out + enc.finish() == expected


FRAGMENTS = [b"USER a\r\n", b"PASS secret\r\n", b"PASS x\r\n", b"CAPA\r\n", b"STAT\r\n",
             b"LIST\r\n", b"LIST 1\r\n", b"UIDL\r\n", b"UIDL 9\r\n", b"RETR 1\r\n",
             b"RETR 2\r\n", b"TOP 2 1\r\n", b"TOP 1\r\n", b"DELE 1\r\n", b"RSET\r\n",
             b"NOOP\r\n", b"STLS\r\n", b"AUTH PLAIN\r\n", b"AUTH PLAIN =\r\n",
             b"AGFsaWNlAHNlY3JldA==\r\n", b"*\r\n", b"\r\n", b"\x00\r\n", b"RETR 0\r\n",
             b"RETR -1\r\n", b"APOP a b\r\n", b"A" * 300 + b"\r\n", b"\xff\r\n"]
HOSTILE = Pop3Settings(hostname="pop.test", stls=True, sasl_mechanisms=("PLAIN",),
                       max_bad_commands=1000, max_auth_failures=1000)


@settings(max_examples=250, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=30), st.integers(0, 1000),
       st.booleans())
def test_property_one_status_line_per_command(parts: list[bytes], seed: int,
                                              tls: bool) -> None:
    """RFC 1939 3 and RFC 2449 6.6: never a crash; each complete line up to the final
    QUIT gets exactly one status line (or a "+ " continuation during AUTH), STLS aside;
    splitting the input changes nothing."""
    data = b"".join(parts) + b"QUIT\r\n"
    whole = run_session(data, settings=HOSTILE, stored=STORED, tls=tls)
    assert whole.conn.closed
    if b"STLS" in data and not tls:
        return  # bytes after STLS are dropped until the handshake: split-dependent here
    split = run_session(data, "random", settings=HOSTILE, stored=STORED, tls=tls, seed=seed)
    assert split.output == whole.output
    answered = len(data.split(b"\r\n")) - 1
    replies = [ln for ln in whole.lines[1:] if ln.startswith((b"+OK", b"-ERR", b"+ "))]
    assert len(replies) == answered


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=600), st.integers(0, 1000))
def test_property_random_bytes(data: bytes, seed: int) -> None:
    """RFC 1939 3: arbitrary bytes never crash the core, in any state."""
    for prefix in (b"", LOGIN, b"AUTH PLAIN\r\n"):
        whole = run_session(prefix + data, settings=SETTINGS, stored=STORED)
        split = run_session(prefix + data, "random", settings=SETTINGS, stored=STORED,
                            seed=seed)
        assert split.output == whole.output and whole.conn.closed
