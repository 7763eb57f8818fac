"""FETCH data items (mailyard.imapd.fetch): RFC 9051 6.4.5 / 7.5.2, RFC 3501 6.4.5 and
8, RFC 3516 BINARY, RFC 7162 MODSEQ, checked on the bytes of the FETCH response."""

from __future__ import annotations

import calendar
from pathlib import Path

import pytest

from mailyard.imapd import fetch
from mailyard.imapd.fetch import FetchError, fetch_items, needs_message, needs_structure, sets_seen
from mailyard.message import structure
from mailyard.message.structure import Structure
from mailyard.proto.imap import responses
from mailyard.proto.imap.commands import Fetch, FetchAttribute
from mailyard.proto.imap.parser import ParseContext, parse_command
from mailyard.store.index import MessageInfo

# RFC 3501 8: the header of message 12 in the sample session ({342} octets)
RFC_HEADER = (
    b"Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\r\n"
    b"From: Terry Gray <gray@cac.washington.edu>\r\n"
    b"Subject: IMAP4rev1 WG mtg summary and minutes\r\n"
    b"To: imap@cac.washington.edu\r\n"
    b"cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>\r\n"
    b"Message-Id: <B27397-0100000@cac.washington.edu>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\r\n")
# 3028 octets in 92 lines, as the sample's BODY says
RFC_TEXT = (b"x" * 31 + b"\r\n") * 91 + b"x" * (3028 - 33 * 91 - 2) + b"\r\n"
RFC_DATE = calendar.timegm((1996, 7, 17, 9, 44, 25))  # 17-Jul-1996 02:44:25 -0700


def info(size: int = 0, flags: tuple[str, ...] = (), uid: int = 1, modseq: int = 1,
         when: float = RFC_DATE) -> MessageInfo:
    return MessageInfo(uid, frozenset(flags), modseq, when, size, Path("/nonexistent"))


def attributes(request: bytes, uid: bool = False) -> tuple[FetchAttribute, ...]:
    line = (b"a1 UID FETCH 1 " if uid else b"a1 FETCH 1 ") + request
    _, command = parse_command([line], ParseContext())
    assert isinstance(command, Fetch)
    return command.attributes


def fetch_line(request: bytes, message: bytes | None = None, *, number: int = 1,
               meta: MessageInfo | None = None, modseq: bool = False,
               uid: bool = False) -> bytes:
    """The ``* n FETCH`` line for ``request``, the way the adapter is meant to call:
    the message only when needed, the structures as the index caches them."""
    atts = attributes(request, uid)
    env: Structure = None
    bs: Structure = None
    if needs_structure(atts):
        assert message is not None
        env, bs = structure.loads(structure.dumps(structure.compute(message)[0])), \
            structure.loads(structure.dumps(structure.compute(message)[1]))
    if meta is None:
        meta = info(len(structure.to_crlf(message)) if message is not None else 0)
    items = fetch_items(number, meta, atts, message=message if needs_message(atts) else None,
                        envelope=env, bodystructure=bs, modseq=modseq)
    return responses.fetch(number, items)


def section(spec: bytes, message: bytes) -> bytes:
    """The content of ``BODY.PEEK[spec]`` (b"" for the empty string)."""
    line = fetch_line(b"BODY.PEEK[" + spec + b"]", message)
    head = b"* 1 FETCH (BODY[" + spec.upper() + b"] "
    assert line.startswith(head) and line.endswith(b")\r\n")
    value = line[len(head):-3]
    if value == b'""':
        return b""
    size, _, content = value.partition(b"}\r\n")
    assert size.startswith(b"{") and int(size[1:]) == len(content)
    return content


# --- the index items: no message needed ---------------------------------------------------

def test_rfc9051_7_5_2_example() -> None:
    """RFC 9051 7.5.2: ``* 23 FETCH (FLAGS (\\Seen) RFC822.SIZE 44827)``."""
    atts = attributes(b"(FLAGS RFC822.SIZE)")
    assert not needs_message(atts) and not needs_structure(atts) and not sets_seen(atts)
    items = fetch_items(23, info(44827, ("\\Seen",)), atts, message=None, envelope=None,
                        bodystructure=None, modseq=False)
    assert responses.fetch(23, items) == b"* 23 FETCH (FLAGS (\\Seen) RFC822.SIZE 44827)\r\n"


