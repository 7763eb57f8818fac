"""The search index (``mailyard-search.db``): SEARCH answers from the index equal
the answers from reading the files (RFC 9051 6.4.4 string keys: case-insensitive
substrings after RFC 2047 and RFC 2045 decoding), on a corpus of encoded words,
charsets, base64 and quoted-printable bodies, HTML, attachments and attached
messages; rows follow expunges and file changes; hostile strings; a crash while
indexing and a damaged file leave an index that answers right."""

from __future__ import annotations

import base64
import dataclasses
import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from imapd_mailbox_harness import Mailbox, build, program

from mailyard.imapd import searchindex
from mailyard.imapd.search import SearchTimeout, field_matches, fields_document, search
from mailyard.imapd.searchindex import SEARCH_INDEX_NAME, SearchIndex, fts_query
from mailyard.store.index import MessageInfo

UIDVALIDITY = 1_700_000_000


def _b64(text: str, charset: str = "utf-8") -> str:
    return base64.b64encode(text.encode(charset)).decode()


MULTIPART = b"""\
From: a@example.org
Subject: report
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b1"

--b1
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: base64

""" + base64.encodebytes("Grüße aus Köln, the quarterly figures.\n".encode()) + b"""
--b1
Content-Type: text/html; charset=iso-8859-1
Content-Transfer-Encoding: quoted-printable

<p>Caf=E9 cr=E8me &amp; <b>chips</b></p><style>.sale{color:red}</style>
--b1
Content-Type: application/octet-stream; name="secret.bin"
Content-Disposition: attachment; filename="numbers.xls"
Content-Transfer-Encoding: base64

""" + base64.encodebytes(b"hidden treasure in the attachment") + b"""
--b1
Content-Type: message/rfc822

Subject: inner subject
From: inner@example.net

inner body text
--b1--
"""


def corpus() -> Mailbox:
    box = Mailbox()
    box.add(build(("From", "Alice Martin <alice@example.org>"), ("To", "Bench <b@x.test>"),
                  ("Subject", "Quarterly report"), ("Message-ID", "<m1@example.org>"),
                  body="The budget is approved. See the \"quoted\" AND (starred*) words.\n"))
    box.add(build(("From", "=?ISO-8859-1?Q?J=F6rg_M=FCller?= <jm@example.de>"),
                  ("To", "Ann <ann@example.com>"), ("To", "Second <two@example.com>"),
                  ("Cc", "cc@example.net"), ("Bcc", "hidden@example.net"),
                  ("Subject", f"=?UTF-8?B?{_b64('Grüße aus München')}?="), ("X-Empty", "")))
    box.add(b"Subject: latin\nContent-Type: text/plain; charset=iso-8859-1\n"
            b"Content-Transfer-Encoding: quoted-printable\n\nCaf=E9 cr=E8me br=FBl=E9e, 5 =80\n")
    box.add(b"Subject: base64\nContent-Type: text/plain; charset=utf-8\n"
            b"Content-Transfer-Encoding: base64\n\n"
            + base64.encodebytes("Straße — naïve résumé, ab, ü.\n".encode()))
    box.add(MULTIPART)
    box.add(b"Subject: a long\n  folded subject\nFrom: x@y\n\n"
            b"line one\r\n   line\ttwo\n")
    box.add(b"Subject: =?iso-2022-jp?b?" + base64.b64encode("日本語".encode("iso-2022-jp"))
            + b"?=\nContent-Type: text/plain; charset=iso-2022-jp\n\n"
            + "日本語のテキスト\n".encode("iso-2022-jp"))
    box.add(b"Subject: nul\n\nbefore\x00after, zero\n")
    box.add(b"Subject: =?x-unknown?q?abc?= =?utf-8?b?!!!?=\nFrom: \xff\xfe raw <x@y>\n"
            b"Content-Type: text/plain; charset=punycode\nContent-Transfer-Encoding: base64\n\n"
            b"aGVsbG8gd29y*bGQ\n=junk\n")
    box.add(build(("Subject", "long needle"), body="z" * 3000 + "needle-end\n"))
    box.add(b"no header at all, just text\n")
    return box


