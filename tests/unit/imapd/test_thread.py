"""THREAD (RFC 5256 3: ORDEREDSUBJECT, REFERENCES) and the thread list (RFC 5256 4)."""

from __future__ import annotations

import itertools
import sys

import pytest
from imapd_mailbox_harness import Mailbox, build, thread_command

from mailyard.imapd.search import SearchTimeout, search
from mailyard.imapd.thread import ThreadNode, render_threads, thread
from mailyard.message import structure


def message(mid: str | None = None, *, subject: str = "topic", refs: str | None = None,
            reply_to: str | None = None, date: str | None = None) -> bytes:
    fields = [("Subject", subject)]
    if mid is not None:
        fields.append(("Message-ID", f"<{mid}>"))
    if refs is not None:
        fields.append(("References", refs))
    if reply_to is not None:
        fields.append(("In-Reply-To", reply_to))
    if date is not None:
        fields.append(("Date", date))
    return build(*fields)


def day(n: int) -> str:
    """A Date: field value n hours into 1 Dec 2026."""
    return f"Tue, 1 Dec 2026 {n:02d}:00:00 +0000"


def threads_of(box: Mailbox, text: str, **kwargs: object) -> bytes:
    command = thread_command(text)
    ctx = box.ctx(**kwargs)
    found = thread(command.algorithm, search(command.search, ctx), ctx)
    return render_threads(found, lambda i: i + 1)


# --- the response form -------------------------------------------------------------

def parse_threads(data: bytes) -> list[ThreadNode]:
    """The RFC 5256 4 thread-list grammar, read back into nodes (a list that starts
    with a nested list has a dummy parent)."""
    tokens = [t for t in data.replace(b"(", b" ( ").replace(b")", b" ) ").split()]
    pos = 0

    def members() -> ThreadNode:
        nonlocal pos
        head: ThreadNode | None = None
        tail: ThreadNode | None = None
        while tokens[pos] != b")":
            if tokens[pos] == b"(":
                node = head if head is not None else ThreadNode(None)
                anchor = tail if tail is not None else node
                while tokens[pos] == b"(":
                    pos += 1
                    anchor.children.append(members())
                    pos += 1
                return node
            link = ThreadNode(int(tokens[pos]) - 1)
            pos += 1
            if tail is None:
                head = link
            else:
                tail.children.append(link)
            tail = link
        assert head is not None
        return head

    out = []
    while pos < len(tokens):
        assert tokens[pos] == b"("
        pos += 1
        out.append(members())
        pos += 1
    return out


@pytest.mark.parametrize("response", [
    b"(2)(3 6 (4 23)(44 7 96))",  # RFC 5256 4's example
    b"((3)(5))",  # a dummy parent of two threads
    b"(166)(167)(168)(174 (175)(176)(178)(181)(180))(197 (198)(203))",  # ORDEREDSUBJECT shape
    b"(166)((170)(179))(171)((174)(175)(176))(177 (183)(189)(182))",  # REFERENCES shape
])
def test_render_round_trip(response: bytes) -> None:
    """RFC 5256 4: a single child continues the list, several children nest."""
    assert render_threads(parse_threads(response), lambda i: i + 1) == response


def test_render_the_rfc_example_tree() -> None:
    """RFC 5256 4: 3 is the parent of 6; 6 of 4 and 44; 4 of 23; 44 of 7; 7 of 96."""
    tree = ThreadNode(2, [ThreadNode(5, [
        ThreadNode(3, [ThreadNode(22)]),
        ThreadNode(43, [ThreadNode(6, [ThreadNode(95)])]),
    ])])
    assert render_threads([ThreadNode(1), tree], lambda i: i + 1) == b"(2)(3 6 (4 23)(44 7 96))"