def test_fast_macro_from_index_only() -> None:
    """RFC 9051 6.4.5 FAST = (FLAGS INTERNALDATE RFC822.SIZE): served without the
    message or its structure; INTERNALDATE as date-time in UTC."""
    atts = attributes(b"FAST")
    assert not needs_message(atts) and not needs_structure(atts)
    items = fetch_items(3, info(120, ("\\Seen", "\\Answered")), atts, message=None,
                        envelope=None, bodystructure=None, modseq=False)
    assert responses.fetch(3, items) == (
        b'* 3 FETCH (FLAGS (\\Answered \\Seen) INTERNALDATE "17-Jul-1996 09:44:25 +0000"'
        b" RFC822.SIZE 120)\r\n")


def test_internaldate_day_padded_and_clamped() -> None:
    """RFC 9051 9 date-day-fixed: two digits; the year stays four digits."""
    assert fetch.internal_date(calendar.timegm((2024, 2, 3, 4, 5, 6))) \
        == '"03-Feb-2024 04:05:06 +0000"'
    assert fetch.internal_date(-5) == '"01-Jan-1970 00:00:00 +0000"'
    assert fetch.internal_date(1e15) == '"31-Dec-9999 23:59:59 +0000"'


def test_flags_order_keywords_and_damaged_names() -> None:
    """System flags in a fixed order, keywords sorted, a name that is no flag atom
    (it would break the response) left out; the same set renders the same."""
    meta = info(flags=("$Junk", "\\Seen", "\\Flagged", "bad name", "Ölf", "$Forwarded"))
    line = fetch_line(b"FLAGS", meta=meta)
    assert line == b"* 1 FETCH (FLAGS (\\Flagged \\Seen $Forwarded $Junk))\r\n"
    assert fetch_line(b"FLAGS", meta=meta) == line
    assert fetch_line(b"FLAGS", meta=info()) == b"* 1 FETCH (FLAGS ())\r\n"


def test_uid_fetch_adds_uid() -> None:
    """RFC 9051 6.4.9: UID FETCH answers with UID even when not asked."""
    assert fetch_line(b"FLAGS", meta=info(uid=77), uid=True) \
        == b"* 1 FETCH (FLAGS () UID 77)\r\n"


def test_modseq_asked_or_added() -> None:
    """RFC 7162 3.1.4.1 ``MODSEQ (n)``: rendered when asked, added when the adapter
    says so, never twice."""
    meta = info(modseq=12121231000, uid=8)
    assert fetch_line(b"(UID MODSEQ)", meta=meta) \
        == b"* 1 FETCH (UID 8 MODSEQ (12121231000))\r\n"
    assert fetch_line(b"(UID)", meta=meta, modseq=True) \
        == b"* 1 FETCH (UID 8 MODSEQ (12121231000))\r\n"
    assert fetch_line(b"(MODSEQ UID)", meta=meta, modseq=True) \
        == b"* 1 FETCH (MODSEQ (12121231000) UID 8)\r\n"


def test_unsupported_and_nil_items() -> None:
    """THREADID (RFC 8474 5.2) and SAVEDATE (RFC 8514) may be NIL; EMAILID may not."""
    assert fetch_line(b"(THREADID SAVEDATE)") == b"* 1 FETCH (THREADID NIL SAVEDATE NIL)\r\n"
    with pytest.raises(FetchError):
        fetch_line(b"EMAILID")


# --- ENVELOPE, BODY, BODYSTRUCTURE ----------------------------------------------------------

def test_rfc3501_8_fetch_full() -> None:
    """RFC 3501 8 (``a003 fetch 12 full``): FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODY
    with BODY the basic form of the cached BODYSTRUCTURE."""
    message = RFC_HEADER + RFC_TEXT
    atts = attributes(b"FULL")
    assert needs_structure(atts) and not needs_message(atts)
    line = fetch_line(b"FULL", message, number=12, meta=info(4286, ("\\Seen",)))
    assert line == (
        b'* 12 FETCH (FLAGS (\\Seen) INTERNALDATE "17-Jul-1996 09:44:25 +0000"'
        b' RFC822.SIZE 4286 ENVELOPE ("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)"'
        b' "IMAP4rev1 WG mtg summary and minutes"'
        b' (("Terry Gray" NIL "gray" "cac.washington.edu"))'
        b' (("Terry Gray" NIL "gray" "cac.washington.edu"))'
        b' (("Terry Gray" NIL "gray" "cac.washington.edu"))'
        b' ((NIL NIL "imap" "cac.washington.edu"))'
        b' ((NIL NIL "minutes" "CNRI.Reston.VA.US")'
        b'("John Klensin" NIL "KLENSIN" "MIT.EDU")) NIL NIL'
        b' "<B27397-0100000@cac.washington.edu>")'
        b' BODY ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92))\r\n')


