"""The selected-mailbox view (mailyard.imapd.view): sequence numbers and UIDs, and
when changes made elsewhere may be told (RFC 9051 5.2, 7.5.1; RFC 7162 3.2.10)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailyard.imapd.view import BadSequence, MailboxView, Notify
from mailyard.proto.imap.commands import STAR, SequenceSet
from mailyard.store.index import FolderState, MessageInfo


def info(uid: int, flags: tuple[str, ...] = (), modseq: int = 1) -> MessageInfo:
    return MessageInfo(uid, frozenset(flags), modseq, 0.0, 10, Path(f"/x/{uid}"))


def view(*uids: int) -> MailboxView:
    return MailboxView.open(FolderState("INBOX", 7, max(uids, default=0) + 1, 1,
                                        tuple(info(u) for u in uids)))


def seq(*ranges: tuple[int, int]) -> SequenceSet:
    return SequenceSet(tuple(ranges))


def test_sequence_numbers_and_uids() -> None:
    """RFC 9051 9: message numbers must exist; UIDs that do not are skipped (6.4.8);
    ``*`` is the largest number in use."""
    v = view(3, 5, 9, 12)
    assert v.resolve(seq((2, 3)), uid=False) == [1, 2]
    assert v.resolve(seq((1, STAR)), uid=False) == [0, 1, 2, 3]
    assert v.resolve(seq((4, 10)), uid=True) == [1, 2]
    assert v.resolve(seq((STAR, STAR)), uid=True) == [3]
    assert v.resolve(seq((13, 4_000_000_000)), uid=True) == []
    with pytest.raises(BadSequence):
        v.resolve(seq((5, 5)), uid=False)
    assert v.resolve(SequenceSet(saved=True), uid=False, saved=[9, 100]) == [2]


def test_huge_repeated_sets_cost_one_pass() -> None:
    v = view(*range(1, 101))
    assert v.resolve(seq(*[(1, STAR)] * 10_000), uid=False) == list(range(100))


def test_empty_mailbox_star_is_bad_for_numbers_empty_for_uids() -> None:
    v = view()
    with pytest.raises(BadSequence):
        v.resolve(seq((1, STAR)), uid=False)
    assert v.resolve(seq((1, STAR)), uid=True) == []


def test_new_messages_reported_as_exists() -> None:
    v = view(1, 2)
    v.apply([info(3, modseq=5)], [], 5)
    assert v.flush(Notify()) == [b"* 3 EXISTS\r\n"]
    assert v.flush(Notify()) == []
    assert v.uidnext == 4 and v.highestmodseq == 5


def test_expunge_held_back_until_allowed() -> None:
    """RFC 9051 7.5.1: no EXPUNGE during FETCH/STORE/SEARCH; the message keeps its
    number meanwhile, and new messages still get EXISTS."""
    v = view(1, 2, 3)
    v.apply([info(4, modseq=3)], [2], 3)
    assert v.flush(Notify(), expunges=False) == [b"* 4 EXISTS\r\n"]
    assert v.resolve(seq((2, 2)), uid=False) == [1]
    # Highest first, so each number is right when read.
    assert v.flush(Notify()) == [b"* 2 EXPUNGE\r\n"]
    assert [m.uid for m in v.messages] == [1, 3, 4]


def test_several_expunges_go_highest_first() -> None:
    v = view(1, 2, 3, 4)
    v.removed([1, 3])
    assert v.flush(Notify()) == [b"* 3 EXPUNGE\r\n", b"* 1 EXPUNGE\r\n"]
    assert v.exists == 2


def test_qresync_reports_vanished() -> None:
    """RFC 7162 3.2.10: with QRESYNC enabled, VANISHED (UIDs) replaces EXPUNGE."""
    v = view(1, 2, 3, 4, 5)
    v.apply([], [2, 3, 5], 9)
    assert v.flush(Notify(qresync=True, condstore=True)) == [b"* VANISHED 2:3,5\r\n"]


def test_flag_changes_reported_with_modseq() -> None:
    """RFC 7162 3.1.4: with CONDSTORE, unsolicited FETCH carries MODSEQ; with
    QRESYNC also the UID (3.2.4)."""
    v = view(1, 2)
    v.apply([info(2, ("\\Seen", "work"), modseq=4)], [], 4)
    assert v.flush(Notify(condstore=True)) == [
        b"* 2 FETCH (FLAGS (\\Seen work) MODSEQ (4))\r\n"]
    v.apply([info(1, ("\\Flagged",), modseq=6)], [], 6)
    assert v.flush(Notify(condstore=True, qresync=True)) == [
        b"* 1 FETCH (UID 1 FLAGS (\\Flagged) MODSEQ (6))\r\n"]


def test_own_store_is_not_reported_again() -> None:
    v = view(1, 2)
    v.stored([info(1, ("\\Seen",), modseq=3)])
    v.apply([info(1, ("\\Seen",), modseq=3)], [], 3)
    assert v.flush(Notify()) == []


def test_flag_change_of_an_expunged_message_is_dropped() -> None:
    v = view(1, 2)
    v.apply([info(2, ("\\Seen",), modseq=3)], [2], 3)
    assert v.flush(Notify()) == [b"* 2 EXPUNGE\r\n"]


def test_first_unseen_and_keywords() -> None:
    v = MailboxView.open(FolderState("INBOX", 1, 4, 1, (
        info(1, ("\\Seen",)), info(2, ("b", "a")), info(3, ("\\Seen", "a")))))
    assert v.first_unseen() == 2
    assert v.keywords() == ["a", "b"]


def test_keyword_limits() -> None:
    """Per keyword (64 characters), per message (64) and per mailbox (256 distinct):
    the text of a NO [LIMIT]; removing is always allowed."""
    from mailyard.imapd.view import MAX_MAILBOX_KEYWORDS, keyword_problem
    assert keyword_problem(["\\Seen", "$Forwarded", "k" * 64]) is None
    assert "characters" in (keyword_problem(["k" * 65]) or "")
    assert keyword_problem([f"k{i}" for i in range(64)] + ["\\Seen", "\\Flagged"]) is None
    assert "64 keywords" in (keyword_problem([f"k{i}" for i in range(65)]) or "")
    assert "64 keywords" in (keyword_problem(["new"], [f"k{i}" for i in range(64)]) or "")
    v = MailboxView.open(FolderState("INBOX", 7, 10, 1, (
        info(1, tuple(f"a{i}" for i in range(64))),
        info(2, ("b",)),
    )))
    assert v.store_problem("+", ["b"], [0]) is not None  # message 1 would have 65
    assert v.store_problem("=", ["b"], [0]) is None
    assert v.store_problem("+", ["b", "\\Seen"], [1]) is None
    assert v.store_problem("-", [f"z{i}" for i in range(99)], [0, 1]) is None
    full = MailboxView.open(FolderState("INBOX", 7, 10, 1, tuple(
        info(n + 1, tuple(f"m{n}k{i}" for i in range(64))) for n in range(4))))
    assert len(full.keywords()) == MAX_MAILBOX_KEYWORDS
    assert "mailbox" in (full.store_problem("=", ["new"], [0]) or "")
    assert full.store_problem("=", ["m3k1", "\\Deleted"], [0]) is None
