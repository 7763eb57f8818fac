"""POP3 core transcripts: RFC 1939 and RFC 2449 examples, pipelining, UPDATE."""

from __future__ import annotations

from pop3_core_harness import run_all_ways, run_session

from mailyard.proto.pop3 import LoggedIn, Pop3Settings, Retrieve, Update

# Two messages of 120 and 200 CRLF octets, as in RFC 1939 10; the second stored LF-only.
MSG1 = b"Subject: one\r\n\r\n" + b"x" * (120 - 16 - 2) + b"\r\n"
MSG2 = b"Subject: two\n\n.starts with a dot\n" + b"y" * (200 - 36 - 2) + b"\n"
STORED = {"uid-1": MSG1, "uid-2": MSG2}
LOGIN = b"USER mrose\r\nPASS secret\r\n"


def test_sizes_are_the_rfc_examples() -> None:
    from pop3_core_harness import crlf_size
    assert crlf_size(MSG1) == 120 and crlf_size(MSG2) == 200


def test_rfc1939_example_session() -> None:
    """RFC 1939 10: STAT, LIST, RETR, DELE, QUIT (USER/PASS instead of APOP)."""
    data = LOGIN + b"STAT\r\nLIST\r\nRETR 1\r\nDELE 1\r\nRETR 2\r\nDELE 2\r\nQUIT\r\n"
    run = run_all_ways(data, stored=STORED)
    out = run.output
    assert out.startswith(b"+OK pop.test POP3 server ready\r\n+OK Send PASS\r\n"
                          b"+OK maildrop has 2 messages (320 octets)\r\n+OK 2 320\r\n"
                          b"+OK 2 messages (320 octets)\r\n1 120\r\n2 200\r\n.\r\n"
                          b"+OK 120 octets\r\n" + MSG1 + b".\r\n+OK Message deleted\r\n"
                          b"+OK 200 octets\r\n")
    wire2 = MSG2.replace(b"\n", b"\r\n").replace(b"\r\n.starts", b"\r\n..starts")
    assert wire2 + b".\r\n+OK Message deleted\r\n+OK Bye\r\n" in out
    assert len(wire2) == 201  # 200 octets plus the stuffed dot
    assert run.adapter.deleted == ["uid-1", "uid-2"]
    assert len(run.of_type(LoggedIn)) == 1
    assert run.conn.closed


def test_rfc1939_list_uidl_single_and_deleted_hidden() -> None:
    """RFC 1939 5 LIST/STAT, 7 UIDL: a deleted message is not listed, "-ERR" by number."""
    data = LOGIN + b"DELE 1\r\nSTAT\r\nLIST\r\nUIDL\r\nLIST 1\r\nUIDL 2\r\nRETR 1\r\nDELE 1\r\n" \
        b"RSET\r\nSTAT\r\nQUIT\r\n"
    run = run_all_ways(data, stored=STORED)
    assert run.lines[3:] == [
        b"+OK Message deleted", b"+OK 1 200", b"+OK 1 messages (200 octets)", b"2 200", b".",
        b"+OK", b"2 uid-2", b".", b"-ERR Message already deleted", b"+OK 2 uid-2",
        b"-ERR Message already deleted", b"-ERR Message already deleted",
        b"+OK maildrop has 2 messages (320 octets)", b"+OK 2 320", b"+OK Bye"]
    assert run.adapter.deleted == []  # RSET unmarked everything (RFC 1939 5)


def test_rfc1939_top() -> None:
    """RFC 1939 7 TOP: header, empty line, n body lines; dots stuffed; LF stored."""
    stored = {"a": b"H: 1\nH2: 2\n\n.b1\nb2\nb3\n"}
    run = run_all_ways(LOGIN + b"TOP 1 0\r\nTOP 1 2\r\nTOP 1 99\r\nQUIT\r\n", stored=stored)
    assert run.lines[3:] == [
        b"+OK Top of message follows", b"H: 1", b"H2: 2", b"", b".",
        b"+OK Top of message follows", b"H: 1", b"H2: 2", b"", b"..b1", b"b2", b".",
        b"+OK Top of message follows", b"H: 1", b"H2: 2", b"", b"..b1", b"b2", b"b3", b".",
        b"+OK Bye"]
    assert [e.body_lines for e in run.of_type(Retrieve)] == [0, 2, 99]  # type: ignore[attr-defined]


def test_rfc1939_top_with_more_lines_than_any_message_sends_it_whole() -> None:
    """RFC 1939 7: a line count past the body's length gives the entire message, also
    one with more digits than a message number may have; a sign or a blank is no count."""
    stored = {"a": b"H: 1\n\nb1\nb2\nb3\n"}
    top = [b"+OK Top of message follows", b"H: 1", b"", b"b1", b"b2"]
    data = LOGIN + b"TOP 1 99999999999999999999\r\nTOP 1 0000000000000000002\r\n" \
        b"TOP 1 +5\r\nTOP 1 1e9\r\nQUIT\r\n"
    run = run_all_ways(data, stored=stored)
    assert run.lines[3:10] == [*top, b"b3", b"."]
    assert run.lines[10:16] == [*top, b"."]  # a count of 2, written with leading zeros
    assert run.lines[16].startswith(b"-ERR") and run.lines[17].startswith(b"-ERR")
    assert run.lines[18] == b"+OK Bye"