PROGRAMS = [
    "SUBJECT report", 'SUBJECT "GRÜSSE aus"', 'SUBJECT "münchen"', 'SUBJECT ""', "SUBJECT x",
    'FROM "jörg müller"', "FROM alice@", "FROM JM@EXAMPLE", "FROM raw", "TO two", "TO ann",
    "CC cc@", "BCC hidden", 'HEADER X-Empty ""', "HEADER x-empty a", 'HEADER Message-ID "<"',
    'HEADER "bad:name" x', 'HEADER subject "日本"', 'SUBJECT "long folded"',
    'BODY "café"', 'BODY "crème brûlée"', "BODY strasse", "BODY STRASSE", 'BODY "5 €"',
    "BODY treasure", "BODY attachment", "BODY chips", 'BODY "café crème & chips"',
    "BODY sale", "BODY amp", 'BODY "inner body"', "BODY report", 'BODY "line one line two"',
    'BODY "日本語"', 'BODY "テキスト"', "BODY ab", 'BODY "ü"', "BODY e", 'BODY ""',
    'BODY "\\"quoted\\""', "BODY AND", 'BODY "(starred*)"', 'BODY "*"', "BODY hello",
    "BODY zero", "BODY before", 'BODY "' + "z" * 2000 + 'needle-end"', "BODY " + "z" * 24,
    "TEXT report", "TEXT numbers.xls", 'TEXT "inner subject"', 'TEXT "subject: quarterly"',
    "TEXT treasure", 'TEXT "content-type: text/html"', "TEXT alice", "TEXT ann@",
    'OR BODY "café" SUBJECT report', "NOT BODY the", "BODY the SUBJECT report",
    'OR (HEADER x-empty "") (TEXT "münchen")', "NOT HEADER to ann", "UID 2:4 BODY e",
]


def numbers(box: Mailbox, text: str, **kwargs: object) -> list[int]:
    return [i + 1 for i in search(program(text), box.ctx(**kwargs))]


def indexed(box: Mailbox, index: SearchIndex, text: str) -> list[int]:
    folder = index.folder(UIDVALIDITY, box.infos)
    assert folder is not None
    try:
        return numbers(box, text, index=folder)
    finally:
        folder.close()


def test_index_answers_equal_the_files() -> None:
    """Every program gives the same messages read from the files, while the index
    is filled (first search) and from the index (second): RFC 9051 6.4.4."""
    box = corpus()
    expected = {text: numbers(box, text) for text in PROGRAMS}
    assert expected['BODY "café"'] == [3, 5] and expected["BODY treasure"] == []
    assert expected['SUBJECT "GRÜSSE aus"'] == [2] and expected["BODY ab"] == [4]
    assert expected['HEADER X-Empty ""'] == [2] and expected['BODY "日本語"'] == [7]
    for text in PROGRAMS:
        box.loads.clear()
        index = SearchIndex(_fresh_root())
        assert indexed(box, index, text) == expected[text], text  # filling
        assert indexed(box, index, text) == expected[text], text  # from the index
        index.close()


def test_a_filled_index_reads_no_file(tmp_path: Path) -> None:
    box = corpus()
    index = SearchIndex(tmp_path)
    indexed(box, index, "TEXT anything")  # reads every file once, stores texts and fields
    box.loads.clear()
    box.header_loads.clear()
    for text in PROGRAMS:
        assert indexed(box, index, text) == numbers(Mailbox(box.raw, box.infos,
                                                               positions=box.positions), text)
    assert not box.loads and not box.header_loads


_roots = itertools.count()
_base: list[Path] = []


@pytest.fixture(autouse=True)
def _tmp_base(tmp_path: Path) -> None:
    _base[:] = [tmp_path]


def _fresh_root() -> Path:
    root = _base[0] / f"r{next(_roots)}"
    root.mkdir()
    return root


def test_header_only_search_stores_fields_not_texts(tmp_path: Path) -> None:
    """A header search reads only headers and stores only the fields documents."""
    box = corpus()
    index = SearchIndex(tmp_path)
    assert indexed(box, index, "SUBJECT report") == [1, 5]
    folder = index.folder(UIDVALIDITY, box.infos)
    assert folder is not None
    assert set(folder.fields_of()) == {m.uid for m in box.infos}
    assert not folder.texts_of()


def _rows(root: Path) -> list[tuple[int, int, str, int]]:
    with sqlite3.connect(root / SEARCH_INDEX_NAME) as db:
        return db.execute("SELECT uidvalidity, uid, base, has_texts FROM docs"
                          " ORDER BY uidvalidity, uid").fetchall()


def _fts_rows(root: Path) -> int:
    with sqlite3.connect(root / SEARCH_INDEX_NAME) as db:
        count: int = db.execute("SELECT count(*) FROM texts").fetchone()[0]
        return count


