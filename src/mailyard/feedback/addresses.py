"""Which envelope addresses are feedback addresses, and what they name.

Three kinds of address at the bounce domain receive what comes back from bulk and
transactional mail instead of a mailbox:

- ``<bounce_prefix>+<token>@<bounce_domain>``: the VERP envelope sender, so delivery
  status notifications (and some providers' complaint reports) come here;
- ``<unsubscribe_prefix>+<token>@<bounce_domain>``: the mailto ``List-Unsubscribe``
  address, the same token (RFC 2369 3.2);
- the complaint address (``bulk.complaint_address``, default ``fbl@<bounce_domain>``)
  given to providers' feedback loops.

:meth:`FeedbackAddresses.match` tells the three apart and verifies the token: the
smtpd policy refuses a bad token at RCPT, the dispatcher routes a good one to the
feedback agent.  :meth:`FeedbackAddresses.sender_target` reads the token of an envelope
sender with a cheap prefix test first, so mail from anyone else costs one string
comparison.  The key is asked for only when a token is to be verified (it is derived
from the server secret, a file read).

Pure: no I/O beyond the key function the caller passes.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from dataclasses import dataclass

from mailyard.feedback.verp import DEFAULT_PREFIX, DELIMITER, VerpTarget, parse_verp_address

DEFAULT_COMPLAINT_LOCAL = "fbl"
DEFAULT_UNSUBSCRIBE_PREFIX = "unsubscribe"


class FeedbackKind(enum.StrEnum):
    BOUNCE = "bounce"  # bounces+<token>: DSNs, text bounces, auto-replies
    UNSUBSCRIBE = "unsubscribe"  # unsubscribe+<token>: a mailto unsubscribe request
    COMPLAINT = "complaint"  # the feedback-loop address: ARF reports


@dataclass(frozen=True)
class FeedbackAddress:
    """A recipient that is one of ours.  ``target`` is None for a bounce or
    unsubscribe address whose token does not verify (forged, damaged), and always for
    the complaint address (its reports name their target inside)."""

    kind: FeedbackKind
    target: VerpTarget | None

    @property
    def valid(self) -> bool:
        return self.kind is FeedbackKind.COMPLAINT or self.target is not None


class FeedbackAddresses:
    def __init__(self, domain: str, key: Callable[[], bytes], *,
                 bounce_prefix: str = DEFAULT_PREFIX,
                 unsubscribe_prefix: str = DEFAULT_UNSUBSCRIBE_PREFIX,
                 complaint_address: str = "") -> None:
        self.domain = domain.lower()
        self._key = functools.cache(key)
        self.bounce_prefix = bounce_prefix
        self._bounce_head = (bounce_prefix + DELIMITER).lower()
        self.unsubscribe_prefix = unsubscribe_prefix
        self._unsubscribe_head = (unsubscribe_prefix + DELIMITER).lower()
        self.complaint_address = (complaint_address
                                  or f"{DEFAULT_COMPLAINT_LOCAL}@{self.domain}").lower()
        #: The domains of every feedback address (a cheap test before :meth:`match`).
        self.domains = frozenset({self.domain,
                                  self.complaint_address.rpartition("@")[2]})

    @property
    def key(self) -> bytes:
        return self._key()

    def match(self, address: str) -> FeedbackAddress | None:
        """The kind and target of ``address``; None when it is no feedback address."""
        address = address.strip().strip("<>")
        lowered = address.lower()
        if lowered == self.complaint_address:
            return FeedbackAddress(FeedbackKind.COMPLAINT, None)
        local, at, domain = lowered.rpartition("@")
        if not at or domain != self.domain:
            return None
        if local.startswith(self._bounce_head):
            return FeedbackAddress(FeedbackKind.BOUNCE, parse_verp_address(
                address, self.key, prefix=self.bounce_prefix))
        if local.startswith(self._unsubscribe_head):
            return FeedbackAddress(FeedbackKind.UNSUBSCRIBE, parse_verp_address(
                address, self.key, prefix=self.unsubscribe_prefix))
        return None

    def verp_prefixed(self, sender: str) -> bool:
        """Does ``sender`` start like our VERP senders (``bounces+``)?  The cheap test
        before any HMAC: who handles such mail apart (delivery results) asks this."""
        return sender[:len(self._bounce_head)].lower() == self._bounce_head

    def sender_target(self, sender: str) -> VerpTarget | None:
        """The target of a VERP envelope sender of ours; None for any other sender
        (decided by the prefix before any HMAC is computed)."""
        if not self.verp_prefixed(sender):
            return None
        if not sender.lower().endswith("@" + self.domain):
            return None
        return parse_verp_address(sender, self.key, prefix=self.bounce_prefix)

    def locate(self, *candidates: str | None) -> VerpTarget | None:
        """The first candidate address (a Return-Path, an original MAIL FROM) that is
        a VERP address of ours with a valid token."""
        for candidate in candidates:
            if candidate:
                target = parse_verp_address(candidate, self.key, prefix=self.bounce_prefix)
                if target is not None:
                    return target
        return None
