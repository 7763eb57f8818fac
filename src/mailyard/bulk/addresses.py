"""Contact addresses, normalised so one person is one contact.

``Anna.Smith@Bücher.Example.`` and ``anna.smith@xn--bcher-kva.example`` are the same
mailbox for every real mail system, so they are stored once, as
``anna.smith@xn--bcher-kva.example``: the domain in its ASCII (IDNA 2008, UTS #46
mapping) form, lower case, without a trailing dot; the local part lower-cased too
(RFC 5321 2.4 lets a server treat it as case-sensitive, but none of the large
providers does, and two contacts differing only by case would get every mail twice).
The local part must be a dot-atom (RFC 5322 3.2.3; UTF-8 allowed, RFC 6531); quoted
local parts are refused, as list managers do.
"""

from __future__ import annotations

import functools
import re

import idna

from mailyard.directory.addresses import MAX_ADDRESS, MAX_LOCAL_PART, check_domain
from mailyard.directory.api import DirectoryError

# RFC 5322 3.2.3 dot-atom, plus any non-ASCII character (RFC 6531 UTF-8 local parts).
_ATEXT = r"A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\u0080-\U0010ffff"
_DOT_ATOM = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*")


class InvalidAddress(ValueError):
    """Not an address a contact can have (the message says why)."""


def normalise_address(text: str) -> str:
    address = text.strip()
    local, sep, domain = address.rpartition("@")
    if not sep or not local or not domain:
        raise InvalidAddress(f"not an address: {_short(text)!r} (expected local@domain)")
    ascii_domain = _ascii_domain(domain.rstrip("."))
    if ascii_domain is None:
        raise InvalidAddress(f"bad domain in {_short(text)!r}")
    if len(local.encode("utf-8")) > MAX_LOCAL_PART:
        raise InvalidAddress(f"{_short(text)!r}: local part longer than {MAX_LOCAL_PART} "
                             "octets")
    if not _DOT_ATOM.fullmatch(local):
        raise InvalidAddress(f"{_short(text)!r}: the local part must be a dot-atom (RFC 5322 "
                             "3.2.3), without spaces, quotes or leading, trailing or double dots")
    key = f"{local.lower()}@{ascii_domain}"
    if len(key) > MAX_ADDRESS:
        raise InvalidAddress(f"{_short(text)!r}: longer than {MAX_ADDRESS} characters")
    return key


@functools.lru_cache(maxsize=4096)
def _ascii_domain(domain: str) -> str | None:
    """The checked IDNA (UTS #46) ASCII form, or None.  Cached: an import has many
    addresses and few domains, and this is the slow part of reading a row."""
    try:
        return check_domain(idna.encode(domain, uts46=True).decode("ascii"))
    except (idna.IDNAError, UnicodeError, ValueError, DirectoryError):
        return None


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
