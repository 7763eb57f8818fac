"""LIST/LSUB/STATUS answers (mailyard.imapd.listing): RFC 9051 6.3.9 wildcards,
RFC 5258 LIST-EXTENDED, RFC 6154 SPECIAL-USE, RFC 3348 CHILDREN."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailyard.imapd.listing import list_entries, matcher, status_items
from mailyard.proto.imap.commands import ListMailboxes
from mailyard.store.index import FolderState, MessageInfo

FOLDERS = {"INBOX": None, "Sent": "\\Sent", "Trash": "\\Trash", "Work": None,
           "Work/2026": None, "Lists/rust": None}


def names(cmd: ListMailboxes, subscribed: tuple[str, ...] = ()) -> dict[str, tuple[str, ...]]:
    return {e.name: e.attributes for e in list_entries(cmd, FOLDERS, subscribed, rev2=False)}


def test_wildcards() -> None:
    """RFC 9051 6.3.9: ``*`` crosses the delimiter, ``%`` does not."""
    assert matcher("", "*").fullmatch("Work/2026")
    assert not matcher("", "%").fullmatch("Work/2026")
    assert matcher("Work/", "%").fullmatch("Work/2026")
    assert matcher("", "inbox").fullmatch("INBOX")  # 5.1: INBOX in any case
    assert not matcher("", "Wor").fullmatch("Work")
    assert matcher("", "W*k").fullmatch("Work")


def test_pattern_is_not_a_path() -> None:
    assert not matcher("", "../*").fullmatch("INBOX")
    assert not matcher("", "..").fullmatch("Work")


def test_too_many_wildcards_refused() -> None:
    with pytest.raises(ValueError):
        matcher("", "*a" * 40)
    assert matcher("", "**%%**").fullmatch("a/b")  # a run is one wildcard


def test_list_percent_with_children_and_special_use() -> None:
    got = names(ListMailboxes("", ("%",)))
    assert got["INBOX"] == ("\\HasNoChildren",)
    assert got["Work"] == ("\\HasChildren",)
    assert got["Sent"] == ("\\HasNoChildren", "\\Sent")
    # RFC 3501 6.3.8: a missing parent level is listed \Noselect.
    assert got["Lists"] == ("\\Noselect", "\\HasChildren")
    assert "Work/2026" not in got


def test_empty_pattern_gives_the_delimiter() -> None:
    entries = list_entries(ListMailboxes("", ("",)), FOLDERS, (), rev2=False)
    assert [(e.name, e.attributes) for e in entries] == [("", ("\\Noselect",))]


def test_list_extended_subscribed_and_recursivematch() -> None:
    """RFC 5258 3.5: (SUBSCRIBED RECURSIVEMATCH) lists a parent whose child is
    subscribed, with CHILDINFO."""
    cmd = ListMailboxes("", ("%",), frozenset({"SUBSCRIBED", "RECURSIVEMATCH"}),
                        extended=True)
    entries = {e.name: e for e in list_entries(cmd, FOLDERS, ("INBOX", "Work/2026"), False)}
    assert entries["INBOX"].attributes == ("\\Subscribed",)
    assert entries["Work"].child_subscribed
    assert "Sent" not in entries


def test_select_special_use() -> None:
    cmd = ListMailboxes("", ("*",), frozenset({"SPECIAL-USE"}), extended=True)
    assert set(names(cmd)) == {"Sent", "Trash"}


def test_lsub_lists_subscribed_names_only() -> None:
    got = names(ListMailboxes("", ("*",), name="LSUB"), ("Sent", "Gone"))
    assert set(got) == {"Sent", "Gone"}
    assert got["Gone"][0] == "\\Noselect"


def test_status_items() -> None:
    msgs = tuple(MessageInfo(u, frozenset(f), 1, 0.0, 100 * u, Path("/x"))
                 for u, f in ((1, ("\\Seen",)), (2, ()), (3, ("\\Deleted",))))
    state = FolderState("INBOX", 9, 4, 17, msgs)
    assert status_items(state, ("MESSAGES", "UNSEEN", "DELETED", "SIZE", "UIDNEXT",
                                "UIDVALIDITY", "HIGHESTMODSEQ", "RECENT"), 1000) == [
        ("MESSAGES", 3), ("UNSEEN", 2), ("DELETED", 1), ("SIZE", 600), ("UIDNEXT", 4),
        ("UIDVALIDITY", 9), ("HIGHESTMODSEQ", 17), ("RECENT", 0)]
