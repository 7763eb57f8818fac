"""Ending a contact's memberships in one transaction, with the record kept among
the contact's events (what unsubscribing through a campaign link does)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailyard.bulk.model import Consent, MembershipStatus, OptIn
from mailyard.bulk.sqlite import SqliteContactStore


def test_only_active_memberships_end_and_the_record_is_kept(tmp_path: Path) -> None:
    store = SqliteContactStore(tmp_path / "bulk.db", lambda a: a)
    contact = store.add_contact("ann@example.org", "", {}, 1.0)
    lists = [store.add_list(n, "", OptIn.SINGLE, 1.0) for n in ("a", "b", "c", "d")]
    for mlist, status in zip(lists[:3], (MembershipStatus.CONFIRMED,
                                         MembershipStatus.UNCONFIRMED,
                                         MembershipStatus.BOUNCED), strict=True):
        store.set_membership(mlist.id, contact.id, status, now=1.0)
    record = Consent(5.0, "192.0.2.9", "unsubscribe:page")
    ids = [m.id for m in lists]
    changed = store.end_memberships(contact.id, ids + ids[:1], MembershipStatus.UNSUBSCRIBED,
                                    record, 5.0)
    assert changed == [lists[0].id, lists[1].id]
    statuses = {m.list_name: m.status for m in store.memberships_of(contact.id)}
    assert statuses == {"a": MembershipStatus.UNSUBSCRIBED, "b": MembershipStatus.UNSUBSCRIBED,
                        "c": MembershipStatus.BOUNCED}  # an ended one stays as it was
    assert store.events(contact.id) == [{"kind": "unsubscribed", "at": 5.0, "data": {
        "lists": ["a", "b"], "at": 5.0, "ip": "192.0.2.9", "source": "unsubscribe:page"}}]
    assert store.end_memberships(contact.id, ids, MembershipStatus.UNSUBSCRIBED, record,
                                 6.0) == []
    assert len(store.events(contact.id)) == 1  # nothing changed: nothing recorded
    with pytest.raises(ValueError):
        store.end_memberships(contact.id, ids, MembershipStatus.CONFIRMED, record, 7.0)
