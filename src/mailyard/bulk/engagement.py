"""From a request to the open pixel or the click redirect to the campaign event it
records: which kind, which link, the recipient's domain, and whether a person or a
program made it (:mod:`mailyard.bulk.machine`).

The HTTP layer answers at once and hands a :class:`Hit` to a recorder thread; the
recorder looks up what a verdict needs (the contact's address, when the message was
delivered, the other recent clicks on the same message) and calls :func:`hit_event`.
Pure: no clock, no storage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mailyard.bulk.machine import DEFAULT_RULES, Action, Interaction, MachineRules, classify
from mailyard.bulk.report import CampaignEvent, EventKind
from mailyard.bulk.tracking import TokenKind, TrackingToken

#: User agents longer than this are cut before they are stored.
MAX_AGENT = 512


@dataclass(frozen=True)
class Hit:
    """One request with a genuine open or click token."""

    token: TrackingToken
    at: float
    ip: str = ""
    user_agent: str = ""
    method: str = "GET"

    @property
    def message(self) -> tuple[int, int]:
        """The message the hit is about: (campaign id, contact id)."""
        return self.token.campaign_id, self.token.contact_id

    def interaction(self) -> Interaction:
        click = self.token.kind == TokenKind.CLICK
        return Interaction(Action.CLICK if click else Action.OPEN, self.at, self.ip,
                           self.user_agent, self.method,
                           self.token.link if click else None)


def recipient_domain(address: str) -> str:
    """The domain of an address, lower case ("" without an ``@``)."""
    _, at, domain = address.rpartition("@")
    return domain.lower() if at else ""


def hit_event(hit: Hit, domain: str, delivered_at: float | None,
              recent: Sequence[Interaction] = (),
              rules: MachineRules = DEFAULT_RULES) -> tuple[CampaignEvent, dict[str, str]]:
    """The event to record for ``hit`` and its details (user agent, address, and the
    reason when a program made it).  ``recent`` are the other requests for the same
    message seen shortly before (for the many-links-at-once rule)."""
    if hit.token.kind not in (TokenKind.OPEN, TokenKind.CLICK):
        raise ValueError("only open and click tokens are hits")
    interaction = hit.interaction()
    verdict = classify(interaction, delivered_at, recent, rules)
    click = hit.token.kind == TokenKind.CLICK
    event = CampaignEvent(EventKind.CLICKED if click else EventKind.OPENED, hit.at,
                          hit.token.contact_id, domain,
                          hit.token.link if click else None, verdict.machine)
    data = {"ua": hit.user_agent[:MAX_AGENT], "ip": hit.ip}
    if verdict.label != "human":
        data["why"] = verdict.reason.value
    if hit.method.upper() != "GET":
        data["method"] = hit.method.upper()[:16]
    return event, data
