"""The cached wire form of ENVELOPE, BODY and BODYSTRUCTURE (mailyard.proto.imap.
structwire, kept by mailyard.store.index): the FETCH response built from it is the
same, octet for octet, as the one encoded from the stored structures (RFC 9051 7.5.2),
for ordinary mail, odd charsets and MIME bombs; a UTF8=ACCEPT session (RFC 9051 4.3,
RFC 6855 3) is told when its octets would differ."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mailyard.imapd.fetch import fetch_items
from mailyard.message import structure
from mailyard.message.structure import MAX_DEPTH, MAX_PARTS
from mailyard.proto.imap import responses, structwire
from mailyard.proto.imap.commands import FetchAttribute
from mailyard.store.api import INBOX
from mailyard.store.index import MailboxIndex
from mailyard.store.maildir import Maildir
from tests.unit.imapd.test_fetch import RFC_HEADER, RFC_TEXT, info


def _nested(levels: int) -> bytes:
    out = b"Content-Type: text/plain\r\n\r\ncore\r\n"
    for level in range(levels):
        out = (b"Content-Type: multipart/mixed; boundary=L%d\r\n\r\n--L%d\r\n" % (level, level)
               + out + b"\r\n--L%d--\r\n" % level)
    return b"Subject: deep\r\n" + out


def _wide(parts: int) -> bytes:
    part = b"--W\r\nContent-Type: text/plain\r\n\r\np\r\n"
    return (b"Subject: wide\r\nContent-Type: multipart/mixed; boundary=W\r\n\r\n"
            + part * parts + b"--W--\r\n")


CORPUS = {
    "rfc3501": RFC_HEADER + RFC_TEXT,
    "no header": b"\r\njust a body\r\n",
    "empty": b"",
    "utf8 header": (b"From: J\xc3\xbcrgen <j@example.org>\r\nSubject: caf\xc3\xa9 \xe2\x82\xac\r\n"
                    b"Content-Type: text/plain; charset=utf-8\r\n\r\nbody\r\n"),
    "latin1 octets": (b"From: \xe9ric <e@example.org>\r\nSubject: d\xe9j\xe0 vu\r\n"
                      b"Content-Type: text/plain; charset=iso-8859-1\r\n\r\n\xe9\r\n"),
    "encoded words": (b"Subject: =?iso-2022-jp?B?GyRCJUYlOSVIGyhC?=\r\n"
                      b"From: =?utf-8?q?=E2=98=83?= <snow@example.org>\r\n"
                      b"Content-Type: text/plain; charset=\"iso-2022-jp\"\r\n\r\nx\r\n"),
    "quotes and backslashes": (b'From: "Doe, \\"J\\"" <j@example.org>\r\n'
                               b'Subject: a "quoted" \\ subject\r\n\r\nx\r\n'),
    "long subject": b"Subject: " + b"word " * 400 + b"\r\n\r\nx\r\n",
    "nested message": (
        b"From: a@example.org\r\nTo: b@example.org, c@example.org\r\n"
        b"Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\nhi\r\n--B\r\n"
        b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\nFrom: x@example.org\r\n"
        b"Content-Type: text/html\r\n\r\n<p>x</p>\r\n--B\r\n"
        b"Content-Type: application/pdf; name*=utf-8''%E2%82%AC.pdf\r\n"
        b"Content-Disposition: attachment; filename*=utf-8''%E2%82%AC.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\nContent-Language: en, de\r\n\r\nAAAA\r\n--B--\r\n"),
    "deep bomb": _nested(MAX_DEPTH + 30),
    "wide bomb": _wide(MAX_PARTS * 3),
    "unclosed multipart": (b"Content-Type: multipart/alternative; boundary=X\r\n\r\n"
                           b"--X\r\nContent-Type: text/plain\r\n\r\nnever closed\r\n"),
}
ITEMS = ("ENVELOPE", "BODYSTRUCTURE", "BODY")


def _uncached(message: bytes, item: str, utf8: bool) -> bytes:
    """The response line as encoded from the structures the index stores."""
    env, bs = (structure.loads(structure.dumps(s)) for s in structure.compute(message))
    values = fetch_items(1, info(), (FetchAttribute(item),), message=None, envelope=env,
                         bodystructure=bs, modseq=False)
    return responses.fetch(1, values, utf8=utf8)


def _cached(wire: dict[str, bytes], item: str, utf8: bool) -> bytes:
    values = fetch_items(1, info(), (FetchAttribute(item),), message=None, envelope=None,
                         bodystructure=None, modseq=False, wire=wire)
    return responses.fetch(1, values, utf8=utf8)


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_cached_octets_equal_the_encoded_structures(name: str) -> None:
    message = CORPUS[name]
    wire = structwire.encode(*structure.compute(message))
    octets = {"ENVELOPE": wire.envelope, "BODYSTRUCTURE": wire.bodystructure,
              "BODY": wire.body}
    for item in ITEMS:
        assert _cached(octets, item, False) == _uncached(message, item, False)
        same = _cached(octets, item, True) == _uncached(message, item, True)
        assert same or wire.utf8_differs  # never wrong for UTF8=ACCEPT without saying so


def test_utf8_sessions_are_told_when_the_octets_differ() -> None:
    """8-bit header text is a literal for a plain session, a quoted string for one that
    enabled UTF8=ACCEPT (RFC 9051 4.3); invalid UTF-8 is a literal for both."""
    wire = structwire.encode(*structure.compute(CORPUS["utf8 header"]))
    assert wire.utf8_differs
    assert b"{9}\r\ncaf\xc3\xa9 \xe2\x82\xac" in wire.envelope  # the literal
    assert not structwire.encode(*structure.compute(CORPUS["latin1 octets"])).utf8_differs
    assert not structwire.encode(*structure.compute(CORPUS["rfc3501"])).utf8_differs


def _index(tmp_path: Path) -> MailboxIndex:
    inbox = Maildir(tmp_path / "u", "host")
    inbox.create()
    return MailboxIndex(inbox)


def test_index_keeps_the_wire_form_of_every_message(tmp_path: Path) -> None:
    index = _index(tmp_path)
    for message in CORPUS.values():
        index.append(INBOX, [message])
    uids = [m.uid for m in index.sync(INBOX).messages]
    structures = index.structures(INBOX, uids)
    wires = index.wires(INBOX, uids, ITEMS)
    assert sorted(wires) == uids
    for uid in uids:
        expected = structwire.encode(*structures[uid])
        assert wires[uid] == (expected.utf8_differs,
                              [expected.envelope, expected.bodystructure, expected.body])
    index.create_folder("Copy")
    index.copy(INBOX, uids[:3], "Copy")
    copied = index.wires("Copy", [1, 2, 3], ["BODYSTRUCTURE"])
    assert [copied[u][1] for u in (1, 2, 3)] == [wires[u][1][1:2] for u in uids[:3]]
    assert index.wires(INBOX, [uids[-1] + 5], ITEMS) == {}  # absent UIDs left out


def test_schema_1_index_gains_the_wire_form(tmp_path: Path) -> None:
    """An index written before the wire columns existed is migrated when opened."""
    index = _index(tmp_path)
    index.append(INBOX, [CORPUS["nested message"]])
    index.append(INBOX, [CORPUS["utf8 header"]])
    before = index.structures(INBOX, [1, 2])
    index.close()
    db = sqlite3.connect(tmp_path / "u" / "mailyard-index.db")  # back to schema 1
    db.executescript("""
        ALTER TABLE messages ADD COLUMN envelope TEXT NOT NULL DEFAULT '';
        ALTER TABLE messages ADD COLUMN bodystructure TEXT NOT NULL DEFAULT '';
        UPDATE messages SET
            envelope = (SELECT envelope FROM structures s
                        WHERE s.folder = messages.folder AND s.uid = messages.uid),
            bodystructure = (SELECT bodystructure FROM structures s
                             WHERE s.folder = messages.folder AND s.uid = messages.uid);
        DROP TABLE structures;
        DROP INDEX expunged_modseq;
        ALTER TABLE folders DROP COLUMN cur_mtime;
        ALTER TABLE folders DROP COLUMN cur_checked;
        PRAGMA user_version = 1;
    """)
    db.close()
    index = _index(tmp_path)
    assert index.structures(INBOX, [1, 2]) == before
    wires = index.wires(INBOX, [1, 2], ["ENVELOPE", "BODYSTRUCTURE"])
    for uid in (1, 2):
        expected = structwire.encode(*before[uid])
        assert wires[uid] == (expected.utf8_differs,
                              [expected.envelope, expected.bodystructure])
    assert [m.uid for m in index.sync(INBOX).messages] == [1, 2]


def test_header_fetches_need_only_the_start_of_the_file(tmp_path: Path) -> None:
    """``BODY.PEEK[HEADER.FIELDS (...)]`` (how clients list a folder) reads a file up to
    its blank line; the response is the same as from the whole file."""
    from mailyard.imapd.engine import read_head
    from mailyard.imapd.fetch import header_only
    from mailyard.store.maildir import read_message
    from tests.unit.imapd.test_fetch import attributes

    request = b"(FLAGS BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)] RFC822.HEADER UID)"
    atts = attributes(request)
    assert header_only(atts)
    assert not header_only(attributes(b"(BODY.PEEK[HEADER] BODY.PEEK[TEXT])"))
    assert not header_only(attributes(b"(BODY.PEEK[1.HEADER])"))
    assert not header_only(attributes(b"(RFC822.HEADER BODYSTRUCTURE)"))
    odd = {"lf then crlf": b"Subject: a\n\r\nbody\n\nmore\n",
           "no blank line": b"Subject: only a header\n",
           "big body": b"From: a@example.org\nSubject: s\n\n" + b"x" * 100_000 + b"\n"}
    for n, message in enumerate([*CORPUS.values(), *odd.values()]):
        path = tmp_path / str(n)
        path.write_bytes(message.replace(b"\r\n", b"\n"))
        whole = fetch_items(1, info(), atts, message=read_message(path), envelope=None,
                            bodystructure=None, modseq=False)
        head = fetch_items(1, info(), atts, message=read_head(path), envelope=None,
                           bodystructure=None, modseq=False)
        assert responses.fetch(1, head) == responses.fetch(1, whole)


@pytest.mark.parametrize("request_items", [
    b"(FLAGS RFC822.SIZE INTERNALDATE)", b"(UID FLAGS MODSEQ)", b"ENVELOPE", b"BODYSTRUCTURE",
    b"(BODY ENVELOPE UID BODY)", b"FAST", b"ALL", b"FULL"])
def test_index_items_rendered_straight_to_octets_as_fetch_items_does(
        request_items: bytes) -> None:
    """The octets-only path for items the index has gives the same response as the
    general one (RFC 9051 7.5.2), MODSEQ added or not (RFC 7162 3.1.4.1)."""
    from mailyard.imapd.fetch import index_only, render_from_index, wire_items
    from tests.unit.imapd.test_fetch import attributes

    atts = attributes(request_items)
    assert index_only(atts)
    for name in ("rfc3501", "nested message", "wide bomb"):
        wire = structwire.encode(*structure.compute(CORPUS[name]))
        octets = {"ENVELOPE": wire.envelope, "BODYSTRUCTURE": wire.bodystructure,
                  "BODY": wire.body}
        meta = info(flags=("\\Seen", "$Work", "\\Answered"), uid=42, modseq=7, size=1234)
        for modseq in (False, True):
            general = fetch_items(3, meta, atts, message=None, envelope=None,
                                  bodystructure=None, modseq=modseq, wire=octets)
            straight = render_from_index(3, meta, atts,
                                         [octets[i] for i in wire_items(atts)], modseq)
            assert straight == responses.fetch(3, general)
    assert not index_only(attributes(b"(FLAGS BODY.PEEK[HEADER])"))
