"""A campaign, its life cycle and its settings.

States and the moves between them (any other move is refused)::

    draft -> scheduled -> sending -> finished
      |         |           |  ^
      |         v           v  |
      |       draft       paused
      v                     |
    cancelled <-------------+  (draft, scheduled, sending and paused can be cancelled)

``scheduled -> draft`` is "unschedule".  ``finished`` and ``cancelled`` are final.

The settings (:class:`CampaignSpec`) are kept as one JSON document, so that adding a
setting needs no schema change; unknown keys in a stored document are kept as they
are (``extra``), so an older program does not drop what a newer one wrote.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field, fields
from typing import Any


class CampaignState(enum.StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    PAUSED = "paused"
    FINISHED = "finished"
    CANCELLED = "cancelled"


TRANSITIONS: dict[CampaignState, frozenset[CampaignState]] = {
    CampaignState.DRAFT: frozenset({CampaignState.SCHEDULED, CampaignState.CANCELLED}),
    CampaignState.SCHEDULED: frozenset({CampaignState.DRAFT, CampaignState.SENDING,
                                        CampaignState.CANCELLED}),
    CampaignState.SENDING: frozenset({CampaignState.PAUSED, CampaignState.FINISHED,
                                      CampaignState.CANCELLED}),
    CampaignState.PAUSED: frozenset({CampaignState.SENDING, CampaignState.CANCELLED}),
    CampaignState.FINISHED: frozenset(),
    CampaignState.CANCELLED: frozenset(),
}

#: States whose settings may still be changed.
EDITABLE = frozenset({CampaignState.DRAFT})


def can_move(current: CampaignState, to: CampaignState) -> bool:
    return to in TRANSITIONS[current]


@dataclass
class CampaignSpec:
    """What to send, to whom and how fast.  Everything has a default so that a draft
    can be saved half written; :mod:`mailyard.bulk.templates.check` and the scheduler
    decide what must be filled in before sending."""

    from_address: str = ""
    from_name: str = ""
    reply_to: str = ""
    subject: str = ""
    html: str = ""  # Jinja2 template source
    text: str = ""  # Jinja2 template source; made from the HTML when empty
    lists: list[str] = field(default_factory=list)
    segment: str = ""  # a segment expression (mailyard.bulk.segments), empty for all
    tracking: bool = True
    pool: str = ""  # a [[delivery.pools]] name; empty for the default lane
    rate_per_minute: int = 0  # 0: no overall rate limit
    domain_caps: dict[str, int] = field(default_factory=dict)  # domain -> messages/hour
    timezone: str = "UTC"  # for send_at given as a local time
    tags: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        extra = data.pop("extra")
        return {**extra, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CampaignSpec:
        known = {f.name for f in fields(cls)} - {"extra"}
        given = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(**given, extra=extra)


@dataclass(frozen=True)
class Campaign:
    id: int
    name: str
    state: CampaignState
    spec: CampaignSpec
    created: float
    updated: float
    send_at: float | None = None  # seconds since the epoch (UTC)
    started: float | None = None
    finished: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "state": self.state.value,
                "spec": self.spec.to_dict(), "created": self.created,
                "updated": self.updated, "send_at": self.send_at,
                "started": self.started, "finished": self.finished}
