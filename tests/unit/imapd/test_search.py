"""SEARCH evaluation (RFC 9051 6.4.4, RFC 3501 6.4.4, RFC 5182, RFC 7162 3.1.5, RFC
5032) over programs built by the real parser."""

from __future__ import annotations

import base64
import datetime as dt
import itertools

import pytest
from imapd_mailbox_harness import Mailbox, build, program, when

from mailyard.imapd.search import MAX_NESTING, SearchContext, SearchTimeout, search, search_modseq
from mailyard.proto.imap.commands import SearchKey
from mailyard.proto.imap.parser import ParseContext, ParseError, parse_command


def numbers(mailbox: Mailbox, text: str, **kwargs: object) -> list[int]:
    """Sequence numbers matching ``SEARCH text``."""
    return [i + 1 for i in search(program(text), mailbox.ctx(**kwargs))]


@pytest.fixture
def flagged_box() -> Mailbox:
    box = Mailbox()
    box.add(build(("Subject", "one")), flags=("\\Seen", "\\Answered"), size=100, modseq=5)
    box.add(build(("Subject", "two")), flags=("\\Flagged", "\\Deleted", "$Label1"), size=200,
            modseq=9)
    box.add(build(("Subject", "three")), flags=("\\Draft", "\\Seen"), size=300, modseq=7)
    return box


def test_system_flag_keys(flagged_box: Mailbox) -> None:
    """RFC 9051 6.4.4: ANSWERED, DELETED, DRAFT, FLAGGED, SEEN and their UN- forms."""
    box = flagged_box
    assert numbers(box, "ANSWERED") == [1]
    assert numbers(box, "UNANSWERED") == [2, 3]
    assert numbers(box, "DELETED") == [2]
    assert numbers(box, "UNDELETED") == [1, 3]
    assert numbers(box, "DRAFT") == [3]
    assert numbers(box, "UNDRAFT") == [1, 2]
    assert numbers(box, "FLAGGED") == [2]
    assert numbers(box, "UNFLAGGED") == [1, 3]
    assert numbers(box, "SEEN") == [1, 3]
    assert numbers(box, "UNSEEN") == [2]
    assert box.loads == {}  # the index answers all of these


def test_recent_never_matches(flagged_box: Mailbox) -> None:
    """RFC 9051 E.1: no \\Recent flag, so RECENT and NEW never match, OLD always."""
    assert numbers(flagged_box, "RECENT") == []
    assert numbers(flagged_box, "NEW") == []
    assert numbers(flagged_box, "OLD") == [1, 2, 3]
    assert numbers(flagged_box, "NOT RECENT") == [1, 2, 3]
    assert numbers(flagged_box, "ALL") == [1, 2, 3]


def test_keywords_compare_case_insensitively(flagged_box: Mailbox) -> None:
    """RFC 9051 6.4.4 KEYWORD/UNKEYWORD."""
    assert numbers(flagged_box, "KEYWORD $label1") == [2]
    assert numbers(flagged_box, "UNKEYWORD $Label1") == [1, 3]
    assert numbers(flagged_box, "KEYWORD \\Seen") == [1, 3]
    assert numbers(flagged_box, "KEYWORD Nonexistent") == []


def test_size_keys(flagged_box: Mailbox) -> None:
    """RFC 9051 6.4.4 LARGER/SMALLER are strict comparisons of RFC822.SIZE."""
    assert numbers(flagged_box, "LARGER 200") == [3]
    assert numbers(flagged_box, "SMALLER 200") == [1]
    assert numbers(flagged_box, "LARGER 99 SMALLER 301") == [1, 2, 3]


def test_modseq_key_and_result(flagged_box: Mailbox) -> None:
    """RFC 7162 3.1.5: MODSEQ matches mod-sequences >= the value; the response
    carries the highest mod-sequence of the matches."""
    ctx = flagged_box.ctx()
    key = program("MODSEQ 7")
    found = search(key, ctx)
    assert [i + 1 for i in found] == [2, 3]
    assert search_modseq(key, found, ctx) == 9
    assert numbers(flagged_box, 'MODSEQ "/flags/\\\\Seen" all 8') == [2]
    assert search_modseq(program("SEEN"), [0], ctx) is None
    assert search_modseq(program("MODSEQ 100"), [], ctx) is None