def test_render_uses_the_number_mapping() -> None:
    """UID THREAD answers with UIDs."""
    uids = [10, 20, 30]
    tree = ThreadNode(None, [ThreadNode(0), ThreadNode(2, [ThreadNode(1)])])
    assert render_threads([tree], uids.__getitem__) == b"((10)(30 20))"
    assert render_threads([], uids.__getitem__) == b""
    assert render_threads([ThreadNode(None)], uids.__getitem__) == b""  # no empty list


# --- ORDEREDSUBJECT ------------------------------------------------------------------

def test_ordered_subject() -> None:
    """RFC 5256 3 ORDEREDSUBJECT: grouped by base subject, within a group by sent
    date under the first message, groups by the sent date of their first message."""
    box = Mailbox()
    box.add(message(subject="Re: beta", date=day(5)))  # 1
    box.add(message(subject="alpha", date=day(3)))  # 2
    box.add(message(subject="beta", date=day(2)))  # 3
    box.add(message(subject="[list] Re: ALPHA", date=day(1)))  # 4
    box.add(message(subject="gamma", date=day(4)))  # 5
    box.add(message(subject="Fwd: beta", date=day(9)))  # 6
    box.add(message(subject="beta", date=day(5)))  # 7: ties with 1, sequence order
    assert threads_of(box, "ORDEREDSUBJECT UTF-8 ALL") == b"(4 2)(3 (1)(7)(6))(5)"
    assert threads_of(box, "ORDEREDSUBJECT UTF-8 NOT 4") == b"(3 (1)(7)(6))(2)(5)"
    assert threads_of(box, "ORDEREDSUBJECT UTF-8 SUBJECT none") == b""
    envelopes = {info.uid: structure.compute(raw)[0]
                 for info, raw in zip(box.infos, box.raw, strict=True)}
    box.loads.clear()
    found = thread("ORDEREDSUBJECT", range(len(box.infos)), box.ctx(), envelopes)
    assert render_threads(found, lambda i: i + 1) == b"(4 2)(3 (1)(7)(6))(5)"
    assert box.loads == {}  # the cached ENVELOPEs were enough


# --- REFERENCES ----------------------------------------------------------------------

def test_references_chain_and_in_reply_to() -> None:
    """RFC 5256 3 REFERENCES step 1: References link each id to the next, the last
    one the parent; without References the first In-Reply-To id is the parent."""
    box = Mailbox()
    box.add(message("a@x", date=day(1)))  # 1
    box.add(message("b@x", refs="<a@x>", date=day(2)))  # 2
    box.add(message("c@x", refs="<a@x> <b@x>", date=day(3)))  # 3
    box.add(message("d@x", reply_to="<a@x> <zz@x>", date=day(4)))  # 4
    box.add(message("e@x", subject="other", date=day(5)))  # 5
    assert threads_of(box, "REFERENCES UTF-8 ALL") == b"(1 (2 3)(4))(5)"


def test_missing_parent_becomes_a_dummy() -> None:
    """Step 1: a dummy for an id no message holds; step 3: a dummy at the top with
    several children stays, with one child it gives way to it."""
    box = Mailbox()
    box.add(message("b@x", refs="<gone@x>", subject="one", date=day(1)))
    box.add(message("c@x", refs="<gone@x>", subject="one", date=day(2)))
    box.add(message("d@x", refs="<lost@x> <also-lost@x>", subject="two", date=day(3)))
    assert threads_of(box, "REFERENCES UTF-8 ALL") == b"((1)(2))(3)"


def test_dummy_in_the_middle_is_pruned() -> None:
    """Step 3: a dummy below the top is replaced by its children."""
    box = Mailbox()
    box.add(message("a@x", date=day(1)))
    box.add(message("c@x", refs="<a@x> <missing@x>", date=day(2)))
    box.add(message("d@x", refs="<a@x> <missing@x>", date=day(3)))
    assert threads_of(box, "REFERENCES UTF-8 ALL") == b"(1 (2)(3))"


