"""Who may send what through which listener: the MAIL and RCPT decisions.

* ``smtp`` (port 25, MX): anyone may send, but only to recipients in our local
  domains that exist (554 5.7.1 relay denied / 550 5.1.1 unknown user); no AUTH.
* ``submission`` (587) and ``submissions`` (465): STARTTLS (587) and then AUTH are
  required before MAIL (RFC 6409 4.3, RFC 8314); an authenticated user may send to
  anyone, but only from an address the directory says they own (553 5.7.1).

Every kind refuses MAIL with 452 4.3.1 when the spool's free space is below
``smtpd.min_free_disk`` (the free space is sampled at most once a second).
"""

from __future__ import annotations

import time
from typing import Callable

from mailyard.config import Config
from mailyard.directory.api import Directory, DirectoryError
from mailyard.envelope import split_address
from mailyard.proto.smtp.replies import (
    REPLY_AUTH_REQUIRED,
    REPLY_DISK_FULL,
    REPLY_MUST_STARTTLS,
    REPLY_RELAY_DENIED,
    REPLY_SENDER_NOT_OWNED,
    REPLY_TEMP_LOOKUP,
    REPLY_UNKNOWN_USER,
    Reply,
)
from mailyard.proto.smtp.session import Session
from mailyard.queue.api import Spool

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


class ListenerPolicy:
    """MAIL/RCPT decisions for one listener kind.  Methods return the refusal, or
    None to accept."""

    def __init__(self, kind: str, config: Config, directory: Directory,
                 free_space: FreeSpaceGauge) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown listener kind {kind!r}")
        self.kind = kind
        self.submission = kind != "smtp"
        self.config = config
        self.directory = directory
        self.free_space = free_space

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

    def check_rcpt(self, session: Session, address: str) -> Reply | None:
        local, domain = split_address(address)
        if not domain:  # RCPT TO:<postmaster> (RFC 5321 4.1.1.3) always exists
            return None
        try:
            if not self.directory.is_local_domain(domain):
                if self.submission or self.config.is_relay_domain(domain):
                    return None
                return REPLY_RELAY_DENIED
            if not self.directory.recipient_exists(address):
                return REPLY_UNKNOWN_USER
        except DirectoryError:
            return REPLY_TEMP_LOOKUP
        return None

    def postmaster_address(self, address: str) -> str:
        """``<postmaster>`` without a domain means postmaster of our primary domain."""
        if "@" in address:
            return address
        domain = self.config.local_domains[0] if self.config.local_domains else self.config.hostname
        return f"{address}@{domain}"
