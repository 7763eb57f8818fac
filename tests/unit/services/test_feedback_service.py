"""Applying bounces, complaints, unsubscribes and delivery results to the contact and
campaign stores (mailyard.services.feedback), over the real SQLite stores."""

from __future__ import annotations

import pytest

from mailyard.bulk.campaigns.model import CampaignSpec
from mailyard.bulk.campaigns.sqlite import SqliteCampaignStore
from mailyard.bulk.model import MembershipStatus, OptIn, SuppressionReason
from mailyard.bulk.report import BounceType, CampaignEvent, EventKind, build_report
from mailyard.bulk.sqlite import SqliteContactStore
from mailyard.feedback.actions import ActionKind, FeedbackAction, Source
from mailyard.feedback.policy import SoftBouncePolicy
from mailyard.feedback.verp import CampaignRecipient, TransactionalMessage
from mailyard.services.feedback import FeedbackService

DAY = 86400.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def world(tmp_path):
    contacts = SqliteContactStore(tmp_path / "bulk.db", lambda a: "d:" + a)
    campaigns = SqliteCampaignStore(contacts.db)
    clock = Clock()
    news = contacts.add_list("news", "", OptIn.SINGLE, clock())
    other = contacts.add_list("other", "", OptIn.SINGLE, clock())
    ann = contacts.add_contact("ann@example.net", "", {}, clock())
    for mlist in (news, other):
        contacts.set_membership(mlist.id, ann.id, MembershipStatus.CONFIRMED, now=clock())
    service = FeedbackService(contacts, campaigns, SoftBouncePolicy(3, 7), clock)
    return contacts, campaigns, service, clock, ann


def campaign(campaigns, name="c1", lists=("news",), now=0.0):
    return campaigns.add_campaign(name, CampaignSpec(lists=list(lists)), now)


def statuses(contacts, contact_id):
    return {m.list_name: m.status for m in contacts.memberships_of(contact_id)}


def action(kind, target, **kw):
    return FeedbackAction(kind, target, kw.pop("source", Source.REPORT), **kw)


def test_hard_bounce_suppresses_ends_the_campaigns_lists_and_records_one_event(world):
    contacts, campaigns, service, clock, ann = world
    c = campaign(campaigns)
    target = CampaignRecipient(c.id, ann.id)
    hard = action(ActionKind.HARD_BOUNCE, target, address="ann@example.net", status="5.1.1",
                  detail="smtp; 550 5.1.1 no such user", report_format="rfc3464")
    assert service.apply(hard).startswith("hard bounce: ann@example.net suppressed")
    supp = contacts.suppression("ann@example.net")
    assert supp is not None and supp.reason is SuppressionReason.HARD_BOUNCE
    assert "5.1.1" in supp.note
    # Only the campaign's list: the other list's membership is the person's own matter.
    assert statuses(contacts, ann.id) == {"news": MembershipStatus.BOUNCED,
                                          "other": MembershipStatus.CONFIRMED}
    # The same bounce again (a provider's DSN after our own): one event.
    service.apply(hard)
    events = list(campaigns.events(c.id))
    assert events == [CampaignEvent(EventKind.BOUNCED, clock(), ann.id, "example.net",
                                    bounce=BounceType.HARD)]
    assert build_report(c.id, events, []).bounced_hard == 1


def test_manual_suppression_is_replaced_by_the_bounce_reason(world):
    contacts, campaigns, service, clock, ann = world
    c = campaign(campaigns)
    contacts.suppress("ann@example.net", SuppressionReason.MANUAL, "", clock())
    service.apply(action(ActionKind.HARD_BOUNCE, CampaignRecipient(c.id, ann.id)))
    assert contacts.suppression("ann@example.net").reason is SuppressionReason.HARD_BOUNCE


def test_soft_bounces_of_three_campaigns_within_the_window_suppress(world):
    contacts, campaigns, service, clock, ann = world
    notes = []
    for i in range(3):
        c = campaign(campaigns, f"c{i}")
        soft = action(ActionKind.SOFT_BOUNCE, CampaignRecipient(c.id, ann.id),
                      status="4.2.2", detail="mailbox full")
        notes.append(service.apply(soft))
        notes.append(service.apply(soft))  # a delay notice and the failure: counted once
        clock.now += DAY
    assert notes[:4] == ["soft bounce 1 of 3", "soft bounce 1 of 3",
                         "soft bounce 2 of 3", "soft bounce 2 of 3"]
    assert notes[4] == "soft bounce 3 of 3: suppressed"
    supp = contacts.suppression("ann@example.net")
    assert supp.reason is SuppressionReason.SOFT_BOUNCES and "3 soft bounces" in supp.note
    assert statuses(contacts, ann.id)["news"] is MembershipStatus.BOUNCED