def test_sequence_sets_and_uid_sets() -> None:
    """RFC 9051 6.4.4 sequence-set and UID keys; ``*`` is the largest number in use."""
    box = Mailbox()
    for uid in (3, 7, 10, 15):
        box.add(build(("Subject", "x")), uid=uid)
    assert numbers(box, "2:3") == [2, 3]
    assert numbers(box, "*") == [4]
    assert numbers(box, "3:*") == [3, 4]
    assert numbers(box, "1,4,9") == [1, 4]
    assert numbers(box, "UID 7:10") == [2, 3]
    assert numbers(box, "UID *") == [4]
    assert numbers(box, "UID 11:*") == [4]  # 11:15
    assert numbers(box, "UID 1:2,16:20") == []
    assert numbers(box, "NOT 2:3") == [1, 4]
    assert numbers(Mailbox(), "UID 1:*") == []


def test_saved_result_dollar() -> None:
    """RFC 5182 2.1: ``$`` stands for the saved UIDs, bare or after UID; with nothing
    saved it is empty."""
    box = Mailbox()
    for uid in (3, 7, 10):
        box.add(build(("Subject", "x")), uid=uid)
    saved = frozenset({7, 10, 99})
    assert numbers(box, "$", saved=saved) == [2, 3]
    assert numbers(box, "UID $", saved=saved) == [2, 3]
    assert numbers(box, "NOT $", saved=saved) == [1]
    assert numbers(box, "$") == []
    assert numbers(box, "OR $ 1", saved=saved) == [1, 2, 3]


def test_internal_date_keys_use_the_server_zone() -> None:
    """RFC 9051 6.4.4 BEFORE/ON/SINCE: the internal date's day in the server's time
    zone, the time disregarded."""
    box = Mailbox()
    box.add(build(("Subject", "late")), date="2026-12-01 23:30")
    box.add(build(("Subject", "next")), date="2026-12-02 08:00")
    assert numbers(box, "ON 1-Dec-2026") == [1]
    assert numbers(box, "BEFORE 2-Dec-2026") == [1]
    assert numbers(box, "SINCE 2-Dec-2026") == [2]
    plus_two = dt.timezone(dt.timedelta(hours=2))
    assert numbers(box, "ON 2-Dec-2026", tz=plus_two) == [1, 2]
    assert numbers(box, "BEFORE 2-Dec-2026", tz=plus_two) == []


def test_sent_date_keys_use_the_date_field_as_written() -> None:
    """RFC 9051 6.4.4 SENTBEFORE/SENTON/SENTSINCE: the Date: field's date, time and
    time zone disregarded; no readable Date: field, no match."""
    box = Mailbox()
    box.add(build(("Date", "Tue, 1 Dec 2026 23:30:00 -0800")), date="2026-12-05 00:00")
    box.add(build(("Date", "2 Dec 2026 01:00 +1400")), date="2026-12-05 00:00")
    box.add(build(("Subject", "no date")), date="2026-12-01 12:00")
    box.add(build(("Date", "the day after tomorrow")))
    assert numbers(box, "SENTON 1-Dec-2026") == [1]
    assert numbers(box, "SENTON 2-Dec-2026") == [2]
    assert numbers(box, "SENTBEFORE 2-Dec-2026") == [1]
    assert numbers(box, "SENTSINCE 2-Dec-2026") == [2]
    assert numbers(box, "NOT SENTSINCE 1-Jan-1970") == [3, 4]


def test_within_keys() -> None:
    """RFC 5032 3: OLDER/YOUNGER compare the internal date with now."""
    box = Mailbox()
    box.add(build(("Subject", "old")), date="2026-11-01 00:00")
    box.add(build(("Subject", "new")), date="2026-12-01 00:00")
    now = when("2026-12-01 01:00")
    assert numbers(box, "YOUNGER 7200", now=lambda: now) == [2]
    assert numbers(box, "OLDER 7200", now=lambda: now) == [1]