def test_expunged_and_replaced_messages_leave_the_index(tmp_path: Path) -> None:
    """Rows of UIDs the folder no longer has go (up to its highest UID: a later one
    may be a message this session has not seen yet); a row whose file is another
    one is replaced; ``forget`` drops rows at once; ``prune`` drops folders gone."""
    box = corpus()
    index = SearchIndex(tmp_path)
    indexed(box, index, 'BODY "café"')
    assert len(_rows(tmp_path)) == len(box.infos) and _fts_rows(tmp_path) == len(box.infos)
    # message 3 expunged (café is in 3 and 5); the last one not seen by this session
    kept = [m for m in box.infos if m.uid != 3]
    view = Mailbox(box.raw, kept[:-1], positions=box.positions)
    assert indexed(view, index, 'BODY "café"') == [4]  # UID 5 at position 4
    assert [r[1] for r in _rows(tmp_path)] == [m.uid for m in kept]
    assert _fts_rows(tmp_path) == len(kept)
    # UID 5's file is replaced by another (same UID, other base name): read again
    other = MessageInfo(5, frozenset(), 1, 0.0, 10, Path("/nonexistent/other"))
    box.raw[box.positions[5]] = build(("Subject", "swapped"), body="no drinks here\n")
    swapped = Mailbox(box.raw, [m if m.uid != 5 else other for m in kept],
                      positions=box.positions)
    assert indexed(swapped, index, 'BODY "café"') == []
    assert indexed(swapped, index, "SUBJECT swapped") == [4]
    assert dict((r[1], r[2]) for r in _rows(tmp_path))[5] == "other"
    index.forget(UIDVALIDITY, [1, 2])
    assert [r[1] for r in _rows(tmp_path)][:2] == [4, 5]
    assert indexed(swapped, index, "BODY budget") == [1]  # read again, stored again
    index.prune([UIDVALIDITY + 1])
    assert _rows(tmp_path) == [] and _fts_rows(tmp_path) == 0


def test_moved_messages_keep_their_documents(tmp_path: Path) -> None:
    """MOVE (RFC 6851) carries the rows to the target folder and the new UIDs: a
    search there reads no file; the source keeps nothing of them."""
    box = corpus()
    index = SearchIndex(tmp_path)
    indexed(box, index, 'BODY "café"')
    target = UIDVALIDITY + 7
    moved = [(m.uid, 100 + m.uid) for m in box.infos]
    index.carry(UIDVALIDITY, target, moved)
    assert {(r[0], r[1]) for r in _rows(tmp_path)} == {(target, new) for _, new in moved}
    there = [dataclasses.replace(m, uid=100 + m.uid) for m in box.infos]
    view = Mailbox(box.raw, there, positions={100 + u: p for u, p in box.positions.items()})
    folder = index.folder(target, view.infos)
    assert folder is not None
    view.loads.clear()
    assert [i + 1 for i in search(program('BODY "café"'), view.ctx(index=folder))] == [3, 5]
    assert not view.loads
    folder.close()
    index.carry(UIDVALIDITY, target, [])  # nothing moved: nothing happens


def test_folders_are_kept_apart(tmp_path: Path) -> None:
    """The same UIDs in two folders (two UIDVALIDITYs) never answer for each other."""
    a, b = Mailbox(), Mailbox()
    a.add(build(("Subject", "apple"), body="apple pie\n"))
    b.add(build(("Subject", "banana"), body="banana split\n"))
    index = SearchIndex(tmp_path)
    for value, box, word in ((1, a, "apple"), (2, b, "banana")):
        folder = index.folder(value, box.infos)
        assert folder is not None
        assert [i + 1 for i in search(program(f"TEXT {word}"), box.ctx(index=folder))] == [1]
        folder.close()
    for value, box, word in ((1, a, "banana"), (2, b, "apple")):
        folder = index.folder(value, box.infos)
        assert folder is not None
        for key in ("TEXT", "BODY", "SUBJECT"):
            assert search(program(f"{key} {word}"), box.ctx(index=folder)) == []


def test_hostile_search_strings(tmp_path: Path) -> None:
    """Huge strings, FTS5 query syntax, quotes, NUL-bearing text: plain substrings."""
    box = corpus()
    index = SearchIndex(tmp_path)
    indexed(box, index, "TEXT x")
    huge = "q" * 100_000
    for text in (f"BODY {huge}", 'BODY "\\"\\""', 'BODY "NEAR(a b)"', "BODY ^x",
                 'BODY "a OR b"'):
        try:
            prog = program(text)
        except Exception:  # noqa: BLE001 - a string the parser refuses is no search
            continue
        assert search(prog, box.ctx(index=index.folder(UIDVALIDITY, box.infos))) == \
            search(prog, box.ctx())
    assert fts_query("ab") is None
    query = fts_query("x" * 10 + "".join(chr(0x4E00 + i) for i in range(100)))
    assert query is not None and query.count(" AND ") == searchindex.MAX_TRIGRAMS - 1
    assert fts_query('a"b') == '"a""b"'


