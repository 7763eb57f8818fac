"""Mailbox quota as values: what a user uses, what they may use, and the decision.

RFC 9208 names two resources Mailyard limits per user: STORAGE (the sum of the
message sizes, which IMAP reports in units of 1024 octets) and MESSAGE (the number of
messages), both over all of the user's folders.  Here both are kept in plain units
(octets, messages); the IMAP adapter divides by 1024 for its QUOTA responses.

Pure logic only: the usage is read from the mailbox index by ``store/usage.py``, the
limits come from the directory (a per-user value, else the ``[mailbox]`` default).
The delivery agent, smtpd and IMAP APPEND all decide with :func:`over_quota`.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

__all__ = ["KEEP", "Keep", "QuotaLimits", "QuotaUsage", "format_size", "over_quota",
           "parse_size"]


@dataclass(frozen=True)
class QuotaUsage:
    storage_bytes: int = 0  # RFC822.SIZE of every message (CRLF line ends), all folders
    messages: int = 0


@dataclass(frozen=True)
class QuotaLimits:
    """A user's effective limits; None: no limit on that resource."""

    storage_bytes: int | None = None
    messages: int | None = None

    @property
    def unlimited(self) -> bool:
        return self.storage_bytes is None and self.messages is None

    @classmethod
    def from_settings(cls, storage_bytes: int, messages: int) -> QuotaLimits:
        """From stored or configured values, where 0 means unlimited."""
        return cls(storage_bytes or None, messages or None)


class Keep(enum.Enum):
    """A quota setting left as it is (``set_quota`` with only the other one)."""

    KEEP = "keep"


KEEP = Keep.KEEP


def over_quota(usage: QuotaUsage, limits: QuotaLimits, adding_bytes: int = 0,
               adding_messages: int = 1) -> bool:
    """Would adding ``adding_messages`` messages of ``adding_bytes`` octets in all go
    over a limit?  RFC 9208 5: an operation that would make the usage exceed the
    limit fails; reaching it exactly is allowed."""
    if limits.storage_bytes is not None and \
            usage.storage_bytes + adding_bytes > limits.storage_bytes:
        return True
    return limits.messages is not None and usage.messages + adding_messages > limits.messages


# --- sizes as an operator writes them ------------------------------------------------

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?", re.IGNORECASE | re.ASCII)
MAX_SIZE = 1 << 62


def parse_size(text: str) -> int:
    """Octets from ``"2G"``, ``"500M"``, ``"1.5GiB"``, ``"10240K"``, ``"1000"``
    (octets) or ``"0"``.  The units are binary (K = 1024), with or without ``B``/
    ``iB``.  Raises ValueError with a message for the operator."""
    m = _SIZE.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"not a size: {text!r} (examples: 2G, 500M, 10240K, 0)")
    number, unit = str(m.group(1)), str(m.group(2)).upper()
    if "." in number:
        whole, _, frac = number.partition(".")
        scale = int("1" + "0" * len(frac))
        value = int(whole) * _UNITS[unit] + int(frac) * _UNITS[unit] // scale
    else:
        value = int(number) * _UNITS[unit]
    if value > MAX_SIZE:
        raise ValueError(f"size too large: {text!r}")
    return value


def format_size(octets: int) -> str:
    """``2.0 GiB``, ``512.0 KiB``, ``300 B``: binary units, one decimal."""
    if octets < 1024:
        return f"{octets} B"
    value = float(octets)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"