def test_or_not_and_parenthesised_lists(flagged_box: Mailbox) -> None:
    """RFC 9051 6.4.4: OR, NOT, a parenthesised list is an AND, as is the top level."""
    box = flagged_box
    assert numbers(box, "OR ANSWERED DRAFT") == [1, 3]
    assert numbers(box, "NOT (SEEN DRAFT)") == [1, 2]
    assert numbers(box, "SEEN NOT DRAFT") == [1]
    assert numbers(box, "OR (SEEN LARGER 250) FLAGGED") == [2, 3]
    assert numbers(box, "NOT NOT SEEN") == [1, 3]
    assert numbers(box, "(OR 1 2) (OR 2 3)") == [2]


# --- strings --------------------------------------------------------------------------

def test_header_keys_decode_encoded_words() -> None:
    """RFC 9051 6.4.4 FROM/TO/CC/BCC/SUBJECT with RFC 2047 4.2 (Q) and 4.1 (B) encoded
    words, compared case-insensitively."""
    box = Mailbox()
    box.add(build(("From", "=?iso-8859-1?q?J=F6rg_M=FCller?= <jm@example.org>"),
                  ("To", "Ann <ann@example.com>"), ("Cc", "cc@example.net"),
                  ("Bcc", "hidden@example.net"),
                  ("Subject", "=?utf-8?b?" + base64.b64encode("Große Straße".encode()).decode()
                   + "?=")))
    box.add(build(("From", "bob@example.org"), ("Subject", "plain")))
    assert numbers(box, 'FROM "jörg müller"') == [1]
    assert numbers(box, "FROM JM@EXAMPLE") == [1]
    assert numbers(box, "FROM example.org") == [1, 2]
    assert numbers(box, "TO ann") == [1]
    assert numbers(box, "CC cc@") == [1]
    assert numbers(box, "BCC hidden") == [1]
    assert numbers(box, 'SUBJECT "GROSSE STRASSE"') == [1]  # Unicode case folding
    assert numbers(box, "SUBJECT =?utf-8?b?") == []  # matched after decoding only


def test_header_key() -> None:
    """RFC 9051 6.4.4 HEADER: field name case-insensitive; an empty string matches
    every message that has the field."""
    box = Mailbox()
    box.add(build(("X-Mailer", "Mutt 2.2"), ("List-Id", "<dev.lists.example>")))
    box.add(build(("X-Mailer", "")))
    box.add(build(("Subject", "none")))
    assert numbers(box, "HEADER x-mailer mutt") == [1]
    assert numbers(box, 'HEADER X-MAILER ""') == [1, 2]
    assert numbers(box, 'HEADER list-id "dev.lists"') == [1]
    assert numbers(box, 'NOT HEADER x-mailer ""') == [3]


def test_folded_header_is_unfolded() -> None:
    """RFC 5322 2.2.3: a folded field is searched unfolded."""
    box = Mailbox()
    box.add(b"Subject: a long\n subject line\n\nbody\n")
    assert numbers(box, 'SUBJECT "long subject"') == [1]


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

<p>Caf=E9 cr=E8me</p>
--b1
Content-Type: application/octet-stream; name="secret.bin"
Content-Disposition: attachment; filename="numbers.xls"
Content-Transfer-Encoding: base64

""" + base64.encodebytes(b"hidden treasure") + b"""
--b1
Content-Type: message/rfc822

Subject: inner subject
From: inner@example.net

