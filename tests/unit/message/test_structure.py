"""ENVELOPE and BODYSTRUCTURE (RFC 9051 7.5.2) from mailyard.message.structure."""

from __future__ import annotations

from mailyard.message import structure
from mailyard.message.structure import MAX_DEPTH, MAX_PARTS, compute, dumps, loads
from mailyard.proto.imap.responses import encode_value

# RFC 9051 7.5.2 (ENVELOPE example): the header of the example message
RFC_HEADER = (
    b"Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\r\n"
    b"From: Terry Gray <gray@cac.washington.edu>\r\n"
    b"Subject: IMAP4rev2 WG mtg summary and minutes\r\n"
    b"To: imap@cac.washington.edu\r\n"
    b"cc: minutes@CNRI.Reston.VA.US,\r\n John Klensin <KLENSIN@MIT.EDU>\r\n"
    b"Message-Id: <B27397-0100000@cac.washington.edu>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\r\n")


def test_rfc9051_envelope_example() -> None:
    """RFC 9051 7.5.2, the ENVELOPE in the FETCH response example."""
    env, _ = compute(RFC_HEADER + b"body\r\n")
    assert encode_value(env) == (
        b'("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev2 WG mtg summary and minutes"'
        b' (("Terry Gray" NIL "gray" "cac.washington.edu"))'
        b' (("Terry Gray" NIL "gray" "cac.washington.edu"))'
        b' (("Terry Gray" NIL "gray" "cac.washington.edu"))'
        b' ((NIL NIL "imap" "cac.washington.edu"))'
        b' ((NIL NIL "minutes" "CNRI.Reston.VA.US")'
        b' ("John Klensin" NIL "KLENSIN" "MIT.EDU")) NIL NIL'
        b' "<B27397-0100000@cac.washington.edu>")')


def test_rfc9051_text_body_example() -> None:
    """RFC 9051 7.5.2: ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92)."""
    body = b"x" * 31 + b"\r\n"  # 33 octets a line
    text = body * 91 + b"x" * (3028 - 33 * 91 - 2) + b"\r\n"
    _, bs = compute(RFC_HEADER + text)
    assert bs == [b"TEXT", b"PLAIN", [b"CHARSET", b"US-ASCII"], None, None, b"7BIT",
                  3028, 92, None, None, None, None]


MIXED = (
    b"From: a@example.test\r\n"
    b"To: undisclosed-recipients:;, Team: x@example.test, \"Q, R\" <q@example.test>;\r\n"
    b"Subject: =?utf-8?q?caf=C3=A9?= \xc3\xa9t\xc3\xa9\r\n"
    b"Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n"
    b"preamble\r\n--XX\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n\r\nbody\r\n"
    b"--XX\r\n"
    b"Content-Type: application/pdf; name=\"a.pdf\"\r\n"
    b"Content-Disposition: attachment; filename*=utf-8''%E2%82%AC.pdf\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\nAAAA\r\n"
    b"--XX\r\nContent-Type: message/rfc822\r\n\r\n"
    b"From: c@example.test\r\nSubject: inner\r\n\r\ninner body\r\n"
    b"--XX--\r\nepilogue\r\n")


def test_multipart_with_attachment_and_nested_message() -> None:
    env, bs = compute(MIXED)
    assert isinstance(env, list)
    assert env[1] == b"=?utf-8?q?caf=C3=A9?= \xc3\xa9t\xc3\xa9"  # raw, encoded words kept
    assert env[5] == [[None, None, b"undisclosed-recipients", None], [None, None, None, None],
                      [None, None, b"Team", None], [None, None, b"x", b"example.test"],
                      [b"Q, R", None, b"q", b"example.test"], [None, None, None, None]]
    assert isinstance(bs, list)
    text, pdf, inner = bs[:3]
    assert bs[3:5] == [b"MIXED", [b"BOUNDARY", b"XX"]]
    assert text[:8] == [b"TEXT", b"PLAIN", [b"CHARSET", b"utf-8"], None, None, b"7BIT", 4, 1]
    assert pdf[:7] == [b"APPLICATION", b"PDF", [b"NAME", b"a.pdf"], None, None, b"BASE64", 4]
    assert pdf[8] == [b"ATTACHMENT", [b"FILENAME*", b"utf-8''%E2%82%AC.pdf"]]
    assert inner[:2] == [b"MESSAGE", b"RFC822"]
    assert inner[6] == len(b"From: c@example.test\r\nSubject: inner\r\n\r\ninner body")
    assert isinstance(inner[7], list) and inner[7][1] == b"inner"
    assert isinstance(inner[8], list) and inner[8][:2] == [b"TEXT", b"PLAIN"]
    assert loads(dumps(bs)) == bs and loads(dumps(env)) == env


def test_lf_input_measured_as_crlf() -> None:
    assert compute(MIXED.replace(b"\r\n", b"\n")) == compute(MIXED)


def test_deep_nesting_is_capped() -> None:
    msg = b"Content-Type: text/plain\r\n\r\nleaf\r\n"
    for level in range(MAX_DEPTH + 30):
        b = b"b%d" % level
        msg = (b"Content-Type: multipart/mixed; boundary=" + b + b"\r\n\r\n--" + b + b"\r\n"
               + msg + b"\r\n--" + b + b"--\r\n")
    _, bs = compute(msg)
    depth = 0
    while isinstance(bs, list) and isinstance(bs[0], list):
        bs, depth = bs[0], depth + 1
    assert depth == MAX_DEPTH
    assert isinstance(bs, list) and bs[:2] == [b"APPLICATION", b"OCTET-STREAM"]


def test_many_parts_are_capped() -> None:
    part = b"--B\r\nContent-Type: text/plain\r\n\r\nx\r\n"
    msg = (b"Content-Type: multipart/mixed; boundary=B\r\n\r\n"
           + part * (MAX_PARTS * 3) + b"--B--\r\n")
    _, bs = compute(msg)
    assert isinstance(bs, list)
    parts = [p for p in bs if isinstance(p, list) and p and isinstance(p[0], bytes)
             and p[0] in (b"TEXT", b"APPLICATION")]
    assert len(parts) == MAX_PARTS
    assert parts[-1][:2] == [b"APPLICATION", b"OCTET-STREAM"]  # the rest, as one part


def test_missing_close_delimiter_and_no_content_type() -> None:
    msg = b"Content-Type: multipart/alternative; boundary=Q\r\n\r\n--Q\r\n\r\nplain\r\n"
    _, bs = structure.compute(msg)
    assert bs == [[b"TEXT", b"PLAIN", [b"CHARSET", b"US-ASCII"], None, None, b"7BIT", 7, 1,
                   None, None, None, None], b"ALTERNATIVE", [b"BOUNDARY", b"Q"], None, None,
                  None]
