"""The campaign store over SQLite: life cycle moves as compare-and-set, links
append-only, events round-trip, erase removes a contact's campaign events."""

from __future__ import annotations

import pytest

from mailyard.bulk.campaigns.model import CampaignSpec, CampaignState, can_move
from mailyard.bulk.campaigns.sqlite import SqliteCampaignStore
from mailyard.bulk.campaigns.store import CampaignConflict
from mailyard.bulk.report import BounceType, CampaignEvent, EventKind, build_report
from mailyard.bulk.sqlite import SqliteContactStore


@pytest.fixture
def stores(tmp_path):
    contacts = SqliteContactStore(tmp_path / "bulk.db", lambda a: "d:" + a)
    return contacts, SqliteCampaignStore(contacts.db)


def test_life_cycle_moves(stores):
    _, store = stores
    spec = CampaignSpec(subject="Hello", lists=["news"], domain_caps={"gmail.com": 300})
    c = store.add_campaign("spring", spec, 10.0)
    assert c.state == CampaignState.DRAFT
    with pytest.raises(CampaignConflict):
        store.add_campaign("spring", spec, 11.0)
    c = store.move(c.id, CampaignState.DRAFT, CampaignState.SCHEDULED, 12.0, send_at=100.0)
    assert c.send_at == 100.0
    assert store.due(99.0) == []
    assert [d.id for d in store.due(100.0)] == [c.id]
    with pytest.raises(CampaignConflict):  # not a draft any more
        store.update_spec(c.id, spec, 13.0)
    with pytest.raises(CampaignConflict):  # someone else moved it already
        store.move(c.id, CampaignState.DRAFT, CampaignState.SCHEDULED, 13.0)
    c = store.move(c.id, CampaignState.SCHEDULED, CampaignState.SENDING, 14.0)
    assert c.started == 14.0
    c = store.move(c.id, CampaignState.SENDING, CampaignState.PAUSED, 15.0)
    c = store.move(c.id, CampaignState.PAUSED, CampaignState.SENDING, 16.0)
    assert c.started == 14.0
    c = store.move(c.id, CampaignState.SENDING, CampaignState.FINISHED, 17.0)
    assert c.finished == 17.0
    with pytest.raises(CampaignConflict):
        store.move(c.id, CampaignState.FINISHED, CampaignState.SENDING, 18.0)
    again = store.get_campaign_by_name("spring")
    assert again is not None and again.spec == spec
    assert not can_move(CampaignState.CANCELLED, CampaignState.DRAFT)


def test_spec_keeps_unknown_keys():
    spec = CampaignSpec.from_dict({"subject": "s", "future_setting": [1, 2]})
    assert spec.extra == {"future_setting": [1, 2]}
    assert spec.to_dict()["future_setting"] == [1, 2]


def test_links_are_append_only(stores):
    _, store = stores
    c = store.add_campaign("c", CampaignSpec(), 1.0)
    store.add_links(c.id, 0, ["https://a.example/", "https://b.example/"])
    store.add_links(c.id, 1, ["https://evil.example/", "https://c.example/"])
    assert store.links(c.id) == ["https://a.example/", "https://b.example/",
                                 "https://c.example/"]


def test_events_round_trip_and_erase(stores):
    contacts, store = stores
    alice = contacts.add_contact("alice@example.org", "", {}, 1.0)
    bob = contacts.add_contact("bob@example.net", "", {}, 1.0)
    c = store.add_campaign("c", CampaignSpec(), 1.0)
    events = [CampaignEvent(EventKind.QUEUED, 2.0, alice.id, "example.org"),
              CampaignEvent(EventKind.DELIVERED, 3.0, alice.id, "example.org"),
              CampaignEvent(EventKind.CLICKED, 4.0, alice.id, "example.org", link=0),
              CampaignEvent(EventKind.BOUNCED, 3.0, bob.id, "example.net",
                            bounce=BounceType.HARD)]
    store.record_events(c.id, events, [{}, {}, {"ua": "x"}, {"reply": "550 5.1.1"}])
    assert list(store.events(c.id)) == events
    report = build_report(c.id, store.events(c.id), store.links(c.id))
    assert (report.delivered, report.bounced_hard, report.clicks.unique_all) == (1, 1, 1)
    contacts.erase("alice@example.org")
    assert [e.contact_id for e in store.events(c.id)] == [bob.id]
    assert store.contact_events(bob.id) == [(c.id, events[3])]