inner body text
--b1--
"""


def test_body_searches_decoded_text_parts_only() -> None:
    """RFC 9051 6.4.4 BODY: the text parts after RFC 2045 6 transfer decoding and
    their charset; not the header, not non-text parts."""
    box = Mailbox()
    box.add(MULTIPART)
    box.add(build(("Subject", "figures"), body="nothing here\n"))
    assert numbers(box, 'BODY "GRÜSSE aus köln"') == [1]
    assert numbers(box, 'BODY "café crème"') == [1]
    assert numbers(box, "BODY treasure") == []  # application/octet-stream
    assert numbers(box, "BODY report") == []  # the Subject is a header
    assert numbers(box, 'BODY "inner body"') == [1]  # an attached message's text
    assert numbers(box, "BODY figures") == [1]
    assert numbers(box, 'BODY ""') == [1, 2]


def test_text_searches_headers_and_body() -> None:
    """RFC 9051 6.4.4 TEXT: header or body, the MIME headers of parts included."""
    box = Mailbox()
    box.add(MULTIPART)
    box.add(build(("Subject", "figures"), body="nothing here\n"))
    assert numbers(box, "TEXT report") == [1]
    assert numbers(box, "TEXT figures") == [1, 2]
    assert numbers(box, "TEXT numbers.xls") == [1]
    assert numbers(box, 'TEXT "inner subject"') == [1]
    assert numbers(box, "TEXT treasure") == []


def test_body_compares_what_a_reader_sees() -> None:
    """Line breaks compare as spaces; of HTML the visible text counts (no tags,
    character references resolved, no styles); a Latin-1 label is read as its
    Windows superset (WHATWG Encoding), so the euro sign survives."""
    box = Mailbox()
    box.add(b"Subject: a\nContent-Type: text/html\n\n<style>.sale{}</style>"
            b"<p>Fish &amp; <b>chips</b></p>\n")
    box.add(b"Subject: b\nContent-Type: text/plain; charset=iso-8859-1\n\n"
            b"the quarterly\r\n  figures: 5 \x80\n")
    assert numbers(box, 'BODY "fish & chips"') == [1]
    assert numbers(box, "BODY sale") == []
    assert numbers(box, "BODY amp") == []
    assert numbers(box, 'BODY "QUARTERLY FIGURES"') == [2]
    assert numbers(box, 'BODY "quarterly   figures"') == [2]
    assert numbers(box, 'BODY "5 \u20ac"') == [2]


def test_malformed_encodings_do_not_raise() -> None:
    """Bad input never gives a traceback: broken base64, unknown or hostile charsets,
    truncated encoded words, 8-bit headers."""
    box = Mailbox()
    box.add(b"Subject: =?x-unknown?q?abc?= =?utf-8?b?!!!?= =?utf-8?q?trunc\n"
            b"From: \xff\xfe raw <x@y>\n"
            b"Content-Type: text/plain; charset=punycode\n"
            b"Content-Transfer-Encoding: base64\n\n"
            b"aGVsbG8gd29y*bGQ\n=junk\n")
    box.add(b"Content-Type: text/plain; charset=rot13\n\nplain words\n")
    assert numbers(box, "SUBJECT abc") == [1]
    assert numbers(box, "BODY hello") == [1]
    assert numbers(box, "BODY words") == [2]
    assert numbers(box, "FROM raw") == [1]


# --- efficiency -----------------------------------------------------------------------

def test_cheap_keys_decide_before_the_file_is_read(flagged_box: Mailbox) -> None:
    """Flags are tested before BODY whatever their order in the program."""
    box = flagged_box
    assert numbers(box, "BODY hello UNSEEN") == [2]
    assert dict(box.loads) == {2: 1}
    box.loads.clear()
    assert numbers(box, "OR SEEN BODY nomatch") == [1, 3]
    assert dict(box.loads) == {2: 1}


def test_each_message_is_read_at_most_once_per_search() -> None:
    box = Mailbox()
    box.add(MULTIPART)
    box.add(build(("From", "a@example.org"), ("Subject", "hi")))
    assert numbers(box, 'FROM a@ SUBJECT report BODY figures TEXT "köln" SENTSINCE 1-Jan-2000'
                   ) == []  # no Date: field
    assert numbers(box, 'FROM a@ SUBJECT report BODY figures TEXT "köln"') == [1]
    assert max(box.loads.values()) == 2  # once in each of the two searches


def test_header_keys_read_only_the_header_when_offered() -> None:
    """With ``load_header``, header-only programs never read a whole message; a
    program that needs a body reads the whole file once instead."""
    box = Mailbox()
    box.add(MULTIPART)
    box.add(build(("Subject", "hi")))
    assert numbers(box, "SUBJECT report", headers_only=True) == [1]
    assert box.loads == {} and dict(box.header_loads) == {1: 1, 2: 1}
    box.header_loads.clear()
    assert numbers(box, "SUBJECT report BODY figures", headers_only=True) == [1]
    assert box.header_loads == {} and dict(box.loads) == {1: 1, 2: 1}


# --- limits ---------------------------------------------------------------------------

class StepClock:
    """A clock that advances one second each time it is read."""

    def __init__(self) -> None:
        self.ticks = itertools.count()

    def __call__(self) -> float:
        return float(next(self.ticks))


def test_deadline_between_messages() -> None:
    """The deadline is checked before each message: SearchTimeout (NO [LIMIT])."""
    box = Mailbox()
    for _ in range(10):
        box.add(build(("Subject", "x")))
    with pytest.raises(SearchTimeout):
        search(program("BODY x"), box.ctx(deadline=4.5, clock=StepClock()))
    assert len(box.loads) == 5  # messages 1-5 were searched before the deadline passed
    ctx = box.ctx(deadline=100.0, clock=StepClock())
    assert search(program("SUBJECT x"), ctx) == list(range(10))


def test_deadline_already_past() -> None:
    box = Mailbox()
    box.add(build(("Subject", "x")))
    with pytest.raises(SearchTimeout):
        search(program("SUBJECT x"), box.ctx(deadline=-1.0, clock=StepClock()))


def test_deepest_program_the_parser_accepts() -> None:
    """Hostile nesting: NOT and OR chains as deep as the parser allows evaluate; one
    level more is refused by the parser with [LIMIT]."""
    box = Mailbox()
    box.add(build(("Subject", "x")), flags=("\\Seen",))
    box.add(build(("Subject", "y")))
    deep_not = "NOT " * 32 + "SEEN"
    assert numbers(box, deep_not) == [1]
    deep_or = "OR " * 32 + "SUBJECT y" + " SEEN" * 32
    assert numbers(box, deep_or) == [1, 2]
    parens = "(" * 31 + "SUBJECT x" + ")" * 31
    assert numbers(box, parens) == [1]
    with pytest.raises(ParseError) as info:
        parse_command([b"a1 SEARCH " + b"NOT " * 33 + b"SEEN"], ParseContext())
    assert info.value.code == "LIMIT"


def test_program_deeper_than_the_evaluator_accepts() -> None:
    box = Mailbox()
    box.add(build(("Subject", "x")))
    key = SearchKey("ALL")
    for _ in range(MAX_NESTING + 5):
        key = SearchKey("NOT", (key,))
    with pytest.raises(SearchTimeout):
        search(key, box.ctx())


def test_wide_or_tree_from_the_parser() -> None:
    """A balanced OR tree of depth 10 (1024 leaves) costs one pass per message."""
    def tree(depth: int, n: int) -> str:
        return f"SUBJECT s{n}" if depth == 0 else (
            f"OR {tree(depth - 1, 2 * n)} {tree(depth - 1, 2 * n + 1)}")
    box = Mailbox()
    for n in range(5):
        box.add(build(("Subject", f"s{n * 100}")))
    assert numbers(box, tree(10, 0)) == [1, 2, 3, 4, 5]
    assert max(box.loads.values()) == 1


def test_mime_bomb_is_bounded() -> None:
    """Deeply nested multiparts and thousands of parts: the parse is capped
    (structure.MAX_DEPTH/MAX_PARTS) and the search answers."""
    depth = 300
    head = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (i, i)
                    for i in range(depth))
    nested = b"Subject: bomb\n" + head + b"Content-Type: text/plain\n\ndeep text\n"
    many = (b'Subject: many\nContent-Type: multipart/mixed; boundary="m"\n\n'
            + b"--m\nContent-Type: text/plain\n\nfirst part\n"
            + b"--m\nContent-Type: text/plain\n\nfiller\n" * 1000
            + b"--m\nContent-Type: text/plain\n\nlast part\n--m--\n")
    box = Mailbox()
    box.add(nested)
    box.add(many)
    assert numbers(box, "BODY first") == [2]
    assert numbers(box, "BODY last") == []  # past MAX_PARTS: not described, not searched
    assert numbers(box, "BODY deep") == []  # past MAX_DEPTH: an opaque part
    assert numbers(box, "SUBJECT bomb") == [1]


def test_context_defaults_match_the_contract() -> None:
    """The adapter builds the context with messages, load, highest_modseq, saved and
    deadline only."""
    box = Mailbox()
    box.add(build(("Subject", "x")), date="2026-12-01 12:00")
    ctx = SearchContext(box.infos, box.load, 1, frozenset(), float("inf"))
    assert search(program("SUBJECT x SINCE 1-Nov-2026"), ctx) == [0]
