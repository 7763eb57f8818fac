"""Contacts, lists, memberships and the suppression list: what ``mailyard contact``,
``mailyard list`` and the HTTP API do, in one place.

Every method is blocking (SQLite); the HTTP service runs them on its thread pool.
Nothing here sends mail: a subscription to a double opt-in list returns the
confirmation message (:class:`Subscribed.mail`) and the adapter hands it to ingest,
the one way into the queue.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from mailyard.bulk.addresses import InvalidAddress, normalise_address
from mailyard.bulk.confirmation import confirmation_message
from mailyard.bulk.export import write_csv
from mailyard.bulk.importer import (
    ImportAborted,
    ImportFormat,
    ImportRow,
    RowError,
    check_fields,
    line_reader,
    read_rows,
)
from mailyard.bulk.model import (
    ENDED,
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
from mailyard.bulk.store import ContactStore, StoreConflict
from mailyard.bulk.tokens import ExpiredToken, InvalidToken, sign, verify
from mailyard.services.errors import error

__all__ = ["ConfirmationMail", "Contacts", "ImportSummary", "Subscribed"]

BATCH = 2000  # rows per import transaction
REPORTED = 100  # invalid rows and duplicates listed in a summary (all are counted)
CONFIRM_PURPOSE = "confirm subscription"
# A link that renews a membership the person ended themselves; it names the time the
# link went out, so only the newest such link works, and only while still unsubscribed.
RESUBSCRIBE_PURPOSE = "confirm resubscription"
LIST_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_.")
# A new confirmation mail to an address still unconfirmed on a list goes out at most
# this often, however often the form is posted for it (from however many addresses).
RESEND_AFTER = 600.0


@dataclass
class ImportSummary:
    list_name: str
    rows: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    joined: int = 0  # contacts added to the list
    invalid: int = 0
    duplicates: int = 0
    errors: list[RowError] = field(default_factory=list)
    duplicate_lines: list[tuple[int, int]] = field(default_factory=list)  # (line, first)
    stopped: ImportAborted | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "list": self.list_name, "rows": self.rows, "new": self.new, "updated": self.updated,
            "unchanged": self.unchanged, "joined": self.joined, "invalid": self.invalid,
            "duplicates": self.duplicates,
            "invalid_rows": [e.to_dict() for e in self.errors],
            "duplicate_rows": [{"line": a, "first_line": b} for a, b in self.duplicate_lines],
            "stopped": ({"line": self.stopped.line, "reason": self.stopped.message}
                        if self.stopped else None),
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class ConfirmationMail:
    sender: str
    recipient: str
    content: bytes


@dataclass(frozen=True)
class Subscribed:
    membership: Membership | None  # None when nothing changed that the caller may see
    mail: ConfirmationMail | None = None


@dataclass(frozen=True)
class Settings:
    sender: str  # From of confirmation mail
    public_url: str  # base of the links in mail
    confirm_key: bytes  # HMAC key of confirmation tokens
    confirm_ttl: float
    hostname: str


class Contacts:
    def __init__(self, store: ContactStore, settings: Settings,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock

    # --- contacts ------------------------------------------------------------------
    def address(self, text: str) -> str:
        try:
            return normalise_address(text)
        except InvalidAddress as exc:
            raise error("invalid_address", str(exc)) from None

    def get(self, address: str) -> Contact:
        key = self.address(address)
        contact = self.store.get_contact(key)
        if contact is None:
            raise error("no_such_contact", f"no contact {key}")
        return contact

    def create(self, address: str, name: str = "",
               attributes: dict[str, Any] | None = None) -> Contact:
        key = self.address(address)
        attrs = attributes or {}
        self._check_fields(name, attrs)
        try:
            return self.store.add_contact(key, name.strip(), attrs, self.clock())
        except StoreConflict:
            raise error("contact_exists", f"{key} is already a contact") from None

    def update(self, address: str, *, name: str | None = None,
               attributes: dict[str, Any] | None = None,
               status: ContactStatus | None = None) -> Contact:
        """``attributes`` replaces the stored ones."""
        contact = self.get(address)
        self._check_fields(name, attributes or {})
        return self.store.update_contact(contact.id, name=name, attributes=attributes,
                                         status=status, now=self.clock())

    @staticmethod
    def _check_fields(name: str | None, attributes: dict[str, Any]) -> None:
        problem = check_fields(name, attributes)
        if problem:
            raise error("invalid_contact", problem)

    def page(self, *, list_name: str | None = None, after: int = 0,
             limit: int = 100) -> list[Contact]:
        list_id = self.get_list(list_name).id if list_name else None
        return list(self.store.contacts(list_id=list_id, after=after, limit=limit))

    def export_csv(self, out: IO[str], list_name: str | None = None) -> int:
        list_id = self.get_list(list_name).id if list_name else None
        names = self.store.attribute_names(list_id)
        return write_csv(out, self.store.contacts(list_id=list_id), names)

    def personal_data(self, address: str) -> dict[str, Any]:
        """Everything held on a person (GDPR art. 15): the contact, every membership with
        its consent record, a suppression, the events, the soft bounces and last
        delivery of transactional messages."""
        key = self.address(address)
        contact = self.store.get_contact(key)
        suppression = self.store.suppression(key)
        bounces = self.store.soft_bounces(key, 0.0)
        delivered = self.store.last_delivery(key)
        if contact is None and suppression is None and not bounces and delivered is None:
            raise error("no_such_contact", f"nothing is held on {key}")
        return {
            "address": key,
            "contact": contact.to_dict() if contact else None,
            "memberships": ([m.to_dict() for m in self.store.memberships_of(contact.id)]
                            if contact else []),
            "suppression": suppression.to_dict() if suppression else None,
            "events": self.store.events(contact.id) if contact else [],
            "soft_bounces": [{"message": m, "at": at} for m, at in bounces],
            "last_transactional_delivery": delivered,
        }

    def erase(self, address: str) -> dict[str, Any]:
        """Remove a person everywhere (GDPR art. 17): the contact, memberships, consent
        records and events.  A suppression entry keeps only the keyed digest of the
        address, so an address that bounced or complained is still never mailed."""
        key = self.address(address)
        contact = self.store.get_contact(key)
        suppression = self.store.suppression(key)
        if (contact is None and suppression is None and not self.store.soft_bounces(key, 0.0)
                and self.store.last_delivery(key) is None):
            raise error("no_such_contact", f"nothing is held on {key}")
        self.store.erase(key)
        return {"address": key, "erased": True,
                "suppression_kept_as_digest": suppression is not None}

    # --- import --------------------------------------------------------------------
    def import_contacts(self, stream: IO[bytes], fmt: ImportFormat, list_name: str, *,
                        encoding: str = "utf-8", source: str = "import", ip: str = "",
                        status: MembershipStatus = MembershipStatus.CONFIRMED,
                        progress: Callable[[int], None] | None = None) -> ImportSummary:
        """Read the rows, merge them into the contacts in batches, add them to the list.
        A contact already on the list keeps its membership (an unsubscribed one stays
        unsubscribed).  ``progress`` is called with the bytes read after each batch."""
        started = time.monotonic()
        mlist = self.get_list(list_name)
        summary = ImportSummary(mlist.name)
        consent = Consent(self.clock(), ip, source)
        lines = line_reader(stream, encoding)
        try:
            rows = read_rows(stream, fmt, encoding, lines)
        except LookupError:
            raise error("invalid_import", f"unknown encoding {encoding!r}") from None
        seen: dict[str, int] = {}
        batch: list[ImportRow] = []
        try:
            for row in rows:
                summary.rows += 1
                if isinstance(row, RowError):
                    summary.invalid += 1
                    if len(summary.errors) < REPORTED:
                        summary.errors.append(row)
                    continue
                first = seen.setdefault(row.address, row.line)
                if first != row.line:
                    summary.duplicates += 1
                    if len(summary.duplicate_lines) < REPORTED:
                        summary.duplicate_lines.append((row.line, first))
                    continue
                batch.append(row)
                if len(batch) >= BATCH:
                    self._flush(batch, mlist, status, consent, summary)
                    if progress:
                        progress(lines.bytes_read)
        except ImportAborted as exc:
            summary.stopped = exc
        self._flush(batch, mlist, status, consent, summary)
        if progress:
            progress(lines.bytes_read)
        summary.seconds = time.monotonic() - started
        return summary

    def _flush(self, batch: list[ImportRow], mlist: MailingList, status: MembershipStatus,
               consent: Consent, summary: ImportSummary) -> None:
        if not batch:
            return
        result = self.store.import_batch(batch, mlist.id, status, consent)
        summary.new += result.new
        summary.updated += result.updated
        summary.unchanged += result.unchanged
        summary.joined += result.joined
        batch.clear()

    # --- lists ---------------------------------------------------------------------
    def create_list(self, name: str, title: str = "", opt_in: OptIn = OptIn.SINGLE
                    ) -> MailingList:
        key = name.strip().lower()
        if not key or len(key) > 64 or not set(key) <= LIST_NAME_CHARS:
            raise error("invalid_list", f"bad list name {name!r}: 1-64 of a-z 0-9 - _ .")
        problem = check_fields(title, {})
        if problem:
            raise error("invalid_list", problem.replace("name", "title"))
        try:
            return self.store.add_list(key, title.strip() or key, opt_in, self.clock())
        except StoreConflict:
            raise error("list_exists", f"list {key} exists") from None

    def get_list(self, name: str) -> MailingList:
        found = self.store.get_list(name.strip().lower())
        if found is None:
            raise error("no_such_list", f"no list {name!r}")
        return found

    def lists(self) -> list[MailingList]:
        return self.store.lists()

    # --- memberships ---------------------------------------------------------------
    def members(self, list_name: str, *, status: MembershipStatus | None = None,
                after: int = 0, limit: int = 100) -> list[tuple[int, Membership]]:
        return self.store.members(self.get_list(list_name).id, status=status, after=after,
                                  limit=limit)

    def set_member(self, list_name: str, address: str, status: MembershipStatus,
                   consent: Consent) -> Membership:
        """Add a contact (created when new) to a list, or change its status (the
        operator's decision: an ended membership may be revived this way)."""
        mlist = self.get_list(list_name)
        contact = self._contact_for(address)
        confirmed = consent if status is MembershipStatus.CONFIRMED else None
        existing = self.store.membership(mlist.id, contact.id)
        return self.store.set_membership(mlist.id, contact.id, status,
                                         consent=None if existing else consent,
                                         confirmed=confirmed, now=self.clock())

    def remove_member(self, list_name: str, address: str) -> None:
        mlist = self.get_list(list_name)
        contact = self.get(address)
        if not self.store.remove_membership(mlist.id, contact.id):
            raise error("no_such_membership", f"{contact.address} is not on {mlist.name}")

    def _contact_for(self, address: str) -> Contact:
        key = self.address(address)
        contact = self.store.get_contact(key)
        if contact is None:
            try:
                contact = self.store.add_contact(key, "", {}, self.clock())
            except StoreConflict:  # created meanwhile by another process
                contact = self.store.get_contact(key)
        assert contact is not None
        return contact

    # --- the public subscribe form and the confirmation link ------------------------
    def subscribe(self, list_name: str, address: str, name: str, consent: Consent
                  ) -> Subscribed:
        """A person asks to join a list.  Single opt-in: confirmed at once.  Double:
        unconfirmed, and a confirmation mail to send.

        Someone who unsubscribed gets a confirmation mail whatever the list's opt-in
        (anyone can type an address into the form, and a person who left must not be
        put back by a stranger); the membership stays ``unsubscribed`` until its link
        is followed.  A complained or bounced membership, a suppressed address (hard
        bounce, soft bounces, complaint, manual) or a blocked contact is never
        revived by the form: only the operator can do that.  Every case gets the same
        answer, and when nothing is done no mail goes out: the answer must not tell
        strangers who is on a list."""
        mlist = self.get_list(list_name)
        key = self.address(address)
        self._check_fields(name, {})
        if self.store.suppression(key) is not None:
            return Subscribed(None)
        contact = self._contact_for(key)
        if name.strip() and not contact.name:
            contact = self.store.update_contact(contact.id, name=name.strip(),
                                                now=self.clock())
        if contact.status is ContactStatus.BLOCKED:
            return Subscribed(None)
        existing = self.store.membership(mlist.id, contact.id)
        if existing is not None and existing.status is MembershipStatus.UNSUBSCRIBED:
            return self._resubscribe(mlist, contact, existing)
        if existing is not None and (existing.status in ENDED
                                     or existing.status is MembershipStatus.CONFIRMED):
            return Subscribed(None)
        if (existing is not None and mlist.opt_in is OptIn.DOUBLE
                and self.clock() - existing.updated < RESEND_AFTER):
            return Subscribed(None)  # a confirmation went out moments ago
        if mlist.opt_in is OptIn.SINGLE:
            member = self.store.set_membership(mlist.id, contact.id, MembershipStatus.CONFIRMED,
                                               consent=consent, now=self.clock())
            return Subscribed(member)
        member = self.store.set_membership(mlist.id, contact.id, MembershipStatus.UNCONFIRMED,
                                           consent=consent, now=self.clock())
        return Subscribed(member, self._confirmation(mlist, contact))

    def confirmation_not_sent(self, list_name: str, address: str) -> None:
        """The confirmation mail :meth:`subscribe` asked for could not be queued (a
        full disk): the membership's time is set back past RESEND_AFTER, so that the
        same request once space is freed sends one instead of being taken for a
        repeat.  Raises ServiceError, sqlite3.Error."""
        mlist = self.get_list(list_name)
        contact = self.store.get_contact(self.address(address))
        member = None if contact is None else self.store.membership(mlist.id, contact.id)
        if contact is None or member is None or member.status not in (
                MembershipStatus.UNCONFIRMED, MembershipStatus.UNSUBSCRIBED):
            return
        self.store.set_membership(mlist.id, contact.id, member.status,
                                  now=member.updated - RESEND_AFTER)

    def _resubscribe(self, mlist: MailingList, contact: Contact, existing: Membership
                     ) -> Subscribed:
        """A confirmation mail for someone who unsubscribed (at most every
        RESEND_AFTER); the membership's time marks which link is the valid one."""
        now = self.clock()
        if now - existing.updated < RESEND_AFTER:
            return Subscribed(None)
        member = self.store.set_membership(mlist.id, contact.id,
                                           MembershipStatus.UNSUBSCRIBED, now=now)
        renew = _millis(member.updated)
        return Subscribed(None, self._confirmation(mlist, contact, renew=renew))

    def _confirmation(self, mlist: MailingList, contact: Contact, renew: int | None = None
                      ) -> ConfirmationMail:
        s = self.settings
        expires = int(self.clock() + s.confirm_ttl)
        if renew is None:
            token = sign(s.confirm_key, CONFIRM_PURPOSE, (mlist.id, contact.id), expires)
        else:
            token = sign(s.confirm_key, RESUBSCRIBE_PURPOSE, (mlist.id, contact.id, renew),
                         expires)
        link = f"{s.public_url.rstrip('/')}/confirm/{token}"
        content = confirmation_message(
            sender=s.sender, to=contact.address, to_name=contact.name,
            list_title=mlist.title or mlist.name, link=link, hostname=s.hostname,
            valid_hours=max(1, int(s.confirm_ttl // 3600)))
        return ConfirmationMail(s.sender, contact.address, content)

    def pending_confirmation(self, token: str) -> tuple[MailingList, Contact, Membership]:
        """What a confirmation link is for; raises no_such_token / token_expired."""
        mlist, contact, member, _ = self._pending(token)
        return mlist, contact, member

    def _pending(self, token: str) -> tuple[MailingList, Contact, Membership, bool]:
        """The list, contact and membership of a link, and whether it renews an
        unsubscribed membership."""
        fields: tuple[int, ...] = ()
        for purpose, count in ((CONFIRM_PURPOSE, 2), (RESUBSCRIBE_PURPOSE, 3)):
            try:
                fields = verify(self.settings.confirm_key, purpose, token, self.clock())
            except ExpiredToken:
                raise error("token_expired", "this confirmation link has expired; "
                                             "subscribe again to get a new one") from None
            except InvalidToken:
                continue
            if len(fields) == count:
                break
            fields = ()
        if not fields:
            raise error("no_such_token", "no such confirmation link")
        mlist = self.store.get_list_by_id(fields[0])
        contact = self.store.get_contact_by_id(fields[1])
        member = (self.store.membership(fields[0], fields[1])
                  if mlist is not None and contact is not None else None)
        if mlist is None or contact is None or member is None:
            raise error("no_such_token", "no such confirmation link")
        renew = len(fields) == 3
        if (renew and member.status is MembershipStatus.UNSUBSCRIBED
                and _millis(member.updated) != fields[2]):
            raise error("no_such_token", "this link was replaced by a newer one")
        return mlist, contact, member, renew

    def confirm(self, token: str, consent: Consent) -> Membership:
        """Follow a confirmation link: unconfirmed -> confirmed, with when and from where;
        a renewal link: unsubscribed -> confirmed, the link's use being the new consent
        (unless the address was suppressed meanwhile).  A membership that was confirmed
        already stays as it is, an ended one too."""
        mlist, contact, member, renew = self._pending(token)
        if renew and member.status is MembershipStatus.UNSUBSCRIBED:
            if self.store.suppression(contact.address) is not None:
                return member
            return self.store.set_membership(mlist.id, contact.id,
                                             MembershipStatus.CONFIRMED, consent=consent,
                                             confirmed=consent, now=self.clock())
        if member.status is not MembershipStatus.UNCONFIRMED:
            return member
        return self.store.set_membership(mlist.id, contact.id, MembershipStatus.CONFIRMED,
                                         confirmed=consent, now=self.clock())

    # --- suppression ---------------------------------------------------------------
    def suppress(self, address: str, reason: SuppressionReason = SuppressionReason.MANUAL,
                 note: str = "") -> Suppression:
        key = self.address(address)
        problem = check_fields(note, {})
        if problem:
            raise error("invalid_contact", problem.replace("name", "note"))
        return self.store.suppress(key, reason, note, self.clock())

    def unsuppress(self, address: str) -> None:
        key = self.address(address)
        if not self.store.unsuppress(key):
            raise error("no_such_suppression", f"{key} is not suppressed")

    def suppression(self, address: str) -> Suppression:
        key = self.address(address)
        found = self.store.suppression(key)
        if found is None:
            raise error("no_such_suppression", f"{key} is not suppressed")
        return found

    def suppressions(self, *, after: int = 0, limit: int = 100) -> list[Suppression]:
        return self.store.suppressions(after=after, limit=limit)

    def iter_all(self) -> Iterator[Contact]:
        return self.store.contacts()


def _millis(at: float) -> int:
    """A membership's time as it goes into a renewal link."""
    return int(at * 1000)