def test_soft_bounces_outside_the_window_or_before_a_delivery_do_not_count(world):
    contacts, campaigns, service, clock, ann = world
    first = campaign(campaigns, "old")
    service.apply(action(ActionKind.SOFT_BOUNCE, CampaignRecipient(first.id, ann.id)))
    clock.now += 8 * DAY  # out of the 7-day window
    second = campaign(campaigns, "second")
    service.apply(action(ActionKind.SOFT_BOUNCE, CampaignRecipient(second.id, ann.id)))
    third = campaign(campaigns, "third")
    # Delivered after the bounces: the address works.
    service.apply_many([action(ActionKind.DELIVERED, CampaignRecipient(third.id, ann.id),
                               source=Source.DELIVERY, address="ann@example.net")])
    clock.now += 1
    fourth = campaign(campaigns, "fourth")
    note = service.apply(action(ActionKind.SOFT_BOUNCE, CampaignRecipient(fourth.id, ann.id)))
    assert note == "soft bounce 1 of 3"
    assert contacts.suppression("ann@example.net") is None


def test_complaint_suppresses_and_marks_complained(world):
    contacts, campaigns, service, clock, ann = world
    c = campaign(campaigns, lists=("news", "other"))
    service.apply(action(ActionKind.COMPLAINT, CampaignRecipient(c.id, ann.id),
                         detail="abuse"))
    assert contacts.suppression("ann@example.net").reason is SuppressionReason.COMPLAINT
    assert set(statuses(contacts, ann.id).values()) == {MembershipStatus.COMPLAINED}
    assert [e.kind for e in campaigns.events(c.id)] == [EventKind.COMPLAINED]


def test_complaint_by_feedback_id_needs_the_contact_to_have_been_sent_the_campaign(world):
    contacts, campaigns, service, clock, ann = world
    c = campaign(campaigns)
    forged = action(ActionKind.COMPLAINT, None, address="Ann@Example.NET", campaign_id=c.id)
    assert service.apply(forged) == "no such campaign or contact"
    assert contacts.suppression("ann@example.net") is None
    campaigns.record_events(c.id, [CampaignEvent(EventKind.QUEUED, clock(), ann.id,
                                                 "example.net")])
    assert service.apply(forged).startswith("complaint")
    assert contacts.suppression("ann@example.net").reason is SuppressionReason.COMPLAINT


def test_mailto_unsubscribe_ends_the_campaigns_lists_only(world):
    contacts, campaigns, service, clock, ann = world
    c = campaign(campaigns)
    note = service.apply(action(ActionKind.UNSUBSCRIBE, CampaignRecipient(c.id, ann.id),
                                source=Source.MAILTO))
    assert note == "unsubscribed"
    assert statuses(contacts, ann.id) == {"news": MembershipStatus.UNSUBSCRIBED,
                                          "other": MembershipStatus.CONFIRMED}
    assert contacts.suppression("ann@example.net") is None
    [event] = campaigns.events(c.id)
    assert event.kind is EventKind.UNSUBSCRIBED and event.domain == "example.net"


def test_an_ended_membership_is_not_changed(world):
    contacts, campaigns, service, clock, ann = world
    news = contacts.get_list("news")
    contacts.set_membership(news.id, ann.id, MembershipStatus.UNSUBSCRIBED, now=clock())
    c = campaign(campaigns)
    service.apply(action(ActionKind.HARD_BOUNCE, CampaignRecipient(c.id, ann.id)))
    assert statuses(contacts, ann.id)["news"] is MembershipStatus.UNSUBSCRIBED


def test_transactional_bounce_suppresses_the_named_address(world):
    contacts, campaigns, service, clock, ann = world
    target = TransactionalMessage("msg-1")
    service.apply(action(ActionKind.HARD_BOUNCE, target, address="Bob@Example.ORG"))
    assert contacts.suppression("bob@example.org").reason is SuppressionReason.HARD_BOUNCE
    assert service.apply(action(ActionKind.HARD_BOUNCE, target)) == \
        "no such campaign or contact"
    assert campaigns.contact_events(ann.id) == []


def soft(target, address, **kw):
    return action(ActionKind.SOFT_BOUNCE, target, address=address, status="4.2.2",
                  detail="mailbox full", **kw)


