"""SORT (RFC 5256 3, RFC 5957) and base subject extraction (RFC 5256 2.1)."""

from __future__ import annotations

import itertools

import pytest
from imapd_mailbox_harness import Mailbox, build, sort_command

from mailyard.imapd.search import SearchTimeout, search
from mailyard.imapd.sort import base_subject, sort
from mailyard.message import structure


@pytest.mark.parametrize(("subject", "base", "reply"), [
    (b"Hello world", "Hello world", False),
    (b"Re: Hello world", "Hello world", True),  # subj-refwd "re"
    (b"RE:Hello", "Hello", True),
    (b"Fwd: Hello", "Hello", True),  # "fw" ["d"]
    (b"FW: Hello", "Hello", True),
    (b"Re: Re: re: Fwd: Hello", "Hello", True),  # step 5: repeat 3 and 4
    (b"Re [2]: Hello", "Hello", True),  # *WSP [subj-blob] ":"
    (b"Re[3] : Hello", "Hello", True),
    (b"[list] Re: Hello", "Hello", True),  # *subj-blob subj-refwd
    (b"[list] Hello", "Hello", False),  # step 4: blob removed, a base remains
    (b"[list]", "[list]", False),  # step 4: not if nothing remains
    (b"[a] [b]", "[b]", False),  # the last blob is the base
    (b"Hello (fwd)", "Hello", True),  # step 2: subj-trailer
    (b"Hello (FWD) (fwd)  ", "Hello", True),
    (b"[fwd: Hello]", "Hello", True),  # step 6: subj-fwd-hdr, subj-fwd-trl
    (b"[Fwd: Re: [list] Hello (fwd)]", "Hello", True),  # step 6 then again from step 2
    (b"Re: [fwd: Hello]", "Hello", True),
    (b"Hello\tthere  \r\n   again", "Hello there again", False),  # step 1: spaces
    (b"=?utf-8?q?Re=3A_Gr=C3=BC=C3=9Fe?=", "Grüße", True),  # step 1: RFC 2047
    (b"Ref: Hello", "Ref: Hello", False),  # "ref" is no subj-refwd
    (b"Re Hello", "Re Hello", False),  # no colon
    (b"Hello [fwd: x]", "Hello [fwd: x]", False),
    (b"", "", False),
    (b"Re:", "", True),
])
def test_base_subject(subject: bytes, base: str, reply: bool) -> None:
    """RFC 5256 2.1 steps 1-7 and the reply/forward test of RFC 5256 2.1."""
    assert base_subject(subject) == (base, reply)


def test_base_subject_of_hostile_subjects_is_linear() -> None:
    """Long runs of blobs, prefixes and trailers are stripped in one pass each
    (no quadratic rescans)."""
    assert base_subject(b"[a]" * 50_000 + b"x") == ("x", False)
    assert base_subject(b"[a]" * 50_000) == ("[a]", False)
    assert base_subject(b"Re: " * 50_000 + b"x") == ("x", True)
    assert base_subject(b"x" + b" (fwd)" * 50_000) == ("x", True)


def order(box: Mailbox, text: str, **kwargs: object) -> list[int]:
    """Sequence numbers of ``SORT text`` (criteria, charset, search program)."""
    command = sort_command(text)
    ctx = box.ctx(**kwargs)
    return [i + 1 for i in sort(command.criteria, search(command.search, ctx), ctx)]


@pytest.fixture
def box() -> Mailbox:
    box = Mailbox()
    box.add(build(("Date", "Mon, 7 Dec 2026 10:00:00 +0200"), ("Subject", "Re: beta"),
                  ("From", "Zed <alice@example.org>"), ("To", "carol@example.org"),
                  ("Cc", "bob@example.org")),
            date="2026-12-07 12:00", size=300)
    box.add(build(("Date", "Mon, 7 Dec 2026 09:00:00 +0000"), ("Subject", "Alpha"),
                  ("From", "bob@example.org"), ("To", "\"Ann\" <zoe@example.org>")),
            date="2026-12-07 09:30", size=100)
    box.add(build(("Subject", "[list] BETA (fwd)"), ("From", "Carl <Carl@example.org>")),
            date="2026-12-06 08:00", size=200)
    box.add(build(("Date", "not a date"), ("Subject", "gamma"),
                  ("From", "=?utf-8?q?=C3=89mile?= <emile@example.org>")),
            date="2026-12-08 00:00", size=200)
    return box


def test_arrival_and_size(box: Mailbox) -> None:
    """RFC 5256 3 ARRIVAL (internal date) and SIZE; ties in sequence order."""
    assert order(box, "(ARRIVAL) UTF-8 ALL") == [3, 2, 1, 4]
    assert order(box, "(SIZE) UTF-8 ALL") == [2, 3, 4, 1]
    assert order(box, "(REVERSE SIZE) UTF-8 ALL") == [1, 3, 4, 2]  # the tie stays 3, 4


