"""SRS, the Sender Rewriting Scheme: the envelope sender of a forwarded message.

A message forwarded unchanged keeps its original envelope sender, whose domain's SPF
policy does not list the forwarder, so the next hop's SPF check fails.  The forwarder
therefore sends it from an address in its own domain that encodes the original one,
and that it can turn back when a bounce arrives there:

``SRS0=HHHHHH=TT=orig-domain=orig-local@forwarding-domain``

* ``TT``: the day (days since the epoch, modulo 1024) in two base32 characters; an
  address older than :data:`MAX_AGE_DAYS` days is refused, so the addresses cannot be
  used as an open relay for ever;
* ``HHHHHH``: an HMAC-SHA256 of the day, domain and local part under the server's
  key, six base32 characters.  Everything is lower-cased before hashing and base32 is
  case-insensitive, so an address survives a mailer that changes its case.

A sender that is already an SRS0 address of another forwarder is not wrapped again:
it becomes ``SRS1=HHHHHH=first-forwarder==HHH=TT=domain=local@us``, which reverses to
the first forwarder's SRS0 address (the well-known SRS0/SRS1 "guarded" scheme).

Pure functions over a key and a time: :meth:`Srs.forward` rewrites,
:meth:`Srs.reverse` returns the address a bounce goes back to, or an
:class:`SrsInvalid` saying why not, or None for an address that is not SRS at all.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

__all__ = ["MAX_AGE_DAYS", "Srs", "SrsInvalid", "is_srs"]

MAX_AGE_DAYS = 21
_DAY = 86_400
_HASH_CHARS = 6
_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


@dataclass(frozen=True)
class SrsInvalid:
    """An SRS address that must not be reversed (forged, expired, malformed)."""

    reason: str


def is_srs(address: str) -> bool:
    """Whether the local part begins with ``SRS0=`` or ``SRS1=`` (any case)."""
    return address[:5].upper() in ("SRS0=", "SRS1=")


def _split(address: str) -> tuple[str, str]:
    local, at, domain = address.rpartition("@")
    return (local, domain) if at else (address, "")


@dataclass(frozen=True)
class Srs:
    key: bytes
    max_age_days: int = MAX_AGE_DAYS

    def _hash(self, *parts: str) -> str:
        data = "=".join(parts).lower().encode("utf-8", "surrogateescape")
        digest = hmac.new(self.key, data, hashlib.sha256).digest()
        return base64.b32encode(digest).decode("ascii")[:_HASH_CHARS]

    def _check(self, given: str, *parts: str) -> bool:
        return hmac.compare_digest(given.upper().encode(), self._hash(*parts).encode())

    @staticmethod
    def _stamp(now: float) -> str:
        day = int(now // _DAY) % 1024
        return _B32[day >> 5] + _B32[day & 31]

    def forward(self, sender: str, forwarding_domain: str, now: float) -> str:
        """The envelope sender to forward a message from ``sender`` with.  The null
        sender and senders already in ``forwarding_domain`` stay as they are."""
        local, domain = _split(sender)
        if not sender or not domain or domain.lower() == forwarding_domain.lower() \
                or local.startswith('"'):
            return sender
        upper = local[:5].upper()
        if upper == "SRS0=":  # another forwarder's address: SRS1, guarded by its domain
            rest = local[5:]
            return f"SRS1={self._hash(domain, rest)}={domain}=={rest}@{forwarding_domain}"
        if upper == "SRS1=":  # keep the first forwarder, re-guard with our key
            fields = local.split("=", 3)
            if len(fields) == 4 and fields[3].startswith("="):
                first, rest = fields[2], fields[3][1:]
                return f"SRS1={self._hash(first, rest)}={first}=={rest}@{forwarding_domain}"
        stamp = self._stamp(now)
        return (f"SRS0={self._hash(stamp, domain, local)}={stamp}={domain}={local}"
                f"@{forwarding_domain}")

    def reverse(self, address: str, now: float) -> str | SrsInvalid | None:
        """The address a message to ``address`` (one of ours) goes back to; None when
        it is not an SRS address."""
        local, _domain = _split(address)
        if not is_srs(local):
            return None
        if local[:5].upper() == "SRS1=":
            fields = local.split("=", 3)
            if len(fields) != 4 or not fields[3].startswith("=") or not fields[2]:
                return SrsInvalid("malformed SRS1 address")
            first, rest = fields[2], fields[3][1:]
            if not self._check(fields[1], first, rest):
                return SrsInvalid("SRS1 hash does not match")
            return f"SRS0={rest}@{first}"
        fields = local.split("=", 4)
        if len(fields) != 5 or not all(fields[1:]):
            return SrsInvalid("malformed SRS0 address")
        _, given, stamp, domain, orig_local = fields
        if not self._check(given, stamp, domain, orig_local):
            return SrsInvalid("SRS0 hash does not match")
        age = self._age(stamp, now)
        if age is None or age > self.max_age_days:
            return SrsInvalid("SRS0 address expired")
        return f"{orig_local}@{domain}"

    def _age(self, stamp: str, now: float) -> int | None:
        """Days since ``stamp`` (modulo 1024); None when it is not a timestamp."""
        upper = stamp.upper()
        if len(upper) != 2 or any(c not in _B32 for c in upper):
            return None
        then = (_B32.index(upper[0]) << 5) | _B32.index(upper[1])
        return (int(now // _DAY) - then) % 1024