def test_rfc3501_8_body_header() -> None:
    """RFC 3501 8 (``a004 fetch 12 body[header]``): ``BODY[HEADER] {342}``, and it
    sets \\Seen."""
    assert sets_seen(attributes(b"body[header]"))
    line = fetch_line(b"body[header]", RFC_HEADER + RFC_TEXT, number=12)
    assert line == b"* 12 FETCH (BODY[HEADER] {342}\r\n" + RFC_HEADER + b")\r\n"


def test_structures_computed_when_not_cached() -> None:
    """Without cached structures, ENVELOPE/BODYSTRUCTURE come from the message."""
    message = RFC_HEADER + RFC_TEXT
    atts = attributes(b"(BODYSTRUCTURE)")
    items = fetch_items(1, info(), atts, message=message, envelope=None, bodystructure=None,
                        modseq=False)
    assert items == [("BODYSTRUCTURE", structure.compute(message)[1])]
    with pytest.raises(FetchError):
        fetch_items(1, info(), atts, message=None, envelope=None, bodystructure=None,
                    modseq=False)


# RFC 9051 6.4.5: the example of part numbers, as a message
EXAMPLE = (
    b"From: outer@example.test\r\nSubject: outer\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\n'
    b"preamble\r\n"
    b"--outer\r\nContent-Type: text/plain\r\n\r\npart one\r\n"
    b"--outer\r\nContent-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\n"
    b"--outer\r\nContent-Type: message/rfc822\r\n\r\n"
    b"From: three@example.test\r\nSubject: three\r\n"
    b'Content-Type: multipart/mixed; boundary="three"\r\n\r\n'
    b"--three\r\nContent-Type: text/plain\r\n\r\npart 3.1\r\n"
    b"--three\r\nContent-Type: application/octet-stream\r\n\r\n3.2 data\r\n"
    b"--three--\r\n"
    b'--outer\r\nContent-Type: multipart/mixed; boundary="four"\r\n\r\n'
    b"--four\r\nContent-Type: image/gif\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"R0lGODlh\r\n"
    b"--four\r\nContent-Type: message/rfc822\r\n\r\n"
    b"From: four2@example.test\r\nSubject: 4.2\r\n"
    b'Content-Type: multipart/mixed; boundary="fourtwo"\r\n\r\n'
    b"--fourtwo\r\nContent-Type: text/plain\r\n\r\npart 4.2.1\r\n"
    b'--fourtwo\r\nContent-Type: multipart/alternative; boundary="alt"\r\n\r\n'
    b"--alt\r\nContent-Type: text/plain\r\n\r\nplain 4.2.2.1\r\n"
    b"--alt\r\nContent-Type: text/richtext\r\n\r\n<bold>rich</bold> 4.2.2.2\r\n"
    b"--alt--\r\n"
    b"--fourtwo--\r\n"
    b"--four--\r\n"
    b"--outer--\r\nepilogue\r\n")

THREE_HEADER = (b"From: three@example.test\r\nSubject: three\r\n"
                b'Content-Type: multipart/mixed; boundary="three"\r\n\r\n')
FOUR_TWO_HEADER = (b"From: four2@example.test\r\nSubject: 4.2\r\n"
                   b'Content-Type: multipart/mixed; boundary="fourtwo"\r\n\r\n')


