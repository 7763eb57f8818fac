"""Applying what came back: :class:`~mailyard.feedback.actions.FeedbackAction` values
(from received reports and from our own delivery results) to the suppression list,
list memberships and campaign events.

- hard bounce: the address is suppressed (``hard-bounce``), its memberships of the
  campaign's lists become ``bounced``, a ``bounced`` (hard) event is recorded;
- soft bounce: a ``bounced`` (soft) event; when the address has soft-bounced for
  ``soft_bounce_threshold`` different messages (campaigns and transactional messages
  together) within ``soft_bounce_window_days`` since its last delivery or engagement
  (:mod:`mailyard.feedback.policy`), it is suppressed (``soft-bounces``) and the
  campaign's memberships become ``bounced``;
- complaint: suppressed (``complaint``), memberships of the campaign's lists become
  ``complained`` (an ended membership: unsubscribed because of the complaint), a
  ``complained`` event;
- mailto unsubscribe: memberships of the campaign's lists become ``unsubscribed``, an
  ``unsubscribed`` event;
- delivered, deferred: the event, with the reply.

A transactional message's token names no contact: its bounces and complaints act on
the address the report or attempt names, and record no campaign event.  Its soft
bounces and deliveries are kept by address (a keyed digest, in the contact store) so
they count with the campaigns' toward the same threshold: the suppression list acts on
an address whichever kind of mail found it broken.  They are kept for the window only
(:meth:`FeedbackService.prune`).

The same report may arrive twice (our own DSN of a failure delivery has recorded
already, a provider's DSN after a 250): a bounced, complained or unsubscribed event is
recorded once per campaign and contact, and suppressing or ending a membership again
changes nothing.  Every method is blocking (SQLite): callers run it in a thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from mailyard.bulk.addresses import InvalidAddress, normalise_address
from mailyard.bulk.campaigns.model import Campaign
from mailyard.bulk.campaigns.store import CampaignStore
from mailyard.bulk.model import Contact, MembershipStatus, SuppressionReason
from mailyard.bulk.report import BounceType, CampaignEvent, EventKind
from mailyard.bulk.store import ContactStore
from mailyard.feedback.actions import ActionKind, FeedbackAction
from mailyard.feedback.policy import SoftBounce, SoftBouncePolicy, decide
from mailyard.feedback.verp import CampaignRecipient, TransactionalMessage

_ACTIVE = frozenset({MembershipStatus.CONFIRMED, MembershipStatus.UNCONFIRMED})
_SUCCESS = frozenset({EventKind.DELIVERED, EventKind.OPENED, EventKind.CLICKED})
_ONCE = {  # events recorded once per campaign and contact
    ActionKind.HARD_BOUNCE: (EventKind.BOUNCED, BounceType.HARD),
    ActionKind.SOFT_BOUNCE: (EventKind.BOUNCED, BounceType.SOFT),
    ActionKind.COMPLAINT: (EventKind.COMPLAINED, None),
    ActionKind.UNSUBSCRIBE: (EventKind.UNSUBSCRIBED, None),
}
#: Transactional soft bounces are stored as this prefix and the message id (campaign
#: ones are counted by campaign id, so the two never collide).
MESSAGE_KEY = "message:"
DAY = 86400.0
PRUNE_INTERVAL = 3600.0
_EVENT = {ActionKind.DELIVERED: EventKind.DELIVERED, ActionKind.DEFERRED: EventKind.DEFERRED}


@dataclass(frozen=True)
class _Subject:
    """Whom an action is about: the campaign (if any), the contact (if known) and the
    address to suppress."""

    campaign: Campaign | None
    contact: Contact | None
    address: str | None


class FeedbackService:
    def __init__(self, contacts: ContactStore, campaigns: CampaignStore,
                 policy: SoftBouncePolicy, clock: Callable[[], float] = time.time) -> None:
        self.contacts = contacts
        self.campaigns = campaigns
        self.policy = policy
        self.clock = clock
        self._pruned = 0.0

    # --- many at once (delivery results) --------------------------------------------
    def apply_many(self, actions: Iterable[FeedbackAction]) -> list[str]:
        """Delivered and deferred results of campaign messages in one write per
        campaign, deliveries of transactional messages in one write; anything else one
        by one (after the deliveries before it, which restart soft-bounce counts).
        Returns one note per action."""
        plain: dict[int, list[tuple[CampaignEvent, dict[str, str]]]] = {}
        delivered: list[str] = []
        notes = []
        for action in actions:
            target = action.target
            if action.kind is ActionKind.DELIVERED and isinstance(target, TransactionalMessage):
                address = _normal(action.address)
                if address is not None:
                    delivered.append(address)
                notes.append(action.kind.value)
            elif action.kind in _EVENT and isinstance(target, CampaignRecipient):
                event = CampaignEvent(_EVENT[action.kind], self.clock(), target.contact_id,
                                      _domain(action.address))
                plain.setdefault(target.campaign_id, []).append((event, action.data()))
                notes.append(action.kind.value)
            else:
                if delivered:
                    self.contacts.add_deliveries(delivered, self.clock())
                    delivered = []
                notes.append(self.apply(action))
        for campaign_id, items in plain.items():
            if self.campaigns.get_campaign(campaign_id) is None:
                continue  # deleted meanwhile
            self.campaigns.record_events(campaign_id, [e for e, _ in items],
                                         [d for _, d in items])
        if delivered:
            self.contacts.add_deliveries(delivered, self.clock())
        self.prune()
        return notes

    def prune(self) -> int:
        """Forget transactional soft bounces and deliveries that fell out of the
        window (at most once an hour; they decide nothing any more)."""
        now = self.clock()
        if now - self._pruned < PRUNE_INTERVAL:
            return 0
        self._pruned = now
        return self.contacts.prune_address_history(now - self.policy.window_days * DAY)

    # --- one ----------------------------------------------------------------------------
    def apply(self, action: FeedbackAction) -> str:
        """Apply one action; returns what was done (for the log)."""
        subject = self._subject(action)
        if subject is None:
            return "no such campaign or contact"
        kind = action.kind
        if kind is ActionKind.DELIVERED and isinstance(action.target, TransactionalMessage):
            assert subject.address is not None
            self.contacts.add_deliveries([subject.address], self.clock())
            return "delivered"
        if kind in _EVENT:
            return self._event(subject, action, _EVENT[kind], None)
        if kind is ActionKind.HARD_BOUNCE:
            return self._hard(subject, action, note=_note(action))
        if kind is ActionKind.SOFT_BOUNCE:
            return self._soft(subject, action)
        if kind is ActionKind.COMPLAINT:
            done = self._suppress(subject, SuppressionReason.COMPLAINT, _note(action))
            self._end_memberships(subject, MembershipStatus.COMPLAINED)
            self._once(subject, action)
            return f"complaint: {done}"
        if subject.campaign is None:
            return "unsubscribe: no list named by a transactional message"
        self._end_memberships(subject, MembershipStatus.UNSUBSCRIBED)
        self._once(subject, action)
        return "unsubscribed"

    def _subject(self, action: FeedbackAction) -> _Subject | None:
        target = action.target
        if isinstance(target, CampaignRecipient):
            campaign = self.campaigns.get_campaign(target.campaign_id)
            contact = self.contacts.get_contact_by_id(target.contact_id)
            if contact is None:  # erased: the report's address may still be suppressed
                return _Subject(None, None, _normal(action.address)) if action.address else None
            return _Subject(campaign, contact, contact.address)
        address = _normal(action.address)
        if address is None:
            return None
        contact = self.contacts.get_contact(address)
        if isinstance(target, TransactionalMessage):
            return _Subject(None, contact, address)
        # A complaint located by Feedback-ID and recipient: only for a contact that
        # campaign was sent to.
        if action.campaign_id is None or contact is None:
            return None
        if not any(cid == action.campaign_id
                   for cid, _ in self.campaigns.contact_events(contact.id)):
            return None
        return _Subject(self.campaigns.get_campaign(action.campaign_id), contact, address)

    def _hard(self, subject: _Subject, action: FeedbackAction, note: str) -> str:
        done = self._suppress(subject, SuppressionReason.HARD_BOUNCE, note)
        self._end_memberships(subject, MembershipStatus.BOUNCED)
        self._once(subject, action)
        return f"hard bounce: {done}"

    def _soft(self, subject: _Subject, action: FeedbackAction) -> str:
        target = action.target
        if isinstance(target, TransactionalMessage) and subject.address is not None:
            self.contacts.add_soft_bounce(subject.address, MESSAGE_KEY + target.message_id,
                                          self.clock())
        elif subject.campaign is None or subject.contact is None:
            return "soft bounce: no campaign or contact"
        else:
            self._once(subject, action)
        bounces, success = self._history(subject)
        decision = decide(self.policy, bounces, _when(self.clock()),
                          _when(max(success)) if success else None)
        if not decision.suppress:
            return f"soft bounce {decision.counted} of {decision.threshold}"
        note = (f"{decision.counted} soft bounces within {self.policy.window_days} days; "
                f"last: {_note(action)}")
        self._suppress(subject, SuppressionReason.SOFT_BOUNCES, note)
        self._end_memberships(subject, MembershipStatus.BOUNCED)
        return f"soft bounce {decision.counted} of {decision.threshold}: suppressed"

    def _history(self, subject: _Subject) -> tuple[list[SoftBounce], list[float]]:
        """The address's soft bounces (of campaigns, by the contact's events, and of
        transactional messages, by address) and the times it was seen working."""
        bounces: list[SoftBounce] = []
        success: list[float] = []
        if subject.contact is not None:
            for cid, e in self.campaigns.contact_events(subject.contact.id):
                if e.kind is EventKind.BOUNCED and e.bounce is BounceType.SOFT:
                    bounces.append(SoftBounce(_when(e.at), str(cid)))
                elif e.kind in _SUCCESS:
                    success.append(e.at)
        if subject.address is not None:
            since = self.clock() - self.policy.window_days * DAY
            bounces += [SoftBounce(_when(at), message)
                        for message, at in self.contacts.soft_bounces(subject.address, since)]
            delivered = self.contacts.last_delivery(subject.address)
            if delivered is not None:
                success.append(delivered)
        return bounces, success

    def _suppress(self, subject: _Subject, reason: SuppressionReason, note: str) -> str:
        if subject.address is None:
            return "no address"
        existing = self.contacts.suppression(subject.address)
        if existing is not None and existing.reason is not SuppressionReason.MANUAL:
            return f"{subject.address} suppressed already"
        self.contacts.suppress(subject.address, reason, note[:200], self.clock())
        return f"{subject.address} suppressed"

    def _end_memberships(self, subject: _Subject, status: MembershipStatus) -> None:
        if subject.campaign is None or subject.contact is None:
            return
        for name in subject.campaign.spec.lists:
            mlist = self.contacts.get_list(name)
            if mlist is None:
                continue
            member = self.contacts.membership(mlist.id, subject.contact.id)
            if member is not None and member.status in _ACTIVE:
                self.contacts.set_membership(mlist.id, subject.contact.id, status,
                                             now=self.clock())

    def _once(self, subject: _Subject, action: FeedbackAction) -> None:
        if subject.campaign is None or subject.contact is None:
            return
        kind, bounce = _ONCE[action.kind]
        campaign_id = subject.campaign.id
        for cid, event in self.campaigns.contact_events(subject.contact.id):
            if cid == campaign_id and event.kind is kind and event.bounce is bounce:
                return
        self._record(subject, action, kind, bounce)

    def _event(self, subject: _Subject, action: FeedbackAction, kind: EventKind,
               bounce: BounceType | None) -> str:
        if subject.campaign is None or subject.contact is None:
            return f"{kind.value}: no campaign"
        self._record(subject, action, kind, bounce)
        return kind.value

    def _record(self, subject: _Subject, action: FeedbackAction, kind: EventKind,
                bounce: BounceType | None) -> None:
        assert subject.campaign is not None and subject.contact is not None
        event = CampaignEvent(kind, self.clock(), subject.contact.id,
                              _domain(subject.contact.address), bounce=bounce)
        self.campaigns.record_events(subject.campaign.id, [event], [action.data()])


def _normal(address: str | None) -> str | None:
    if not address:
        return None
    try:
        return normalise_address(address)
    except InvalidAddress:
        return None


def _domain(address: str | None) -> str:
    return address.rpartition("@")[2].lower() if address else ""


def _when(at: float) -> datetime:
    return datetime.fromtimestamp(at, UTC)


def _note(action: FeedbackAction) -> str:
    return " ".join(p for p in (action.status or "", action.detail) if p) or action.kind.value