def test_duplicate_message_ids() -> None:
    """Step 1: only the first message keeps a Message-ID held twice; the other gets a
    unique one nothing can refer to."""
    box = Mailbox()
    box.add(message("a@x", subject="one", date=day(1)))
    box.add(message("a@x", subject="two", date=day(2)))
    box.add(message("b@x", subject="three", refs="<a@x>", date=day(3)))
    assert threads_of(box, "REFERENCES UTF-8 ALL") == b"(1 3)(2)"


def test_message_ids_are_case_sensitive() -> None:
    """Step 1 note: Message-ID comparisons are case-sensitive."""
    box = Mailbox()
    box.add(message("A@x", subject="one", date=day(1)))
    box.add(message("b@x", subject="two", refs="<a@X>", date=day(2)))
    assert threads_of(box, "REFERENCES UTF-8 ALL") == b"(1)(2)"


def test_existing_links_stay_and_the_last_reference_wins() -> None:
    """Step 1A keeps a parent found earlier (References may be truncated); step 1B
    makes the last reference the parent, breaking the earlier link."""
    box = Mailbox()
    box.add(message("a@x", date=day(1)))  # 1
    box.add(message("b@x", date=day(2)))  # 2
    box.add(message("c@x", refs="<a@x> <b@x>", date=day(3)))  # 3: b under a
    box.add(message("d@x", refs="<c@x> <b@x>", date=day(4)))  # 4: b keeps parent a
    box.add(message("e@x", refs="<b@x>", date=day(5)))  # 5
    box.add(message("f@x", refs="<x@x> <a@x>", date=day(6)))  # 6: a under dummy x
    assert threads_of(box, "REFERENCES UTF-8 ALL") == b"(1 (2 (3)(4)(5))(6))"
    box.add(message("b@x", refs="<e@x>", date=day(7)))  # 7: duplicate id b, under e
    assert threads_of(box, "REFERENCES UTF-8 ALL") == b"(1 (2 (3)(4)(5 7))(6))"


def test_a_message_without_references_loses_its_parent() -> None:
    """Step 1B: a message with no references ends with no parent, even if another
    message's References put it under one."""
    box = Mailbox()
    box.add(message("a@x", subject="one", date=day(1)))
    box.add(message("c@x", subject="two", refs="<a@x> <b@x>", date=day(2)))
    box.add(message("b@x", subject="three", date=day(3)))
    assert threads_of(box, "REFERENCES UTF-8 ALL") == b"(1)(3 2)"


def test_loops_are_not_created() -> None:
    """Step 1: no link that would make a loop, so cycles in References (or a message
    naming itself) end without hanging."""
    box = Mailbox()
    box.add(message("a@x", refs="<b@x>", date=day(1)))
    box.add(message("b@x", refs="<a@x>", date=day(2)))
    box.add(message("c@x", refs="<c@x> <c@x>", subject="self", date=day(3)))
    box.add(message("d@x", refs="<e@x> <d@x> <e@x>", subject="pair", date=day(4)))
    assert threads_of(box, "REFERENCES UTF-8 ALL") == b"(2 1)(3)(4)"


def test_subject_merge() -> None:
    """Step 5: threads whose top messages share a base subject are gathered: a reply
    under the original, two originals under a new dummy, an empty subject never."""
    box = Mailbox()
    box.add(message("a@x", subject="plans", date=day(1)))  # 1
    box.add(message("b@x", subject="Re: plans", date=day(2)))  # 2: reply to the thread
    box.add(message("c@x", subject="news", date=day(3)))  # 3
    box.add(message("d@x", subject="[list] news", date=day(4)))  # 4: not a reply
    box.add(message("e@x", subject="", date=day(5)))  # 5
    box.add(message("f@x", subject="Re:", date=day(6)))  # 6: base subject empty too
    assert threads_of(box, "REFERENCES UTF-8 ALL") == b"(1 2)((3)(4))(5)(6)"