@pytest.mark.parametrize(("spec", "content"), [
    (b"1", b"part one"),
    (b"2", b"AAEC"),
    (b"2.MIME", b"Content-Type: application/octet-stream\r\n"
                b"Content-Transfer-Encoding: base64\r\n\r\n"),
    (b"3", THREE_HEADER + b"--three\r\nContent-Type: text/plain\r\n\r\npart 3.1\r\n"
                          b"--three\r\nContent-Type: application/octet-stream\r\n\r\n"
                          b"3.2 data\r\n--three--"),
    (b"3.MIME", b"Content-Type: message/rfc822\r\n\r\n"),
    (b"3.HEADER", THREE_HEADER),
    (b"3.HEADER.FIELDS (subject)", b"Subject: three\r\n\r\n"),
    (b"3.TEXT", b"--three\r\nContent-Type: text/plain\r\n\r\npart 3.1\r\n"
                b"--three\r\nContent-Type: application/octet-stream\r\n\r\n"
                b"3.2 data\r\n--three--"),
    (b"3.1", b"part 3.1"),
    (b"3.2", b"3.2 data"),
    (b"4.1", b"R0lGODlh"),
    (b"4.1.MIME", b"Content-Type: image/gif\r\nContent-Transfer-Encoding: base64\r\n\r\n"),
    (b"4.2.HEADER", FOUR_TWO_HEADER),
    (b"4.2.1", b"part 4.2.1"),
    (b"4.2.2", b"--alt\r\nContent-Type: text/plain\r\n\r\nplain 4.2.2.1\r\n"
               b"--alt\r\nContent-Type: text/richtext\r\n\r\n<bold>rich</bold> 4.2.2.2\r\n"
               b"--alt--"),
    (b"4.2.2.1", b"plain 4.2.2.1"),
    (b"4.2.2.2", b"<bold>rich</bold> 4.2.2.2"),
    (b"4.2.2.2.MIME", b"Content-Type: text/richtext\r\n\r\n"),
])
def test_rfc9051_6_4_5_part_numbers(spec: bytes, content: bytes) -> None:
    """RFC 9051 6.4.5: the table of part specifiers for a multipart message with
    message/rfc822 parts inside multiparts."""
    assert section(spec, EXAMPLE) == content


def test_rfc9051_6_4_5_header_and_text() -> None:
    header, _, text = EXAMPLE.partition(b"\r\n\r\n")
    assert section(b"HEADER", EXAMPLE) == header + b"\r\n\r\n"
    assert section(b"TEXT", EXAMPLE) == text
    assert section(b"", EXAMPLE) == EXAMPLE
    assert section(b"4.2.TEXT", EXAMPLE).startswith(b"--fourtwo\r\n")
    assert section(b"4.2.TEXT", EXAMPLE).endswith(b"--alt--\r\n--fourtwo--")


@pytest.mark.parametrize("spec", [b"5", b"4.3", b"1.1", b"1.2", b"3.3", b"1.HEADER",
                                  b"4.1.TEXT", b"4.HEADER", b"2.1.1.1.1", b"99999999"])
def test_missing_sections_are_empty(spec: bytes) -> None:
    """A section the message does not have is "" (what Dovecot answers; RFC 9051
    6.4.5 leaves NIL or "" to the server): no part 5, no sub-part of a text part, no
    HEADER of a part that is not message/rfc822."""
    assert fetch_line(b"BODY.PEEK[" + spec + b"]", EXAMPLE) \
        == b'* 1 FETCH (BODY[' + spec + b'] "")\r\n'


def _leaves(bs: Structure, prefix: str = "") -> list[tuple[str, int]]:
    assert isinstance(bs, list)
    if isinstance(bs[0], list):
        out: list[tuple[str, int]] = []
        for i, part in enumerate(bs):
            if not isinstance(part, list):
                break
            out += _leaves(part, f"{prefix}{i + 1}.")
        return out
    size = bs[6]
    assert isinstance(size, int)
    return [(prefix.rstrip("."), size)]


def test_section_sizes_match_bodystructure() -> None:
    """BODY[n] is exactly as long as BODYSTRUCTURE said (same entity offsets)."""
    _, bs = structure.compute(EXAMPLE)
    leaves = _leaves(bs)
    assert [name for name, _ in leaves] == ["1", "2", "3", "4.1", "4.2"]
    for name, size in leaves:
        assert len(section(name.encode(), EXAMPLE)) == size


def test_body_is_bodystructure_without_extensions() -> None:
    """RFC 9051 7.5.2: BODY is BODYSTRUCTURE without extension data, also inside a
    message/rfc822 part."""
    line = fetch_line(b"(BODY BODYSTRUCTURE)", EXAMPLE)
    body = line[len(b"* 1 FETCH (BODY "):line.index(b" BODYSTRUCTURE ")]
    assert body == (
        b'(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 8 1)'
        b'("APPLICATION" "OCTET-STREAM" NIL NIL NIL "BASE64" 4)'
        b'("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 210 (NIL "three"'
        b' ((NIL NIL "three" "example.test")) ((NIL NIL "three" "example.test"))'
        b' ((NIL NIL "three" "example.test")) NIL NIL NIL NIL NIL)'
        b' (("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 8 1)'
        b'("APPLICATION" "OCTET-STREAM" NIL NIL NIL "7BIT" 8) "MIXED") 13)'
        b'(("IMAGE" "GIF" NIL NIL NIL "BASE64" 8)'
        b'("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 345 (NIL "4.2"'
        b' ((NIL NIL "four2" "example.test")) ((NIL NIL "four2" "example.test"))'
        b' ((NIL NIL "four2" "example.test")) NIL NIL NIL NIL NIL)'
        b' (("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 10 1)'
        b'(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 13 1)'
        b'("TEXT" "RICHTEXT" ("CHARSET" "us-ascii") NIL NIL "7BIT" 25 1) "ALTERNATIVE")'
        b' "MIXED") 21) "MIXED") "MIXED")')
    assert line.endswith(b' "MIXED" ("BOUNDARY" "outer") NIL NIL NIL))\r\n')


