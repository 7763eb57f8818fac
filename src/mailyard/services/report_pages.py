"""The campaign report for the HTML page, and the signed links that open it.

The page ``/reports/campaigns/<id>`` is for a browser, which cannot easily send an
API key, so besides ``Authorization: Bearer <key>`` (scope ``campaigns``) it takes
``?token=`` from a report link: ``GET /api/v1/campaigns/<id>/report-link`` (with a
key) answers a URL valid for ``ttl`` seconds (a day by default, at most 30).  The
token is an HMAC over the campaign id and the expiry (:mod:`mailyard.bulk.tokens`)
with a key of its own derived from the server secret; nothing is stored, so a link
cannot be revoked before it expires except by rotating the server secret.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from mailyard.bulk.campaigns.model import Campaign
from mailyard.bulk.campaigns.store import CampaignStore
from mailyard.bulk.report import CampaignReport, build_report
from mailyard.bulk.tokens import ExpiredToken, InvalidToken, sign, verify
from mailyard.services.errors import error

PURPOSE = "campaign report page"
DEFAULT_TTL = 86400
MAX_TTL = 30 * 86400
PAGE_PATH = "/reports/campaigns/"


@dataclass(frozen=True)
class ReportLink:
    url: str
    expires: int


class CampaignReports:
    def __init__(self, store: CampaignStore, key: bytes, public_url: str,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.key = key
        self.public_url = public_url.rstrip("/")
        self.clock = clock

    def campaign(self, campaign_id: int) -> Campaign:
        found = self.store.get_campaign(campaign_id)
        if found is None:
            raise error("no_such_campaign", f"no campaign {campaign_id}")
        return found

    def report(self, campaign_id: int) -> tuple[Campaign, CampaignReport]:
        campaign = self.campaign(campaign_id)
        return campaign, build_report(campaign_id, self.store.events(campaign_id),
                                      self.store.links(campaign_id))

    def link(self, campaign_id: int, ttl: int = DEFAULT_TTL) -> ReportLink:
        if not 60 <= ttl <= MAX_TTL:
            raise error("invalid_ttl", f"ttl must be 60 to {MAX_TTL} seconds")
        self.campaign(campaign_id)
        expires = int(self.clock()) + ttl
        token = sign(self.key, PURPOSE, (campaign_id,), expires)
        return ReportLink(f"{self.public_url}{PAGE_PATH}{campaign_id}?token={token}", expires)

    def check(self, campaign_id: int, token: str) -> bool:
        """Whether ``token`` opens the page of ``campaign_id`` now."""
        try:
            return verify(self.key, PURPOSE, token, self.clock()) == (campaign_id,)
        except (ExpiredToken, InvalidToken):
            return False