def test_fields_document_round_trip() -> None:
    """A field's value is matched within that field only, never across the name."""
    doc = fields_document([("from", b"m"), ("subject", b"from: x"), ("x-from", b"y")])
    assert field_matches(doc, "from", "m")
    assert not field_matches(doc, "from", "x")
    assert field_matches(doc, "subject", "from: x")
    assert not field_matches(doc, "from", "y")  # that is x-from's
    assert not field_matches(doc, "rom", "")
    assert field_matches(doc, "x-from", "")


def test_oversized_documents_are_read_at_each_search(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(searchindex, "MAX_TEXTS", 2000)
    box = corpus()
    index = SearchIndex(tmp_path)
    assert indexed(box, index, "BODY needle-end") == [10]
    box.loads.clear()
    assert indexed(box, index, "BODY needle-end") == [10]
    assert box.loads == {10: 1}  # the only one over the cap


class StepClock:
    def __init__(self) -> None:
        self.ticks = itertools.count()

    def __call__(self) -> float:
        return float(next(self.ticks))


def test_deadline_keeps_what_was_indexed(tmp_path: Path) -> None:
    """The time budget covers indexing: past the deadline the search stops (NO
    [LIMIT]); what it stored stays, and the next search goes on from there."""
    box = Mailbox()
    for i in range(10):
        box.add(build(("Subject", f"s{i}"), body=f"word{i}\n"))
    index = SearchIndex(tmp_path)
    folder = index.folder(UIDVALIDITY, box.infos)
    assert folder is not None
    with pytest.raises(SearchTimeout):
        search(program("BODY word"), box.ctx(index=folder, deadline=4.5, clock=StepClock()))
    folder.close()
    assert [r[1] for r in _rows(tmp_path)] == [1, 2, 3, 4, 5]
    box.loads.clear()
    assert indexed(box, index, "BODY word") == list(range(1, 11))
    assert sorted(box.loads) == [6, 7, 8, 9, 10]


def test_damaged_file_is_made_afresh(tmp_path: Path) -> None:
    (tmp_path / SEARCH_INDEX_NAME).write_bytes(b"not a database " * 1000)
    box = corpus()
    index = SearchIndex(tmp_path)
    assert indexed(box, index, 'BODY "café"') == [3, 5]
    assert indexed(box, index, 'BODY "café"') == [3, 5]
    assert len(_rows(tmp_path)) == len(box.infos)


def test_unusable_index_falls_back_to_reading(tmp_path: Path) -> None:
    """An error while matching makes the search read the files, not fail."""
    box = corpus()
    index = SearchIndex(tmp_path)
    indexed(box, index, "TEXT x")
    folder = index.folder(UIDVALIDITY, box.infos)
    assert folder is not None
    with sqlite3.connect(tmp_path / SEARCH_INDEX_NAME) as db:
        db.execute("DROP TABLE texts")
    box.loads.clear()
    assert numbers(box, 'BODY "café"', index=folder) == [3, 5]
    assert len(box.loads) == len(box.infos)
    assert not (tmp_path / SEARCH_INDEX_NAME).exists()  # removed: it is made afresh
    assert indexed(box, index, 'BODY "café"') == [3, 5]
    assert indexed(box, index, 'BODY "café"') == [3, 5]
    assert len(_rows(tmp_path)) == len(box.infos)


CHILD = """
import sys
sys.path[:0] = sys.argv[2:]
from pathlib import Path
from mailyard.imapd.search import fields_document, texts_document
from mailyard.imapd.searchindex import SearchIndex
from mailyard.message.text import header_fields, header_block
from mailyard.store.index import MessageInfo
index = SearchIndex(Path(sys.argv[1]))
infos = [MessageInfo(uid, frozenset(), 1, 0.0, 1, Path(f"/x/{uid}")) for uid in range(1, 100001)]
folder = index.folder(1, infos)


def message(uid):
    return f"Subject: message {uid}\\n\\n{'body ' * 2000}{uid}\\n".encode()


print("ready", flush=True)
for uid in range(1, 100001):
    raw = message(uid).replace(b"\\n", b"\\r\\n")
    folder.add(uid, fields_document(header_fields(header_block(raw))), texts_document(raw))
folder.close()
"""


def message(uid: int) -> bytes:
    """The messages CHILD indexes (the same text)."""
    return f"Subject: message {uid}\n\n{'body ' * 2000}{uid}\n".encode()


def test_crash_while_indexing_leaves_a_usable_index(tmp_path: Path) -> None:
    """SIGKILL in the middle of writing: the file is consistent (SQLite's journal)
    and answers like the files for what it holds."""
    src = str(Path(searchindex.__file__).parents[2])
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), src],
                             stdout=subprocess.PIPE)
    assert child.stdout is not None
    assert child.stdout.readline() == b"ready\n"
    deadline = time.monotonic() + 60
    while len(_safe_rows(tmp_path)) < 1000 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    with sqlite3.connect(tmp_path / SEARCH_INDEX_NAME) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        docs, fts = db.execute("SELECT count(*), sum(has_texts) FROM docs").fetchone()
        assert docs == fts == db.execute("SELECT count(*) FROM texts").fetchone()[0]
    index = SearchIndex(tmp_path)
    box = Mailbox()
    for uid in range(1, 31):
        box.add(message(uid), uid=uid)
    box.infos = [MessageInfo(m.uid, m.flags, m.modseq, m.internal_date, m.size,
                             Path(f"/x/{m.uid}")) for m in box.infos]
    for text in ("BODY 17", "SUBJECT 2", "TEXT 30", "BODY body"):
        assert indexed(box, index, text) == numbers(box, text)