def test_rfc1939_update_only_on_quit() -> None:
    """RFC 1939 6: deletions happen in UPDATE after QUIT; a dropped connection deletes
    nothing and produces no Update."""
    dropped = run_all_ways(LOGIN + b"DELE 1\r\n", stored=STORED)
    assert dropped.of_type(Update) == [] and dropped.adapter.deleted is None
    assert dropped.conn.closed
    quit_ = run_all_ways(LOGIN + b"DELE 2\r\nQUIT\r\n", stored=STORED)
    assert quit_.adapter.deleted == ["uid-2"]


def test_rfc1939_update_failure_is_sys_temp() -> None:
    """RFC 1939 6 and RFC 3206 4: a failed removal answers -ERR [SYS/TEMP] and closes."""
    run = run_all_ways(LOGIN + b"DELE 1\r\nQUIT\r\nNOOP\r\n", stored=STORED, update_fails=True)
    assert run.lines[-1] == b"-ERR [SYS/TEMP] Some deleted messages not removed"
    assert run.conn.closed


def test_rfc1939_quit_in_authorization() -> None:
    """RFC 1939 4: QUIT before login closes without an UPDATE state."""
    run = run_all_ways(b"QUIT\r\nUSER x\r\n", stored=STORED)
    assert run.lines == [b"+OK pop.test POP3 server ready", b"+OK Bye"]
    assert run.of_type(Update) == []


def test_rfc2449_capa_example_shape() -> None:
    """RFC 2449 5 and 6: CAPA lists one capability a line, ends with "."; USER and the
    SASL list only where login is allowed, STLS only before TLS (RFC 2595 4)."""
    tls = run_all_ways(b"CAPA\r\n", tls=True)
    assert tls.lines[1:] == [b"+OK Capability list follows", b"TOP", b"UIDL", b"RESP-CODES",
                             b"AUTH-RESP-CODE", b"PIPELINING", b"USER",
                             b"SASL PLAIN X-FAKE-SCRAM", b"IMPLEMENTATION Mailyard", b"."]
    plain = run_all_ways(b"CAPA\r\n", tls=False)
    assert b"USER" not in plain.lines and b"STLS" in plain.lines
    assert not any(ln.startswith(b"SASL") for ln in plain.lines)
    after = run_all_ways(LOGIN + b"CAPA\r\n", stored=STORED)
    assert b"USER" not in after.lines[3:] and b"TOP" in after.lines


def test_rfc2449_pipelining_answers_in_order() -> None:
    """RFC 2449 6.6: a client may send many commands at once; answers keep the order,
    also across the decisions (Login, Retrieve) that pause the core."""
    data = LOGIN + b"RETR 1\r\nLIST 2\r\nBOGUS\r\nTOP 2 0\r\nUIDL 1\r\nNOOP\r\nQUIT\r\n"
    run = run_all_ways(data, stored=STORED)
    statuses = [ln.split(b" ")[0] for ln in run.status_lines]
    assert statuses == [b"+OK"] * 5 + [b"-ERR"] + [b"+OK"] * 4
    assert run.status_lines[4] == b"+OK 2 200"
    assert run.status_lines[6] == b"+OK Top of message follows"


def test_rfc2449_in_use_response_code() -> None:
    """RFC 2449 8.1.1 / RFC 3206: [IN-USE] from the adapter is passed on, not counted as
    an authentication failure."""
    settings = Pop3Settings(hostname="pop.test", max_auth_failures=1)
    run = run_all_ways(LOGIN + b"STAT\r\n", stored=STORED, locked=True, settings=settings)
    assert run.lines[2] == b"-ERR [IN-USE] Do you have another POP session running?"
    assert run.lines[3] == b"-ERR Command not valid in this state"
    assert run.conn.auth_failures == 0


def test_content_not_held_and_last_line_without_crlf() -> None:
    """RFC 1939 3: a multi-line response ends in CRLF "." CRLF even if the stored message
    lacks a final line end; CR and LF split across content chunks stay one CRLF."""
    stored = {"a": b"A\r\nB\r\n\r\nno newline at end"}
    for seed in range(20):
        run = run_session(LOGIN + b"RETR 1\r\nQUIT\r\n", stored=stored, seed=seed)
        assert run.lines[3:] == [b"+OK 25 octets", b"A", b"B", b"", b"no newline at end",
                                 b".", b"+OK Bye"]
