"""Who may send what through which listener: the MAIL and RCPT decisions.

* ``smtp`` (port 25, MX): anyone may send, but only to recipients in our local
  domains that exist (554 5.7.1 relay denied / 550 5.1.1 unknown user); no AUTH.
* ``submission`` (587) and ``submissions`` (465): STARTTLS (587) and then AUTH are
  required before MAIL (RFC 6409 4.3, RFC 8314); an authenticated user may send to
  anyone, but only from an address the directory says they own (553 5.7.1); not to
  address literals unless ``smtpd.submission_allow_address_literals``, and never to
  literals of loopback, private or link-local addresses (550 5.7.1).

At the end of the content (every kind), the header section is checked: a
``Delivered-To:`` naming an accepted local recipient means the message has been
delivered here before and is looping (554 5.4.6, refused in session so no bounce
goes to a possibly forged sender); on submission with
``smtpd.require_header_from_match``, every ``From:`` address must be owned by the
login user (550 5.7.1).

On submission, the sending limits (:mod:`mailyard.sending.limiter`) are read at MAIL
in a thread (:meth:`Policy.sending_allowance`); a user or domain at its message limit
gets 451 4.7.0 there, one at its recipient limit 451 4.7.0 at the RCPT that would go
over it; the accepted message is counted after its 250 (:meth:`Policy.message_sent`).

A recipient whose mailboxes are all over quota is refused with 552 5.2.2 after the
checks above (:mod:`mailyard.smtpd.quota`; the usage may be read in a thread).

The feedback addresses of bulk mail (:mod:`mailyard.feedback.addresses`:
``bounces+<token>``, ``unsubscribe+<token>`` and the complaint address at the bounce
domain) are accepted on every listener without a directory lookup when the token
verifies, and refused with 550 5.1.1 when it does not (a forged bounce must not
reach the feedback agent, which would suppress a contact).

On ``smtp``, an accepted MAIL FROM is also checked with SPF (RFC 7208; see
:mod:`mailyard.smtpd.spf` and ``[spf]``): a ``fail`` is refused with 550 5.7.23 by
default, and every result is kept on the transaction for Authentication-Results.

Every kind refuses MAIL with 452 4.3.1 when the spool's free space is below
``smtpd.min_free_disk`` (the free space is sampled at most once a second).

AUTH and VRFY are decided here too (the session only relays the answers): PLAIN and
LOGIN passwords are checked within the AUTH guard's limits
(:mod:`mailyard.smtpd.authguard`), SCRAM credentials are looked up after the guard
admits the attempt, and VRFY answers for addresses in our local domains only.

:class:`Policy` is what a session sees; :class:`ListenerPolicy` implements it.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Protocol

from mailyard.config import Config
from mailyard.directory.addresses import address_key, base_address
from mailyard.directory.api import Directory, DirectoryError, ScramCredentials
from mailyard.envelope import Recipient, split_address
from mailyard.feedback.addresses import FeedbackAddresses
from mailyard.message.headerblock import HeaderSummary
from mailyard.obs import log_event
from mailyard.proto.smtp.replies import (
    REPLY_ADDRESS_LITERAL_DENIED,
    REPLY_AUTH_REQUIRED,
    REPLY_AUTH_TEMP,
    REPLY_DELIVERED_TO_LOOP,
    REPLY_DISK_FULL,
    REPLY_HEADER_FROM_NOT_OWNED,
    REPLY_MUST_STARTTLS,
    REPLY_RELAY_DENIED,
    REPLY_SENDER_NOT_OWNED,
    REPLY_TEMP_LOOKUP,
    REPLY_UNKNOWN_USER,
    Reply,
)
from mailyard.proto.smtp.session import Session
from mailyard.queue.api import Spool
from mailyard.sending.limiter import SendAllowance, ThreadedSendLimiter
from mailyard.smtpd.authguard import AuthGate
from mailyard.smtpd.quota import QuotaVerdict, RcptQuota
from mailyard.smtpd.spf import SenderVerdict, SpfCheck, SpfVerdict
from mailyard.srs import Srs, is_srs

log = logging.getLogger("mailyard.smtpd")

KINDS = ("smtp", "submission", "submissions")
FREE_SPACE_TTL = 1.0


class FreeSpaceGauge:
    """``spool.free_bytes()``, cached for a second (it is asked at every MAIL)."""

    def __init__(self, spool: Spool, clock: Callable[[], float] = time.monotonic) -> None:
        self._spool = spool
        self._clock = clock
        self._value = 0
        self._checked = float("-inf")

    def free_bytes(self) -> int:
        now = self._clock()
        if now - self._checked >= FREE_SPACE_TTL:
            self._value = self._spool.free_bytes()
            self._checked = now
        return self._value


class Policy(Protocol):
    """The decisions a session asks for.  Each returns the refusal, or None to accept
    (VRFY: a positive reply, a refusal, or None for "cannot verify")."""

    kind: str
    submission: bool

    def check_mail(self, session: Session, sender: str) -> Reply | None: ...

    def wants_sender_check(self, ip: str) -> bool:
        """Does MAIL FROM from ``ip`` go through :meth:`check_sender` (SPF)?"""
        ...

    def check_sender(self, ip: str, helo: str, sender: str) -> SenderVerdict:
        """Sender authentication at MAIL FROM, after :meth:`check_mail` accepted: the
        verdict at once (the results are remembered) or a coroutine to await."""
        ...

    def check_rcpt(self, session: Session, address: str) -> Reply | None: ...

    def check_quota(self, address: str, size: int | None) -> QuotaVerdict:
        """After :meth:`check_rcpt` accepted ``address``: its mailbox quota (552
        5.2.2), at once or as a coroutine to await (the usage is read in a thread)."""
        ...

    def sending_allowance(self, session: Session
                          ) -> Coroutine[Any, Any, SendAllowance | None] | None:
        """After :meth:`check_mail` accepted: the sender's sending limits and usage,
        to await (None: no limits on this listener)."""
        ...

    async def message_sent(self, allowance: SendAllowance, recipients: int) -> None:
        """A message of a limited sender was accepted: count it."""
        ...

    def postmaster_address(self, address: str) -> str: ...

    def check_content(self, session: Session, recipients: Iterable[Recipient],
                      header: HeaderSummary) -> Reply | None: ...

    def vrfy(self, argument: str) -> Reply | None: ...

    async def verify_password(self, ip: str, username: str, password: str,
                              still_wanted: Callable[[], bool]) -> Reply | None: ...

    async def scram_lookup(self, ip: str, username: str) -> Reply | ScramCredentials | None:
        """A refusal, or the user's credentials (None: unknown, the core uses decoys)."""
        ...

    async def auth_finished(self, ip: str, username: str, success: bool) -> None:
        """A SCRAM exchange ended (PLAIN/LOGIN are counted by ``verify_password``)."""
        ...


