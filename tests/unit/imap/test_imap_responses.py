"""IMAP response encoding (RFC 9051 7 and 4.3)."""

from __future__ import annotations

from mailyard.proto.imap import responses as resp


def test_strings_quoted_or_literal() -> None:
    """RFC 9051 4.3: quoted strings cannot hold CR, LF or NUL; 8-bit text is quoted
    only when UTF-8 is enabled (RFC 6855 3), else sent as a literal."""
    assert resp.encode_value("a \"b\" \\c") == b'"a \\"b\\" \\\\c"'
    assert resp.encode_value(b"two\r\nlines") == b"{10}\r\ntwo\r\nlines"
    assert resp.encode_value("Ölkanne") == b"{8}\r\n" + "Ölkanne".encode()
    assert resp.encode_value("Ölkanne", utf8=True) == '"Ölkanne"'.encode()
    assert resp.encode_value(b"\xff\xfe", utf8=True) == b"{2}\r\n\xff\xfe"
    assert resp.encode_value("x" * 2000).startswith(b"{2000}\r\n")
    assert resp.encode_value(resp.Literal(b"\x00\x01", binary=True)) == b"~{2}\r\n\x00\x01"


def test_nil_numbers_lists_atoms() -> None:
    """RFC 9051 4.5 NIL, 4.2 numbers, 4.4 parenthesised lists."""
    value = [None, 12, resp.Atom("\\Seen"), "x", [b"", None]]
    assert resp.encode_value(value) == b'(NIL 12 \\Seen "x" ("" NIL))'


def test_status_lines_cannot_be_split() -> None:
    """RFC 9051 7.1: a status response is one line; adapter text with CRLF is
    neutralised (response injection)."""
    line = resp.tagged("a1", "NO", "bad\r\n* OK [ALERT] owned", "TRYCREATE")
    assert line == b"a1 NO [TRYCREATE] bad  * OK [ALERT] owned\r\n"
    assert resp.tagged("a1", "OK", "") == b"a1 OK ok\r\n"
    assert resp.continuation(b"x\r\ny") == b"+ x  y\r\n"


def test_untagged_data() -> None:
    """RFC 9051 7.2-7.5 examples: EXISTS, EXPUNGE, FLAGS, FETCH, LIST, STATUS,
    ESEARCH (7.3.4), VANISHED (RFC 7162 3.2.10), ENABLED (RFC 5161)."""
    assert resp.exists(23) == b"* 23 EXISTS\r\n"
    assert resp.expunge(3) == b"* 3 EXPUNGE\r\n"
    assert resp.flags(["\\Answered", "\\Seen"]) == b"* FLAGS (\\Answered \\Seen)\r\n"
    assert resp.fetch(12, [("FLAGS", [resp.Atom("\\Seen")]), ("RFC822.SIZE", 44827)]) == \
        b"* 12 FETCH (FLAGS (\\Seen) RFC822.SIZE 44827)\r\n"
    assert resp.list_mailbox(["\\Noselect"], "/", "~/Mail/foo") == \
        b'* LIST (\\Noselect) "/" ~/Mail/foo\r\n'
    assert resp.list_mailbox([], "/", "台北") == b'* LIST () "/" &U,BTFw-\r\n'
    assert resp.list_mailbox([], "/", "台北", utf8=True) == '* LIST () "/" "台北"\r\n'.encode()
    assert resp.list_mailbox([], "/", "a b", extended=[["OLDNAME", ["x"]]]) == \
        b'* LIST () "/" "a b" (("OLDNAME" ("x")))\r\n'
    assert resp.status("blurdybloop", [("MESSAGES", 231), ("UIDNEXT", 44292)]) == \
        b"* STATUS blurdybloop (MESSAGES 231 UIDNEXT 44292)\r\n"
    assert resp.esearch("A282", True, [("MIN", 2), ("ALL", resp.encode_sequence([2, 3, 4, 9]))]) \
        == b'* ESEARCH (TAG "A282") UID MIN 2 ALL 2:4,9\r\n'
    assert resp.vanished(b"41,43:116", earlier=True) == b"* VANISHED (EARLIER) 41,43:116\r\n"
    assert resp.enabled(["CONDSTORE"]) == b"* ENABLED CONDSTORE\r\n"
    assert resp.enabled([]) == b"* ENABLED\r\n"
    assert resp.search([2, 84]) == b"* SEARCH 2 84\r\n"
    assert resp.quota("", [("STORAGE", 10, 512)]) == b'* QUOTA "" (STORAGE 10 512)\r\n'


def test_mailbox_name_quoting() -> None:
    """RFC 9051 9: a mailbox name is an astring; NIL must be quoted to stay a name."""
    assert resp.encode_mailbox("INBOX") == b"INBOX"
    assert resp.encode_mailbox("NIL") == b'"NIL"'
    assert resp.encode_mailbox("a&b") == b"a&-b"
    assert resp.encode_mailbox("") == b'""'


def test_joined_values_have_no_space_between() -> None:
    """RFC 9051 9: ``body-type-mpart = 1*body SP media-subtype`` and
    ``env-from = "(" 1*address ")"`` - no space between the bodies or addresses."""
    parts = resp.Joined([[b"TEXT", b"PLAIN"], [b"TEXT", b"HTML"]])
    assert resp.encode_value([parts, b"ALTERNATIVE"]) \
        == b'(("TEXT" "PLAIN")("TEXT" "HTML") "ALTERNATIVE")'
    assert resp.encode_value([resp.Joined([[None, None, b"a", b"b"]])]) \
        == b'((NIL NIL "a" "b"))'


def test_bytes_fast_path_matches_encode_string() -> None:
    """encode_value's shortcut for plain ASCII gives what encode_string gives, for
    every octet, at the length limit and past it."""
    samples = [bytes([c]) + b"ab" for c in range(256)]
    samples += [b"", b"x" * resp.MAX_QUOTED, b"x" * (resp.MAX_QUOTED + 1), b'a"b\\c']
    for raw in samples:
        for utf8 in (False, True):
            assert resp.encode_value(raw, utf8) == resp.encode_string(raw, utf8)
