"""The storage interface of contacts, lists, memberships and suppressions.

The services (:mod:`mailyard.services.contacts`) speak only to this protocol; the
embedded implementation is :class:`mailyard.bulk.sqlite.SqliteContactStore`, a
PostgreSQL one would be another class.  The methods are blocking: the HTTP service
calls them on its thread pool.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mailyard.bulk.importer import ImportRow
from mailyard.bulk.model import (
    Consent,
    Contact,
    ContactStatus,
    MailingList,
    Membership,
    MembershipStatus,
    OptIn,
    Suppression,
    SuppressionReason,
)


class StoreConflict(Exception):
    """A unique name or address is taken."""


@dataclass(frozen=True)
class BatchResult:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    joined: int = 0  # memberships created in the list


class ContactStore(Protocol):
    # --- contacts ----------------------------------------------------------------
    def get_contact(self, address: str) -> Contact | None: ...

    def get_contact_by_id(self, contact_id: int) -> Contact | None: ...

    def contacts(self, *, list_id: int | None = None, after: int = 0,
                 limit: int | None = None) -> Iterator[Contact]:
        """Contacts by id (all, or the members of one list), from after ``after``."""
        ...

    def attribute_names(self, list_id: int | None = None) -> list[str]: ...

    def add_contact(self, address: str, name: str, attributes: dict[str, Any],
                    now: float) -> Contact:
        """Raises StoreConflict when the address exists."""
        ...

    def update_contact(self, contact_id: int, *, name: str | None = None,
                       attributes: dict[str, Any] | None = None,
                       status: ContactStatus | None = None, now: float) -> Contact: ...

    def import_batch(self, rows: Sequence[ImportRow], list_id: int,
                     status: MembershipStatus, consent: Consent) -> BatchResult:
        """Insert or merge the contacts (unique addresses) in one transaction and add
        the new memberships; an existing membership is left as it is."""
        ...

    def erase(self, address: str) -> None:
        """The contact, its memberships and events, in one transaction; a suppression
        keeps only the digest of the address."""
        ...

    def events(self, contact_id: int) -> list[dict[str, Any]]: ...

    # --- lists -------------------------------------------------------------------
    def add_list(self, name: str, title: str, opt_in: OptIn, now: float) -> MailingList: ...

    def get_list(self, name: str) -> MailingList | None: ...

    def get_list_by_id(self, list_id: int) -> MailingList | None: ...

    def lists(self) -> list[MailingList]: ...

    # --- memberships -------------------------------------------------------------
    def membership(self, list_id: int, contact_id: int) -> Membership | None: ...

    def memberships_of(self, contact_id: int) -> list[Membership]: ...

    def members(self, list_id: int, *, status: MembershipStatus | None = None,
                after: int = 0, limit: int = 100) -> list[tuple[int, Membership]]:
        """(contact id, membership), by contact id."""
        ...

    def set_membership(self, list_id: int, contact_id: int, status: MembershipStatus, *,
                       consent: Consent | None = None, confirmed: Consent | None = None,
                       now: float) -> Membership:
        """Create or change; ``consent``/``confirmed`` replace the stored record only
        when given."""
        ...

    def end_memberships(self, contact_id: int, list_ids: Sequence[int],
                        status: MembershipStatus, record: Consent, now: float) -> list[int]:
        """Moves the contact's confirmed or unconfirmed memberships of ``list_ids`` to
        ``status`` (one of ``ENDED``) and keeps ``record`` (when, from which address,
        through what) among the contact's events, in one transaction; returns the ids
        of the lists that changed (an ended membership stays as it was)."""
        ...

    def remove_membership(self, list_id: int, contact_id: int) -> bool: ...

    # --- suppression -------------------------------------------------------------
    def suppress(self, address: str, reason: SuppressionReason, note: str,
                 now: float) -> Suppression: ...

    def unsuppress(self, address: str) -> bool: ...

    def suppression(self, address: str) -> Suppression | None: ...

    def suppressions(self, *, after: int = 0, limit: int = 100) -> list[Suppression]:
        """By ``Suppression.id``, from after ``after``."""
        ...

    # --- soft bounces and deliveries of transactional messages -----------------------
    # Kept by address (a keyed digest, as suppressions), since a transactional
    # message's recipient need not be a contact; erased with the person.
    def add_soft_bounce(self, address: str, message: str, at: float) -> None:
        """One soft bounce of ``message`` (a key naming it); the same message again
        is ignored (a delay warning and the final failure count once)."""
        ...

    def soft_bounces(self, address: str, since: float) -> list[tuple[str, float]]:
        """(message, at) of the address's soft bounces after ``since``."""
        ...

    def add_deliveries(self, addresses: Sequence[str], at: float) -> None:
        """A transactional message was delivered to each address at ``at``."""
        ...

    def last_delivery(self, address: str) -> float | None: ...

    def prune_address_history(self, before: float) -> int:
        """Forget soft bounces and deliveries older than ``before``; how many."""
        ...
