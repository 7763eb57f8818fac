"""The bulk-mail records: contacts, lists, memberships with their consent, and the
suppression list.  Plain frozen values; ``to_dict()`` is the JSON shape the CLI and
the API publish."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class ContactStatus(enum.StrEnum):
    ACTIVE = "active"
    BLOCKED = "blocked"  # set by the operator: never mailed, whatever the lists say


class OptIn(enum.StrEnum):
    SINGLE = "single"  # subscribed at once
    DOUBLE = "double"  # subscribed once the confirmation link is followed


class MembershipStatus(enum.StrEnum):
    UNCONFIRMED = "unconfirmed"  # waiting for the double opt-in confirmation
    CONFIRMED = "confirmed"  # receives the list's mail
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


#: A membership in one of these is never revived by an import or a new subscription
#: through the API without an explicit status: the person said no, or the address failed.
ENDED = frozenset({MembershipStatus.UNSUBSCRIBED, MembershipStatus.BOUNCED,
                   MembershipStatus.COMPLAINED})


class SuppressionReason(enum.StrEnum):
    HARD_BOUNCE = "hard-bounce"
    SOFT_BOUNCES = "soft-bounces"  # soft_bounce_threshold within the window
    COMPLAINT = "complaint"
    MANUAL = "manual"


@dataclass(frozen=True)
class Consent:
    """The record of a subscription: when, from which address, through what
    ("form", "api", "import:FILE", "cli")."""

    at: float
    ip: str = ""
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "ip": self.ip, "source": self.source}


@dataclass(frozen=True)
class Contact:
    id: int
    address: str
    name: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    status: ContactStatus = ContactStatus.ACTIVE
    created: float = 0.0
    updated: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"address": self.address, "name": self.name, "attributes": self.attributes,
                "status": self.status.value, "created": self.created,
                "updated": self.updated}


@dataclass(frozen=True)
class MailingList:
    id: int
    name: str
    title: str = ""
    opt_in: OptIn = OptIn.SINGLE
    created: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)  # members by status

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "opt_in": self.opt_in.value,
                "created": self.created,
                "members": {s.value: self.counts.get(s.value, 0) for s in MembershipStatus}}


@dataclass(frozen=True)
class Membership:
    list_name: str
    address: str
    status: MembershipStatus
    consent: Consent | None = None
    confirmed: Consent | None = None  # when and from where the double opt-in was confirmed
    updated: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"list": self.list_name, "address": self.address, "status": self.status.value,
                "consent": self.consent.to_dict() if self.consent else None,
                "confirmed": self.confirmed.to_dict() if self.confirmed else None,
                "updated": self.updated}


@dataclass(frozen=True)
class Suppression:
    address: str  # "" once the person was erased (only the digest is kept)
    reason: SuppressionReason
    created: float
    note: str = ""
    id: int = 0  # a cursor for paging

    def to_dict(self) -> dict[str, Any]:
        return {"address": self.address or None, "reason": self.reason.value,
                "created": self.created, "note": self.note}
