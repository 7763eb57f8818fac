"""DMARC policy records (RFC 7489 6.3, 6.4; ``np`` from RFC 9091): text in, a value out.

A record is a TXT string of ``tag=value`` pairs separated by ``;``.  The RFC is
forgiving about everything but the version and the policy, and this parser is too:

* the record must begin with ``v=DMARC1`` (6.6.3 step 3: anything else is not a DMARC
  record, so :func:`is_dmarc_record` is what discovery filters the TXT set with);
* unknown tags are ignored (6.3);
* an invalid value of an optional tag is ignored in favour of the default (6.3:
  "syntax errors in the remainder of the record SHOULD be discarded in favor of
  default values"), and noted in :attr:`DmarcRecord.ignored`;
* a missing or invalid ``p``, or an invalid ``sp``, makes the record unusable unless a
  valid ``rua`` is present, in which case it is read as ``p=none`` (6.6.3, the list
  after step 6).

Tag names and keyword values are compared case-insensitively (RFC 5234 2.3: ABNF
strings are).  A tag given twice keeps its first value.  At most
:data:`MAX_REPORT_URIS` report URIs are kept per tag (6.2 lets a receiver limit them),
so a hostile record costs time linear in its length and a bounded result.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

__all__ = [
    "Alignment",
    "DmarcRecord",
    "MAX_REPORT_URIS",
    "Policy",
    "RecordError",
    "ReportUri",
    "is_dmarc_record",
    "parse_record",
]

MAX_REPORT_URIS = 10
_VERSION = re.compile(r"\s*v\s*=\s*DMARC1\s*(;|$)", re.IGNORECASE)
_URI = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*:[^\s!]+)(?:!(\d{1,15})([kmgt]?))?", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_FO_OPTIONS = frozenset("01ds")
T = TypeVar("T")


class Policy(enum.StrEnum):
    """What the Domain Owner asks receivers to do with failing mail (6.3 ``p``)."""

    NONE = "none"
    QUARANTINE = "quarantine"
    REJECT = "reject"


class Alignment(enum.StrEnum):
    """Identifier alignment mode (3.1): ``r`` relaxed, ``s`` strict."""

    RELAXED = "r"
    STRICT = "s"


@dataclass(frozen=True)
class ReportUri:
    """One ``rua``/``ruf`` destination (6.2): a URI and an optional size limit in octets."""

    uri: str
    max_size: int | None = None


@dataclass(frozen=True)
class DmarcRecord:
    policy: Policy
    subdomain_policy: Policy | None = None  # sp; None: p applies
    nonexistent_policy: Policy | None = None  # np (RFC 9091); None: sp, then p applies
    pct: int = 100
    adkim: Alignment = Alignment.RELAXED
    aspf: Alignment = Alignment.RELAXED
    rua: tuple[ReportUri, ...] = ()
    ruf: tuple[ReportUri, ...] = ()
    fo: tuple[str, ...] = ("0",)
    rf: tuple[str, ...] = ("afrf",)
    ri: int = 86400
    # Tags whose values were invalid and so ignored (6.3), for diagnostics.
    ignored: tuple[str, ...] = ()
    # True when p was missing or invalid and a valid rua made it p=none (6.6.3).
    policy_defaulted: bool = False


@dataclass(frozen=True)
class RecordError:
    """A TXT record that is not a usable DMARC record, and why."""

    reason: str


def is_dmarc_record(text: str) -> bool:
    """Whether a TXT string is a DMARC record at all: it begins with ``v=DMARC1``."""
    return _VERSION.match(text) is not None


def _tags(text: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for part in text.split(";"):
        name, sep, value = part.partition("=")
        name = name.strip().lower()
        if sep and name and name not in tags:
            tags[name] = value.strip()
    return tags


def _policy(value: str | None) -> Policy | None:
    if value is None:
        return None
    try:
        return Policy(value.lower())
    except ValueError:
        return None


def _uris(value: str) -> tuple[ReportUri, ...] | None:
    """The URIs of a ``rua``/``ruf`` value; None if none is valid."""
    found: list[ReportUri] = []
    for item in value.split(","):
        match = _URI.fullmatch(item.strip())
        if match is None:
            continue
        size = None
        if match.group(2) is not None:
            size = int(match.group(2)) * _UNITS[match.group(3).lower()]
        found.append(ReportUri(match.group(1), size))
        if len(found) == MAX_REPORT_URIS:
            break
    return tuple(found) or None


def _int(value: str, low: int, high: int) -> int | None:
    if not value.isascii() or not value.isdigit() or len(value) > 10:
        return None
    number = int(value)
    return number if low <= number <= high else None


def _alignment(value: str) -> Alignment | None:
    return Alignment(value.lower()) if value.lower() in ("r", "s") else None


def _fo(value: str) -> tuple[str, ...] | None:
    options = tuple(o.strip().lower() for o in value.split(":"))
    return options if all(o in _FO_OPTIONS for o in options) else None


def _rf(value: str) -> tuple[str, ...] | None:
    formats = tuple(f.strip().lower() for f in value.split(":"))
    return formats if all(formats) else None


class _Tags:
    """The tag values of one record, converted on request; invalid ones are noted."""

    def __init__(self, text: str) -> None:
        self.values = _tags(text)
        self.ignored: list[str] = []

    def get(self, name: str, convert: Callable[[str], T | None], default: T) -> T:
        if name not in self.values:
            return default
        value = convert(self.values[name])
        if value is None:
            self.ignored.append(name)
            return default
        return value


@functools.lru_cache(maxsize=1024)
def parse_record(text: str) -> DmarcRecord | RecordError:
    """Parse one DMARC TXT record (its character-strings already concatenated).

    The results are values, so the last 1,024 are remembered: the same records come
    back with every message of a sender, from the DNS cache."""
    if not is_dmarc_record(text):
        return RecordError("record does not begin with v=DMARC1")
    tags = _Tags(text)
    no_uris: tuple[ReportUri, ...] = ()
    rua = tags.get("rua", _uris, no_uris)
    policy = _policy(tags.values.get("p"))
    sub = _policy(tags.values.get("sp"))
    defaulted = False
    if policy is None or ("sp" in tags.values and sub is None):
        # RFC 7489 6.6.3: without a valid p (or with an invalid sp) the record is used
        # as p=none only if it names at least one valid aggregate report URI.
        if not rua:
            what = "invalid sp" if policy is not None else "missing or invalid p"
            return RecordError(f"{what} and no valid rua")
        tags.ignored.extend(t for t in ("p", "sp") if t in tags.values)
        policy, sub, defaulted = Policy.NONE, None, True
    return DmarcRecord(
        policy=policy,
        subdomain_policy=sub,
        nonexistent_policy=tags.get("np", _policy, None),
        pct=tags.get("pct", lambda v: _int(v, 0, 100), 100),
        adkim=tags.get("adkim", _alignment, Alignment.RELAXED),
        aspf=tags.get("aspf", _alignment, Alignment.RELAXED),
        rua=rua,
        ruf=tags.get("ruf", _uris, no_uris),
        fo=tags.get("fo", _fo, ("0",)),
        rf=tags.get("rf", _rf, ("afrf",)),
        ri=tags.get("ri", lambda v: _int(v, 0, 0xFFFFFFFF), 86400),
        ignored=tuple(tags.ignored),
        policy_defaulted=defaulted,
    )