def test_soft_bounces_of_transactional_messages_count_and_suppress(world):
    """Three different messages soft-bounce within the window: suppressed, as for
    campaigns; an address need not be a contact."""
    contacts, campaigns, service, clock, ann = world
    notes = []
    for i in range(3):
        tx = TransactionalMessage(f"msg-{i}")
        notes.append(service.apply(soft(tx, "Carl@Example.ORG")))
        # The same message again (a delay warning, then the failure): counted once.
        notes.append(service.apply(soft(tx, "carl@example.org", source=Source.DELIVERY)))
        clock.now += DAY
    assert notes == ["soft bounce 1 of 3", "soft bounce 1 of 3", "soft bounce 2 of 3",
                     "soft bounce 2 of 3", "soft bounce 3 of 3: suppressed",
                     "soft bounce 3 of 3: suppressed"]
    supp = contacts.suppression("carl@example.org")
    assert supp.reason is SuppressionReason.SOFT_BOUNCES and "4.2.2" in supp.note


def test_campaign_and_transactional_soft_bounces_count_together(world):
    contacts, campaigns, service, clock, ann = world
    c1, c2 = campaign(campaigns, "c1"), campaign(campaigns, "c2")
    assert service.apply(soft(CampaignRecipient(c1.id, ann.id), "ann@example.net")) == \
        "soft bounce 1 of 3"
    assert service.apply(soft(TransactionalMessage("m1"), "ann@example.net")) == \
        "soft bounce 2 of 3"
    assert service.apply(soft(CampaignRecipient(c2.id, ann.id), "ann@example.net")) == \
        "soft bounce 3 of 3: suppressed"
    assert contacts.suppression("ann@example.net").reason is SuppressionReason.SOFT_BOUNCES
    # The campaign's lists end as bounced; a transactional message names no list.
    assert statuses(contacts, ann.id)["news"] is MembershipStatus.BOUNCED


def test_a_transactional_delivery_resets_the_count(world):
    contacts, campaigns, service, clock, ann = world
    c1 = campaign(campaigns, "c1")
    service.apply(soft(CampaignRecipient(c1.id, ann.id), "ann@example.net"))
    service.apply(soft(TransactionalMessage("m1"), "ann@example.net"))
    clock.now += 60
    notes = service.apply_many([action(ActionKind.DELIVERED, TransactionalMessage("m2"),
                                       source=Source.DELIVERY, address="Ann@example.net")])
    assert notes == ["delivered"]
    clock.now += 60
    assert service.apply(soft(TransactionalMessage("m3"), "ann@example.net")) == \
        "soft bounce 1 of 3"
    assert contacts.suppression("ann@example.net") is None


def test_transactional_soft_bounces_outside_the_window_are_forgotten(world):
    contacts, campaigns, service, clock, ann = world
    service.apply(soft(TransactionalMessage("m1"), "dan@example.org"))
    service.apply(soft(TransactionalMessage("m2"), "dan@example.org"))
    clock.now += 8 * DAY
    assert service.apply(soft(TransactionalMessage("m3"), "dan@example.org")) == \
        "soft bounce 1 of 3"
    assert len(contacts.soft_bounces("dan@example.org", 0.0)) == 3
    # Pruned from the store (after a batch of delivery results), at most hourly.
    assert service.prune() == 2
    assert [m for m, _ in contacts.soft_bounces("dan@example.org", 0.0)] == ["message:m3"]
    clock.now += 8 * DAY
    assert service.prune() == 1


def test_erase_forgets_the_transactional_history(world):
    contacts, campaigns, service, clock, ann = world
    service.apply(soft(TransactionalMessage("m1"), "ann@example.net"))
    contacts.add_deliveries(["ann@example.net"], clock())
    contacts.erase("ann@example.net")
    assert contacts.soft_bounces("ann@example.net", 0.0) == []
    assert contacts.last_delivery("ann@example.net") is None


def test_delivery_results_are_written_per_campaign(world):
    contacts, campaigns, service, clock, ann = world
    c = campaign(campaigns)
    target = CampaignRecipient(c.id, ann.id)
    notes = service.apply_many([
        action(ActionKind.DEFERRED, target, source=Source.DELIVERY, address="ann@example.net",
               detail="451 4.7.1 greylisted"),
        action(ActionKind.DELIVERED, target, source=Source.DELIVERY, address="ann@example.net",
               detail="250 2.0.0 ok"),
        action(ActionKind.HARD_BOUNCE, CampaignRecipient(c.id, 99999),
               source=Source.DELIVERY, address="gone@example.net"),
    ])
    assert notes[:2] == ["deferred", "delivered"]
    assert [e.kind for e in campaigns.events(c.id)] == [EventKind.DEFERRED,
                                                         EventKind.DELIVERED]
    # An erased contact's address is still suppressed.
    assert contacts.suppression("gone@example.net") is not None


def test_results_of_a_deleted_campaign_are_dropped(world):
    contacts, campaigns, service, clock, ann = world
    notes = service.apply_many([action(ActionKind.DELIVERED, CampaignRecipient(777, ann.id),
                                       source=Source.DELIVERY, address="ann@example.net")])
    assert notes == ["delivered"]
    assert campaigns.contact_events(ann.id) == []
