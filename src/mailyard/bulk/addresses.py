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

import idna

from mailyard.directory.addresses import check_address
from mailyard.directory.api import DirectoryError


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
    try:
        return check_address(f"{local}@{ascii_domain}")
    except DirectoryError as exc:
        raise InvalidAddress(str(exc).replace("bad address ", "")) from None


@functools.lru_cache(maxsize=4096)
def _ascii_domain(domain: str) -> str | None:
    """The IDNA (UTS #46) ASCII form, or None.  Cached: an import has many addresses
    and few domains, and the conversion is the slow part of reading a row."""
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        return None


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