def test_top_level_message_rfc822() -> None:
    """A message whose own type is message/rfc822 has part 1, the message inside;
    its parts are 1.1, 1.2 ... and 1.HEADER is the inner header."""
    inner = (b"Subject: inner\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
             b"--b\r\n\r\nfirst\r\n--b\r\n\r\nsecond\r\n--b--\r\n")
    message = b"Subject: outer\r\nContent-Type: message/rfc822\r\n\r\n" + inner
    assert section(b"1", message) == inner
    assert section(b"1.HEADER", message) == inner[:inner.index(b"\r\n\r\n") + 4]
    assert section(b"1.1", message) == b"first"
    assert section(b"1.2", message) == b"second"
    assert section(b"1.3", message) == b""
    assert section(b"2", message) == b""


def test_single_part_message_part_one() -> None:
    """RFC 9051 6.4.5: a non-multipart message has only part 1, its body; its MIME
    header is the message header."""
    message = b"Subject: s\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
    assert section(b"1", message) == b"hello\r\n"
    assert section(b"1.MIME", message) == b"Subject: s\r\nContent-Type: text/plain\r\n\r\n"
    assert section(b"2", message) == b""
    assert section(b"1.1", message) == b""


# --- HEADER.FIELDS ---------------------------------------------------------------------------

FOLDED = (
    b"Received: from a\r\n\tby b; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
    b"DATE: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
    b"Subject: a long\r\n  folded subject\r\n"
    b"this line is junk\r\n"
    b"from: Someone <someone@example.test>\r\n"
    b"X-Empty:\r\n"
    b"Subject : second, obsolete spacing\r\n"
    b"\r\nbody\r\n")


def test_rfc9051_6_4_5_header_fields_example() -> None:
    """RFC 9051 6.4.5: ``FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])`` - the
    fields named, as they are, in message order, then the blank line; field names
    match in any case; FETCH without PEEK sets \\Seen."""
    atts = attributes(b"(FLAGS BODY[HEADER.FIELDS (DATE FROM)])")
    assert sets_seen(atts) and needs_message(atts)
    line = fetch_line(b"(FLAGS BODY[HEADER.FIELDS (DATE FROM)])", FOLDED, number=2,
                      meta=info(flags=("\\Seen",)))
    wanted = (b"DATE: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
              b"from: Someone <someone@example.test>\r\n\r\n")
    assert line == (b"* 2 FETCH (FLAGS (\\Seen) BODY[HEADER.FIELDS (DATE FROM)] {%d}\r\n"
                    % len(wanted) + wanted + b")\r\n")


def test_header_fields_keep_folding() -> None:
    assert section(b"HEADER.FIELDS (Subject received)", FOLDED) == (
        b"Received: from a\r\n\tby b; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
        b"Subject: a long\r\n  folded subject\r\n"
        b"Subject : second, obsolete spacing\r\n\r\n")
    assert section(b"HEADER.FIELDS (X-Empty)", FOLDED) == b"X-Empty:\r\n\r\n"
    assert section(b"HEADER.FIELDS (X-None)", FOLDED) == b"\r\n"


def test_header_fields_not() -> None:
    """HEADER.FIELDS.NOT: every other field (a line that is no field is not one)."""
    assert section(b"HEADER.FIELDS.NOT (received SUBJECT X-Empty)", FOLDED) == (
        b"DATE: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
        b"from: Someone <someone@example.test>\r\n\r\n")


def test_header_fields_label_quotes_names() -> None:
    """The response echoes the field list as astrings (a name with a space quoted)."""
    line = fetch_line(b'BODY.PEEK[HEADER.FIELDS ("x y" FROM)]', FOLDED)
    assert line.startswith(b'* 1 FETCH (BODY[HEADER.FIELDS ("X Y" FROM)] {')


