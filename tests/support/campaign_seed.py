"""A campaign to track, written straight into a server's data directory (the stores
and the server secret), for the tracking, report and browser tests and the tracking
bench: a list, contacts on it, a tracked campaign with links, one with tracking off,
and the tracker that makes each contact's pixel, click and unsubscribe URLs."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mailyard.bulk.campaigns.model import CampaignSpec
from mailyard.bulk.campaigns.sqlite import SqliteCampaignStore
from mailyard.bulk.model import Consent, MembershipStatus
from mailyard.bulk.report import CampaignEvent
from mailyard.bulk.tracking import CampaignLinks, CampaignTracker, TokenSigner, tracking_key
from mailyard.config import load_config
from mailyard.daemon.secret import load_server_secret
from mailyard.services.contacts import Contacts
from mailyard.services.setup import open_campaign_store, open_contacts, public_url

LINKS = ("https://shop.example/spring", "https://shop.example/faq",
         "https://shop.example/unsubscribe-help")


@dataclass
class SeededCampaign:
    contacts: Contacts
    store: SqliteCampaignStore
    tracked: int  # campaign id, tracking on
    untracked: int  # campaign id, tracking off
    contact_ids: list[int]
    signer: TokenSigner
    base_url: str

    def tracker(self, campaign: int | None = None) -> CampaignTracker:
        cid = self.tracked if campaign is None else campaign
        return CampaignTracker(self.base_url, cid, self.signer,
                               CampaignLinks(self.store.links(cid)))

    def events(self, campaign: int | None = None) -> list[CampaignEvent]:
        return list(self.store.events(self.tracked if campaign is None else campaign))

    def wait_events(self, count: int, campaign: int | None = None,
                    timeout: float = 20.0) -> list[CampaignEvent]:
        """The campaign's events once there are at least ``count`` (the server writes
        them a moment after answering)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.events(campaign)
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


def seed_campaign(config_path: Path, *, contacts: int = 3, links: Sequence[str] = LINKS,
                  list_name: str = "news") -> SeededCampaign:
    config = load_config(config_path)
    service = open_contacts(config)
    store = open_campaign_store(service)
    service.create_list(list_name)
    consent = Consent(time.time(), "192.0.2.1", "test")
    ids = []
    for i in range(contacts):
        domain = ("example.org", "example.net", "mail.example")[i % 3]
        member = service.set_member(list_name, f"person{i}@{domain}",
                                    MembershipStatus.CONFIRMED, consent)
        ids.append(service.get(member.address).id)
    now = time.time()
    tracked = store.add_campaign(f"{list_name}-spring", CampaignSpec(
        subject="Spring", lists=[list_name]), now).id
    untracked = store.add_campaign(f"{list_name}-quiet", CampaignSpec(
        subject="Quiet", lists=[list_name], tracking=False), now).id
    for cid in (tracked, untracked):
        store.add_links(cid, 0, list(links))
    signer = TokenSigner(tracking_key(load_server_secret(config.data_path)))
    return SeededCampaign(service, store, tracked, untracked, ids, signer, public_url(config))
