"""The storage interface of campaigns, their tracked links and their events.

Events are the campaign's history per contact (queued, delivered, deferred, bounced,
opened, clicked, unsubscribed, complained), written by the sender, by delivery
results, by the tracking endpoints and by bounce and complaint processing, and read
back by :func:`mailyard.bulk.report.build_report`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from mailyard.bulk.campaigns.model import Campaign, CampaignSpec, CampaignState
from mailyard.bulk.report import CampaignEvent


class CampaignConflict(Exception):
    """A campaign with that name exists, or the state changed under the caller."""


class CampaignStore(Protocol):
    def add_campaign(self, name: str, spec: CampaignSpec, now: float) -> Campaign: ...

    def get_campaign(self, campaign_id: int) -> Campaign | None: ...

    def get_campaign_by_name(self, name: str) -> Campaign | None: ...

    def campaigns(self, *, state: CampaignState | None = None) -> list[Campaign]: ...

    def update_spec(self, campaign_id: int, spec: CampaignSpec, now: float) -> Campaign:
        """Only while the campaign is a draft (:class:`CampaignConflict` otherwise)."""
        ...

    def move(self, campaign_id: int, expected: CampaignState, to: CampaignState,
             now: float, *, send_at: float | None = None) -> Campaign:
        """Compare-and-set of the state: :class:`CampaignConflict` when the campaign is
        no longer in ``expected`` (another process moved it) or the move is not
        allowed.  ``send_at`` is stored when moving to scheduled; moving to sending
        the first time sets ``started``, to finished or cancelled sets ``finished``."""
        ...

    def due(self, now: float) -> list[Campaign]:
        """Scheduled campaigns whose time has come, oldest first."""
        ...

    # --- tracked links ----------------------------------------------------------------
    def links(self, campaign_id: int) -> list[str]:
        """The campaign's tracked links; a click token carries the index into this."""
        ...

    def add_links(self, campaign_id: int, first: int, urls: Sequence[str]) -> None:
        """Stores ``urls`` at indexes ``first``, ``first + 1``...; existing indexes are
        left as they are (links are append-only, so tokens never change meaning)."""
        ...

    # --- events -----------------------------------------------------------------------
    def record_events(self, campaign_id: int, events: Sequence[CampaignEvent],
                      data: Sequence[dict[str, str]] | None = None) -> None:
        """Appends ``events`` (``data``: optional details per event, such as the
        reply text of a bounce or the user agent of an open)."""
        ...

    def events(self, campaign_id: int) -> Iterator[CampaignEvent]: ...

    def contact_events(self, contact_id: int) -> list[tuple[int, CampaignEvent]]:
        """Every event of one contact in every campaign: (campaign id, event)."""
        ...