def _safe_rows(root: Path) -> list[tuple[int, int, str, int]]:
    try:
        return _rows(root)
    except sqlite3.Error:
        return []


def test_two_processes_share_the_file(tmp_path: Path) -> None:
    """What one process (connection) stores or drops, the other sees at its next
    search (its cached row list is read again after the other's commit)."""
    box = corpus()
    first, second = SearchIndex(tmp_path), SearchIndex(tmp_path)
    assert indexed(box, first, "SUBJECT report") == [1, 5]
    assert indexed(box, second, "SUBJECT report") == [1, 5]  # second reads rows once
    assert indexed(box, first, 'BODY "café"') == [3, 5]  # first stores texts
    box.loads.clear()
    assert indexed(box, second, 'BODY "café"') == [3, 5]
    assert not box.loads  # second answered from what first stored
    second.forget(UIDVALIDITY, [3])
    box.loads.clear()
    assert indexed(box, first, 'BODY "café"') == [3, 5]
    assert set(box.loads) == {3}  # first saw the row go and read the file again


def test_version_1_file_gains_the_folder_index(tmp_path: Path) -> None:
    """A file of schema version 1 keeps its rows and gains the covering index that a
    folder's rows are read from (a range of the index, not a table lookup per row)."""
    box = corpus()
    index = SearchIndex(tmp_path)
    indexed(box, index, "SUBJECT report")
    index.close()
    with sqlite3.connect(tmp_path / SEARCH_INDEX_NAME) as db:
        db.execute("DROP INDEX docs_folder")
        db.execute("PRAGMA user_version = 1")
    box.header_loads.clear()
    index = SearchIndex(tmp_path)
    assert indexed(box, index, "SUBJECT report") == [1, 5]
    assert not box.header_loads  # the rows survived the upgrade
    with sqlite3.connect(tmp_path / SEARCH_INDEX_NAME) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == searchindex.SCHEMA_VERSION
        plan = db.execute("EXPLAIN QUERY PLAN SELECT id, uid, base, has_fields, has_texts"
                          " FROM docs WHERE uidvalidity = ?", (UIDVALIDITY,)).fetchall()
    assert "COVERING INDEX docs_folder" in str(plan)


def test_same_messages_again_give_the_same_answer_until_a_row_changes(
        tmp_path: Path) -> None:
    """The held sets of a folder are kept for the same messages (same objects) and
    made again once a search stores documents or rows are dropped."""
    box = corpus()
    index = SearchIndex(tmp_path)
    indexed(box, index, "SUBJECT report")
    first = index.folder(UIDVALIDITY, box.infos)
    again = index.folder(UIDVALIDITY, list(box.infos))
    assert first is not None and again is not None
    assert set(again.fields_of()) == set(first.fields_of()) == {m.uid for m in box.infos}
    assert not again.texts_of()
    index.forget(UIDVALIDITY, [2])
    after = index.folder(UIDVALIDITY, box.infos)
    assert after is not None and 2 not in after.fields_of()
    indexed(box, index, "BODY budget")  # stores texts (and UID 2's fields again)
    filled = index.folder(UIDVALIDITY, box.infos)
    assert filled is not None
    assert set(filled.texts_of()) == set(filled.fields_of()) == {m.uid for m in box.infos}