def test_8bit_headers_as_literals() -> None:
    """8-bit header octets are served unchanged, as a literal; HEADER.FIELDS matches
    them too."""
    message = b"Subject: caf\xc3\xa9\r\nX-Raw: \xff\xfe\r\n\r\nbody\r\n"
    assert section(b"HEADER", message) == b"Subject: caf\xc3\xa9\r\nX-Raw: \xff\xfe\r\n\r\n"
    assert section(b"HEADER.FIELDS (X-RAW)", message) == b"X-Raw: \xff\xfe\r\n\r\n"
    assert fetch_line(b"ENVELOPE", message).startswith(
        b"* 1 FETCH (ENVELOPE (NIL {5}\r\ncaf\xc3\xa9 NIL")


# --- RFC822 items, line ends, partials --------------------------------------------------------

def test_rfc822_items() -> None:
    """RFC 9051 6.4.5 (obsolete forms kept by RFC 3501): RFC822 = BODY[],
    RFC822.HEADER = BODY.PEEK[HEADER], RFC822.TEXT = BODY[TEXT]."""
    message = b"Subject: s\r\n\r\nbody\r\n"
    assert fetch_line(b"(RFC822.HEADER RFC822.TEXT RFC822)", message) == (
        b"* 1 FETCH (RFC822.HEADER {14}\r\nSubject: s\r\n\r\n RFC822.TEXT {6}\r\nbody\r\n"
        b" RFC822 {20}\r\nSubject: s\r\n\r\nbody\r\n)\r\n")
    assert sets_seen(attributes(b"RFC822")) and sets_seen(attributes(b"RFC822.TEXT"))
    assert not sets_seen(attributes(b"RFC822.HEADER"))
    assert needs_message(attributes(b"RFC822.HEADER"))


def test_lf_only_file_is_served_with_crlf() -> None:
    """A file with bare LF line ends is served with CRLF, the sizes RFC822.SIZE and
    BODYSTRUCTURE count."""
    message = (b"Subject: lf\nContent-Type: multipart/mixed; boundary=b\n\n"
               b"--b\n\none\ntwo\n--b--\n")
    crlf = structure.to_crlf(message)
    assert section(b"", message) == crlf
    assert section(b"1", message) == b"one\r\ntwo"
    assert section(b"HEADER", message) == crlf[:crlf.index(b"\r\n\r\n") + 4]
    assert fetch_line(b"RFC822.SIZE", message) == b"* 1 FETCH (RFC822.SIZE %d)\r\n" % len(crlf)


def test_header_only_message() -> None:
    """No blank line: everything is header, the text is empty."""
    message = b"Subject: only\r\nFrom: a@b\r\n"
    assert section(b"HEADER", message) == message
    assert section(b"TEXT", message) == b""
    assert section(b"HEADER.FIELDS (FROM)", message) == b"From: a@b\r\n\r\n"


def test_partial_fetches() -> None:
    """RFC 9051 6.4.5/7.5.2: <offset.length> is answered as ``BODY[..]<offset>``; a
    range running past the end is cut; an offset beyond the end gives ""."""
    message = b"Subject: s\r\n\r\n0123456789"
    assert fetch_line(b"BODY.PEEK[TEXT]<2.3>", message) \
        == b"* 1 FETCH (BODY[TEXT]<2> {3}\r\n234)\r\n"
    assert fetch_line(b"BODY.PEEK[TEXT]<8.100>", message) \
        == b"* 1 FETCH (BODY[TEXT]<8> {2}\r\n89)\r\n"
    assert fetch_line(b"BODY.PEEK[]<500.10>", message) == b'* 1 FETCH (BODY[]<500> "")\r\n'
    assert fetch_line(b"BODY[1]<0.4>", message) == b"* 1 FETCH (BODY[1]<0> {4}\r\n0123)\r\n"


def test_nul_in_body_sent_as_0x80() -> None:
    """RFC 9051 4.3: no NUL in a literal; BODY data keeps its size with 0x80."""
    message = b"Subject: s\r\n\r\na\x00b"
    assert fetch_line(b"BODY.PEEK[TEXT]", message) == b"* 1 FETCH (BODY[TEXT] {3}\r\na\x80b)\r\n"


# --- BINARY (RFC 3516) ------------------------------------------------------------------------

BINARY_MESSAGE = (
    b"Subject: binary\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
    b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: Base64\r\n"
    b"\r\nAAECAwRo\r\naGVsbG8=\r\n"
    b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"caf=C3=A9 is a long line that is soft=\r\nbroken, a=3Db\r\n"
    b"--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n"
    b"begin 644 x\r\n"
    b"--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    b"na\xc3\xafve\r\n"
    b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
    b"\r\nAAE*\r\n"
    b"--b--\r\n")


