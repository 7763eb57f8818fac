"""Unsubscribing through the link in a campaign message (``/u/<token>``).

The token (:mod:`mailyard.bulk.tracking`, kind unsubscribe) names the campaign and
the contact.  Looking at what it would do changes nothing (:meth:`Unsubscribes.
target`): mail scanners follow every link, so only a POST, from the page's button or
a mail client's RFC 8058 one-click request, acts (:meth:`Unsubscribes.unsubscribe`).
It ends the contact's memberships of every list the campaign went to, at once (the
sender reads memberships per batch), keeps a record of when, from which address and
how ("one-click" or "page") among the contact's events, and records an
``unsubscribed`` event for the campaign's report.  Doing it twice changes nothing
the second time.  A forged or altered token, or one naming a campaign or a contact
that no longer exists, is ``no_such_token``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from mailyard.bulk.campaigns.model import Campaign
from mailyard.bulk.campaigns.store import CampaignStore
from mailyard.bulk.engagement import recipient_domain
from mailyard.bulk.model import Consent, Contact, MailingList, Membership, MembershipStatus
from mailyard.bulk.report import CampaignEvent, EventKind
from mailyard.bulk.store import ContactStore
from mailyard.bulk.tracking import TokenKind, TokenSigner
from mailyard.services.errors import error

ONE_CLICK = "one-click"
PAGE = "page"

_FORM_PAIR = re.compile(rb"(?:^|&)List-Unsubscribe=One-Click(?:&|$)")
_MULTIPART_PAIR = re.compile(
    rb'name="?List-Unsubscribe"?[^\r\n]*\r?\n(?:[^\r\n]+\r?\n)*\r?\nOne-Click\r?\n',
    re.IGNORECASE)


def is_one_click(body: bytes) -> bool:
    """Whether a POST body carries RFC 8058's ``List-Unsubscribe=One-Click`` (3.2),
    as a form-urlencoded pair or as a multipart/form-data field."""
    return bool(_FORM_PAIR.search(body.strip()) or _MULTIPART_PAIR.search(body))


@dataclass(frozen=True)
class UnsubscribeTarget:
    campaign: Campaign
    contact: Contact
    lists: list[tuple[MailingList, Membership | None]]

    @property
    def subscribed(self) -> list[MailingList]:
        """The lists the contact would leave (confirmed or waiting for confirmation)."""
        return [m for m, member in self.lists if member is not None
                and member.status in (MembershipStatus.CONFIRMED, MembershipStatus.UNCONFIRMED)]


@dataclass(frozen=True)
class Unsubscribed:
    address: str
    lists: list[str]  # the lists left just now (empty when already unsubscribed)


class Unsubscribes:
    def __init__(self, campaigns: CampaignStore, contacts: ContactStore, signer: TokenSigner,
                 clock: Callable[[], float] = time.time) -> None:
        self.campaigns = campaigns
        self.contacts = contacts
        self.signer = signer
        self.clock = clock

    def target(self, token: str) -> UnsubscribeTarget:
        """Who and which lists a link is for; changes nothing."""
        decoded = self.signer.decode(token, TokenKind.UNSUBSCRIBE)
        campaign = contact = None
        if decoded is not None:
            campaign = self.campaigns.get_campaign(decoded.campaign_id)
            contact = self.contacts.get_contact_by_id(decoded.contact_id)
        if campaign is None or contact is None:
            raise error("no_such_token", "no such unsubscribe link")
        lists: list[tuple[MailingList, Membership | None]] = []
        for name in campaign.spec.lists:
            mlist = self.contacts.get_list(name.strip().lower())
            if mlist is not None:
                lists.append((mlist, self.contacts.membership(mlist.id, contact.id)))
        return UnsubscribeTarget(campaign, contact, lists)

    def unsubscribe(self, token: str, ip: str, how: str) -> Unsubscribed:
        found = self.target(token)
        now = self.clock()
        ids = [m.id for m in found.subscribed]
        changed = self.contacts.end_memberships(
            found.contact.id, ids, MembershipStatus.UNSUBSCRIBED,
            Consent(now, ip, f"unsubscribe:{how}:campaign {found.campaign.id}"), now)
        names = [m.name for m in found.subscribed if m.id in changed]
        if changed:
            event = CampaignEvent(EventKind.UNSUBSCRIBED, now, found.contact.id,
                                  recipient_domain(found.contact.address))
            self.campaigns.record_events(found.campaign.id, [event],
                                         [{"ip": ip, "how": how, "lists": ",".join(names)}])
        return Unsubscribed(found.contact.address, names)