def test_date_is_the_sent_date_in_utc(box: Mailbox) -> None:
    """RFC 5256 2.2: the Date: field normalised to UTC; the internal date when it is
    missing (3) or cannot be parsed (4)."""
    assert order(box, "(DATE) UTF-8 ALL") == [3, 1, 2, 4]
    assert order(box, "(REVERSE DATE) UTF-8 ALL") == [4, 2, 1, 3]


def test_subject_sorts_by_base_subject(box: Mailbox) -> None:
    """RFC 5256 3 SUBJECT: base subjects under i;ascii-casemap; the tie of 1 and 3
    ("beta", "BETA") in sequence order, also reversed."""
    assert order(box, "(SUBJECT) UTF-8 ALL") == [2, 1, 3, 4]
    assert order(box, "(REVERSE SUBJECT) UTF-8 ALL") == [4, 1, 3, 2]
    assert order(box, "(SUBJECT REVERSE DATE) UTF-8 ALL") == [2, 1, 3, 4]
    assert order(box, "(SUBJECT REVERSE ARRIVAL) UTF-8 ALL") == [2, 1, 3, 4]
    assert order(box, "(SUBJECT ARRIVAL) UTF-8 ALL") == [2, 3, 1, 4]


def test_address_keys_use_the_mailbox_part(box: Mailbox) -> None:
    """RFC 5256 3 FROM/TO/CC: the addr-mailbox of the first address; a missing
    field is the empty string and sorts first."""
    assert order(box, "(FROM) UTF-8 ALL") == [1, 2, 3, 4]  # alice bob Carl emile
    assert order(box, "(TO) UTF-8 ALL") == [3, 4, 1, 2]  # "" "" carol zoe
    assert order(box, "(CC) UTF-8 ALL") == [2, 3, 4, 1]
    assert order(box, "(REVERSE CC) UTF-8 ALL") == [1, 2, 3, 4]


def test_display_keys(box: Mailbox) -> None:
    """RFC 5957 2: DISPLAYFROM/DISPLAYTO sort by the decoded display name, the
    addr-spec when there is none."""
    # "Zed", "bob@example.org", "Carl", "Émile": Z sorts after B, C; É after ASCII
    assert order(box, "(DISPLAYFROM) UTF-8 ALL") == [2, 3, 1, 4]
    assert order(box, "(DISPLAYTO) UTF-8 ALL") == [3, 4, 2, 1]  # "", "", "Ann", carol@


def test_sort_of_a_search_result(box: Mailbox) -> None:
    """RFC 5256 3: only the messages the search program matches are sorted."""
    assert order(box, "(REVERSE ARRIVAL) UTF-8 LARGER 150") == [4, 1, 3]


def test_index_keys_read_no_file(box: Mailbox) -> None:
    assert order(box, "(ARRIVAL REVERSE SIZE) UTF-8 ALL") == [3, 2, 1, 4]
    assert box.loads == {}


def test_header_keys_read_each_header_once(box: Mailbox) -> None:
    assert order(box, "(SUBJECT FROM DATE CC) UTF-8 ALL", headers_only=True) == [2, 1, 3, 4]
    assert box.loads == {} and set(box.header_loads.values()) == {1}


@pytest.mark.parametrize("criteria", [
    ("SUBJECT",), ("REVERSE DATE",), ("FROM",), ("TO",), ("CC",), ("DISPLAYFROM",),
    ("DISPLAYTO",), ("SUBJECT", "REVERSE ARRIVAL"),
])
def test_cached_envelopes_give_the_same_order(box: Mailbox, criteria: tuple[str, ...]
                                              ) -> None:
    """The ENVELOPE the index caches holds every field SORT needs (RFC 5256 3 names
    its keys by ENVELOPE parts): with it no file is read, and the order is the same."""
    ctx = box.ctx()
    everything = list(range(len(box.infos)))
    expected = sort(criteria, everything, ctx)
    envelopes = {info.uid: structure.compute(raw)[0]
                 for info, raw in zip(box.infos, box.raw, strict=True)}
    box.loads.clear()
    assert sort(criteria, everything, ctx, envelopes) == expected
    assert box.loads == {}
    del envelopes[box.infos[2].uid]  # not cached: read from the file
    assert sort(criteria, everything, ctx, envelopes) == expected
    assert dict(box.loads) == {box.infos[2].uid: 1}


def test_sort_deadline(box: Mailbox) -> None:
    ticks = itertools.count()
    with pytest.raises(SearchTimeout):
        order(box, "(SUBJECT) UTF-8 ALL", deadline=2.5, clock=lambda: float(next(ticks)))


def test_unknown_key_is_a_programming_error(box: Mailbox) -> None:
    with pytest.raises(ValueError):
        sort(["COLOUR"], [0], box.ctx())