def test_binary_base64_with_nul_is_literal8() -> None:
    """RFC 3516 4.2: BINARY[1] is the decoded content; with a NUL it is a literal8."""
    assert fetch_line(b"BINARY.PEEK[1]", BINARY_MESSAGE) \
        == b"* 1 FETCH (BINARY[1] ~{11}\r\n\x00\x01\x02\x03\x04hhello)\r\n"
    assert fetch_line(b"BINARY.SIZE[1]", BINARY_MESSAGE) == b"* 1 FETCH (BINARY.SIZE[1] 11)\r\n"
    assert fetch_line(b"BINARY.PEEK[1]<6.100>", BINARY_MESSAGE) \
        == b"* 1 FETCH (BINARY[1]<6> {5}\r\nhello)\r\n"


def test_binary_quoted_printable() -> None:
    decoded = "café is a long line that is softbroken, a=b".encode()
    assert fetch_line(b"BINARY.PEEK[2]", BINARY_MESSAGE) \
        == b"* 1 FETCH (BINARY[2] {%d}\r\n" % len(decoded) + decoded + b")\r\n"
    assert fetch_line(b"BINARY.SIZE[2]", BINARY_MESSAGE) \
        == b"* 1 FETCH (BINARY.SIZE[2] %d)\r\n" % len(decoded)


def test_binary_identity_damaged_and_missing() -> None:
    """8bit content as it is; damaged base64 decoded as far as it goes; a part that
    does not exist is "" with size 0; a multipart part is its body as it is."""
    assert section(b"4", BINARY_MESSAGE) == b"na\xc3\xafve"
    assert fetch_line(b"BINARY.PEEK[4]", BINARY_MESSAGE) \
        == b"* 1 FETCH (BINARY[4] {6}\r\nna\xc3\xafve)\r\n"
    assert fetch_line(b"BINARY.PEEK[5]", BINARY_MESSAGE) \
        == b"* 1 FETCH (BINARY[5] ~{2}\r\n\x00\x01)\r\n"
    assert fetch_line(b"BINARY.PEEK[9]", BINARY_MESSAGE) == b'* 1 FETCH (BINARY[9] "")\r\n'
    assert fetch_line(b"BINARY.SIZE[9]", BINARY_MESSAGE) == b"* 1 FETCH (BINARY.SIZE[9] 0)\r\n"
    assert fetch_line(b"BINARY.PEEK[1.2]", EXAMPLE) \
        == b'* 1 FETCH (BINARY[1.2] "")\r\n'
    assert fetch_line(b"BINARY.PEEK[4.2.2.2]", EXAMPLE) \
        == b"* 1 FETCH (BINARY[4.2.2.2] {25}\r\n<bold>rich</bold> 4.2.2.2)\r\n"
    assert fetch_line(b"BINARY.PEEK[4.1]", EXAMPLE) \
        == b"* 1 FETCH (BINARY[4.1] {6}\r\nGIF89a)\r\n"


def test_binary_unknown_cte() -> None:
    """RFC 3516 4.3: an encoding the server cannot decode is NO [UNKNOWN-CTE]."""
    for request in (b"BINARY.PEEK[3]", b"BINARY.SIZE[3]"):
        with pytest.raises(FetchError) as caught:
            fetch_line(request, BINARY_MESSAGE)
        assert caught.value.code == "UNKNOWN-CTE"
        assert isinstance(caught.value, ValueError)
    assert section(b"3", BINARY_MESSAGE) == b"begin 644 x"


def test_binary_whole_message() -> None:
    """BINARY[] of a single-part message: its header, then the decoded body; of a
    multipart message: the message as it is."""
    message = b"Subject: s\r\nContent-Transfer-Encoding: base64\r\n\r\naGk=\r\n"
    assert fetch_line(b"BINARY.PEEK[]", message) == (
        b"* 1 FETCH (BINARY[] {51}\r\nSubject: s\r\nContent-Transfer-Encoding: base64\r\n"
        b"\r\nhi)\r\n")
    assert section(b"", BINARY_MESSAGE) == BINARY_MESSAGE


def test_binary_sets_seen_unless_peek() -> None:
    assert sets_seen(attributes(b"BINARY[1]"))
    assert not sets_seen(attributes(b"BINARY.PEEK[1]"))
    assert not sets_seen(attributes(b"BINARY.SIZE[1]"))
    assert not sets_seen(attributes(b"(BODY.PEEK[] BODY BODYSTRUCTURE ENVELOPE)"))
    assert needs_message(attributes(b"BINARY.SIZE[1]"))
    assert not needs_structure(attributes(b"BODY.PEEK[1]"))