class ListenerPolicy:
    """MAIL/RCPT decisions for one listener kind.  Methods return the refusal, or
    None to accept."""

    def __init__(self, kind: str, config: Config, directory: Directory,
                 free_space: FreeSpaceGauge, auth_gate: AuthGate | None = None,
                 quota: RcptQuota | None = None,
                 sending: ThreadedSendLimiter | None = None,
                 spf: SpfCheck | None = None,
                 srs: Callable[[], Srs] | None = None,
                 feedback: FeedbackAddresses | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown listener kind {kind!r}")
        self.kind = kind
        self.submission = kind != "smtp"
        self.config = config
        self.directory = directory
        self.free_space = free_space
        self.auth_gate = auth_gate
        self.quota = quota
        self.sending = sending if self.submission else None
        # SPF is for mail from other servers: port 25 only (RFC 7208 2.3, 2.4).
        self.spf = spf if kind == "smtp" else None
        self.srs = srs  # bounces to our SRS addresses are accepted (``[forwarding] srs``)
        self.feedback = feedback  # bounces+<token>, unsubscribe+<token>, the complaint address

    def check_mail(self, session: Session, sender: str) -> Reply | None:
        """MAIL starts a transaction: the directory lookups from here to its end see
        the directory as it is now (one freshness check, not one per RCPT)."""
        try:
            self.directory.refresh()
        except DirectoryError:
            return REPLY_TEMP_LOOKUP
        if self.submission:
            if not session.tls:
                return REPLY_MUST_STARTTLS
            if not session.auth_user:
                return REPLY_AUTH_REQUIRED
        if self.free_space.free_bytes() < self.config.smtpd.min_free_disk:
            return REPLY_DISK_FULL
        if self.submission:
            try:
                if not self.directory.may_send_from(session.auth_user, sender):
                    return REPLY_SENDER_NOT_OWNED
            except DirectoryError:
                return REPLY_TEMP_LOOKUP
        return None

    def wants_sender_check(self, ip: str) -> bool:
        return self.spf is not None and self.spf.applies(ip)

    def check_sender(self, ip: str, helo: str, sender: str) -> SenderVerdict:
        if self.spf is None:
            return SpfVerdict(None)
        return self.spf.known(ip, helo, sender) or self.spf.check(ip, helo, sender)

    def check_rcpt(self, session: Session, address: str) -> Reply | None:
        _local, domain = split_address(address)
        if not domain:  # RCPT TO:<postmaster> (RFC 5321 4.1.1.3) always exists
            return None
        if self.feedback is not None and domain in self.feedback.domains:
            where = self.feedback.match(address)
            if where is not None:  # the token decides, whatever the directory holds
                return None if where.valid else REPLY_UNKNOWN_USER
        try:
            if not self.directory.is_local_domain(domain):
                if self.submission:
                    return self._check_literal(domain)
                if self.config.is_relay_domain(domain):
                    return None
                return REPLY_RELAY_DENIED
            if not self.directory.recipient_exists(address) and not self._srs_bounce(address):
                return REPLY_UNKNOWN_USER
        except DirectoryError:
            return REPLY_TEMP_LOOKUP
        return None

    def check_quota(self, address: str, size: int | None) -> QuotaVerdict:
        if self.quota is None:
            return None
        _local, domain = split_address(address)
        try:
            if not domain or not self.directory.is_local_domain(domain):
                return None
        except DirectoryError:
            return None  # local delivery checks again
        return self.quota.check(address, size)

    def _srs_bounce(self, address: str) -> bool:
        """An SRS address of ours, on port 25, that reverses (valid hash, not expired):
        ingest turns it back into the original sender."""
        if self.srs is None or self.submission or not is_srs(address):
            return False
        return isinstance(self.srs().reverse(address, time.time()), str)

    def sending_allowance(self, session: Session
                          ) -> Coroutine[Any, Any, SendAllowance | None] | None:
        if self.sending is None or not session.auth_user:
            return None
        return self.sending.allowance(session.auth_user)

    async def message_sent(self, allowance: SendAllowance, recipients: int) -> None:
        if self.sending is not None:
            await self.sending.record(allowance.user, recipients)

    def _check_literal(self, domain: str) -> Reply | None:
        """Submission to ``user@[address]`` (RFC 5321 4.1.3)."""
        if not domain.startswith("["):
            return None
        if not self.config.smtpd.submission_allow_address_literals:
            return REPLY_ADDRESS_LITERAL_DENIED
        text = domain[1:-1] if domain.endswith("]") else domain[1:]
        if text[:5].lower() == "ipv6:":
            text = text[5:]
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            return REPLY_ADDRESS_LITERAL_DENIED
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return None if ip.is_global and not ip.is_multicast else REPLY_ADDRESS_LITERAL_DENIED

    def check_content(self, session: Session, recipients: Iterable[Recipient],
                      header: HeaderSummary) -> Reply | None:
        """End of DATA/BDAT, before the message is committed: the header checks."""
        try:
            if header.delivered_to and self._looped(recipients, header.delivered_to):
                return REPLY_DELIVERED_TO_LOOP
            if self.submission and self.config.smtpd.require_header_from_match:
                return self._check_header_from(session.auth_user, header)
        except DirectoryError:
            return REPLY_TEMP_LOOKUP
        return None

    def _looped(self, recipients: Iterable[Recipient], delivered_to: frozenset[str]) -> bool:
        """Does a ``Delivered-To:`` name a local recipient (its key, or without its
        +tag), or every mailbox the recipient goes to?  Local delivery would refuse
        the latter as a loop (554 5.4.6) and bounce it."""
        for recipient in recipients:
            _local, domain = split_address(recipient.address)
            if not domain or not self.directory.is_local_domain(domain):
                continue
            key = address_key(recipient.address)
            if key in delivered_to or base_address(key) in delivered_to:
                return True
            mailboxes = self.directory.resolve(recipient.address).mailboxes
            if mailboxes and delivered_to.issuperset(mailboxes):
                return True
        return False

    def _check_header_from(self, user: str, header: HeaderSummary) -> Reply | None:
        """RFC 5322 3.6.2 From: every address in it must be the user's own (the same
        ownership rule as MAIL FROM); a message without one is refused too."""
        if not header.from_addresses:
            return REPLY_HEADER_FROM_NOT_OWNED
        for address in header.from_addresses:
            if not self.directory.may_send_from(user, address):
                return REPLY_HEADER_FROM_NOT_OWNED
        return None

    def postmaster_address(self, address: str) -> str:
        """``<postmaster>`` without a domain (RFC 5321 4.1.1.3, 4.5.1, any case) means
        postmaster of our primary domain: the first of ``local_domains``, else the
        first domain in the directory; ``hostname`` when there is none."""
        if "@" in address:
            return address
        domain = self.config.local_domains[0] if self.config.local_domains else ""
        if not domain:
            try:
                domain = self.directory.primary_domain() or ""
            except DirectoryError:
                domain = ""
        return f"{address}@{domain or self.config.hostname}"

    # --- VRFY and AUTH ------------------------------------------------------------

    def vrfy(self, argument: str) -> Reply | None:
        """RFC 5321 3.5.3: 250 for an existing local recipient, 550 for an unknown one
        in a local domain, None ("cannot verify") for anything else."""
        address = argument.strip().strip("<>")
        _local, domain = split_address(address)
        try:
            self.directory.refresh()
            if domain and self.directory.is_local_domain(domain):
                if self.directory.recipient_exists(address):
                    return Reply(250, "2.1.5", f"<{address}>")
                return REPLY_UNKNOWN_USER
        except DirectoryError:
            return REPLY_TEMP_LOOKUP
        return None

    def _gate(self) -> AuthGate:
        if self.auth_gate is None:
            raise RuntimeError(f"no AUTH guard on the {self.kind} listener")
        return self.auth_gate

    async def verify_password(self, ip: str, username: str, password: str,
                              still_wanted: Callable[[], bool]) -> Reply | None:
        """PLAIN/LOGIN: within the AUTH guard's limits (mailyard.smtpd.authguard)."""
        try:
            return await self._gate().verify(
                ip, username,
                functools.partial(self.directory.verify_password, username, password),
                still_wanted)
        except DirectoryError as exc:
            log_event(log, "password check failed", level=logging.ERROR, error=str(exc))
            return REPLY_AUTH_TEMP

    async def scram_lookup(self, ip: str, username: str) -> Reply | ScramCredentials | None:
        refusal = await self._gate().admit(ip, username)
        if refusal is not None:
            return refusal
        try:
            return self.directory.scram_credentials(username)
        except DirectoryError:
            return REPLY_AUTH_TEMP

    async def auth_finished(self, ip: str, username: str, success: bool) -> None:
        await self._gate().record(ip, username, success)