def test_subject_merge_into_a_dummy() -> None:
    """Step 5B prefers a dummy in the subject table; 5C makes a message with that
    subject its child, and merges two dummies' children."""
    box = Mailbox()
    box.add(message("b@x", refs="<gone@x>", subject="Re: report", date=day(1)))  # 1
    box.add(message("c@x", refs="<gone@x>", subject="Re: report", date=day(2)))  # 2
    box.add(message("d@x", subject="report", date=day(3)))  # 3
    box.add(message("e@x", refs="<lost@x>", subject="report", date=day(4)))  # 4
    box.add(message("f@x", refs="<lost@x>", subject="report", date=day(5)))  # 5
    assert threads_of(box, "REFERENCES UTF-8 ALL") == b"((1)(2)(3)(4)(5))"


def test_siblings_sorted_by_sent_date() -> None:
    """Steps 4 and 6: siblings and threads by sent date (the internal date when Date:
    is missing), ties by sequence number; a dummy sorts as its first child."""
    box = Mailbox()
    box.add(message("root@x", subject="r", date=day(1)))  # 1
    box.add(message("late@x", refs="<root@x>", date=day(9)))  # 2
    box.add(message("early@x", refs="<root@x>", date=day(3)))  # 3
    box.add(message("same1@x", refs="<root@x>", date=day(5)))  # 4
    box.add(message("same2@x", refs="<root@x>", date=day(5)))  # 5
    box.add(message("nodate@x", refs="<root@x>"), date="2026-12-01 04:00")  # 6
    box.add(message("k1@x", refs="<none@x>", subject="k", date=day(2)))  # 7
    box.add(message("k2@x", refs="<none@x>", subject="k", date=day(0)))  # 8
    assert threads_of(box, "REFERENCES UTF-8 ALL") == b"((8)(7))(1 (3)(6)(4)(5)(2))"


def test_long_reply_chain_without_recursion() -> None:
    """A chain deeper than Python's recursion limit threads and renders."""
    box = Mailbox()
    length = sys.getrecursionlimit() + 500
    box.add(message("m0@x", date=day(0)))
    for n in range(1, length):
        box.add(message(f"m{n}@x", refs=f"<m{n - 1}@x>", subject="Re: topic", date=day(0)))
    out = threads_of(box, "REFERENCES UTF-8 ALL")
    assert out == b"(" + b" ".join(str(n).encode() for n in range(1, length + 1)) + b")"


def test_deep_branching_tree_renders() -> None:
    """Each message has two replies, one of which branches again, thousands deep."""
    box = Mailbox()
    depth = sys.getrecursionlimit() + 200
    box.add(message("n0@x", date=day(0)))
    for n in range(1, depth):
        box.add(message(f"n{n}@x", refs=f"<n{n - 1}@x>", date=day(1)))
        box.add(message(f"leaf{n}@x", refs=f"<n{n - 1}@x>", date=day(2)))
    out = threads_of(box, "REFERENCES UTF-8 ALL")
    assert out.startswith(b"(1 (2 (4 (6 ") and out.count(b"(") == 2 * (depth - 1) + 1


def test_thread_deadline() -> None:
    box = Mailbox()
    for n in range(10):
        box.add(message(f"m{n}@x"))
    ticks = itertools.count()
    with pytest.raises(SearchTimeout):
        threads_of(box, "REFERENCES UTF-8 ALL", deadline=3.5, clock=lambda: float(next(ticks)))


def test_only_headers_are_read() -> None:
    box = Mailbox()
    box.add(message("a@x"))
    box.add(message("b@x", refs="<a@x>"))
    assert threads_of(box, "REFERENCES UTF-8 ALL", headers_only=True) == b"(1 2)"
    assert box.loads == {} and set(box.header_loads.values()) == {1}


def test_unknown_algorithm_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        thread("BY-COLOUR", [], Mailbox().ctx())