# --- bombs and robustness ---------------------------------------------------------------------

def test_deep_nesting_and_long_part_paths() -> None:
    """A message nested deeper than structure.MAX_DEPTH: sections past the cap are the
    opaque part's content or "", and a section path thousands of numbers long is
    answered without recursion."""
    message = b"Subject: leaf\r\n\r\nleaf\r\n"
    for _ in range(structure.MAX_DEPTH + 10):
        message = b"Content-Type: message/rfc822\r\n\r\n" + message
    path = b".".join([b"1"] * 5000)
    assert fetch_line(b"BODY.PEEK[" + path + b"]", message) \
        == b'* 1 FETCH (BODY[' + path + b'] "")\r\n'
    deepest = b".".join([b"1"] * structure.MAX_DEPTH)
    assert section(deepest, message).endswith(b"\r\n\r\nleaf\r\n")


def test_message_needed_but_missing() -> None:
    with pytest.raises(FetchError):
        fetch_items(1, info(), attributes(b"BODY.PEEK[]"), message=None, envelope=None,
                    bodystructure=None, modseq=False)


def test_attribute_list_changes_between_calls() -> None:
    """The plan kept for one attribute list is not used for another."""
    message = b"Subject: s\r\n\r\nbody\r\n"
    assert fetch_line(b"UID", message, meta=info(uid=5)) == b"* 1 FETCH (UID 5)\r\n"
    atts = attributes(b"RFC822.SIZE")
    first = fetch_items(1, info(7), atts, message=None, envelope=None, bodystructure=None,
                        modseq=False)
    again = fetch_items(2, info(9), atts, message=None, envelope=None, bodystructure=None,
                        modseq=False)
    assert first == [("RFC822.SIZE", 7)] and again == [("RFC822.SIZE", 9)]
    changing = list(atts)
    fetch_items(1, info(7), changing, message=None, envelope=None, bodystructure=None,
                modseq=False)
    changing.append(FetchAttribute("UID"))
    assert fetch_items(1, info(7, uid=3), changing, message=None, envelope=None,
                       bodystructure=None, modseq=False) == [("RFC822.SIZE", 7), ("UID", 3)]


def test_truncated_messages_stay_consistent() -> None:
    """A message cut anywhere (missing close delimiters, header without end): every
    section is served without error, and each leaf part is as long as BODYSTRUCTURE
    says."""
    specs = [b"", b"HEADER", b"TEXT", b"1", b"2", b"3", b"3.HEADER", b"3.TEXT", b"3.1",
             b"4.1.MIME", b"4.2.2.1", b"4.2.HEADER.FIELDS (SUBJECT)"]
    for cut in range(0, len(EXAMPLE), 7):
        message = EXAMPLE[:cut]
        for spec in specs:
            section(spec, message)
        if not message:
            continue
        _, bs = structure.compute(message)
        for name, size in _leaves(bs):
            spec = (name or "1").encode()  # a single-part message: its part 1
            assert len(section(spec, message)) == size, (cut, name)


@pytest.mark.parametrize("message", [
    b"A: 1\nB: 2\n\nbody\n\nmore\n",
    b"A: 1\r\nB: 2\r\n\r\nbody\r\n",
    b"A: 1\r\nB: 2\n\r\nbody\n",
    b"A: 1\nB: 2\r\n\nbody\r\n\r\n",
    b"A: 1\r\r\nB: 2\n\nbody",
    b"\nbody\n",
    b"\r\nbody\r\n",
    b"A: 1\nB: 2\n",
    b"A: 1\n folded\n\n\n",
])
def test_header_alone_matches_whole_message(message: bytes) -> None:
    """BODY[HEADER], HEADER.FIELDS and RFC822.HEADER, found without converting the
    body, are the header of BODY[] for any mix of line ends."""
    whole = section(b"", message)
    header = section(b"HEADER", message)
    assert whole.startswith(header)
    assert header == whole[:len(whole) - len(section(b"TEXT", message))]
    assert fetch_line(b"RFC822.HEADER", message) == fetch_line(b"BODY.PEEK[HEADER]", message) \
        .replace(b"BODY[HEADER]", b"RFC822.HEADER")
    assert section(b"HEADER.FIELDS (a)", message) \
        == fetch.header_fields(header, ("A",), exclude=False)
