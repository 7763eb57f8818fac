"""What the HTTP routes depend on, built once per worker and kept on ``app.state``."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mailyard.http.ratelimit import RateLimiter
from mailyard.services.apikeys import ApiKeys
from mailyard.services.contacts import ConfirmationMail, Contacts
from mailyard.services.tracking import CampaignPublic

if TYPE_CHECKING:
    from mailyard.services.campaigns import Campaigns, OutgoingMail

if TYPE_CHECKING:
    from mailyard.services.messages import TransactionalMail

#: Hands a confirmation mail to ingest; returns the queue id.
Mailer = Callable[[ConfirmationMail], Awaitable[str]]


@dataclass
class HttpContext:
    contacts: Contacts
    apikeys: ApiKeys
    mailer: Mailer
    subscribe_limiter: RateLimiter
    max_body_size: int = 1_048_576
    max_import_size: int = 104_857_600
    clock: Callable[[], float] = field(default=time.time)
    #: tracking, unsubscribe and report pages (None: those routes answer 404)
    campaign_public: CampaignPublic | None = None
    campaigns: Campaigns | None = None
    #: Hands a campaign's test message to ingest; returns the queue id.
    campaign_mailer: Callable[[OutgoingMail], Awaitable[str]] | None = None
    messages: TransactionalMail | None = None  # POST /api/v1/messages
