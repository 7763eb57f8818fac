"""The Author Domain: the domain of the RFC5322.From address (RFC 7489 3.1, 6.6.1).

DMARC needs exactly one From field (RFC 5322 3.6 allows exactly one).  Messages with
none, with several, or with no usable domain in it are, in the RFC's words, "outside
the scope" of DMARC (6.6.1); they come back as a :class:`FromProblem`, which
evaluation reports as ``permerror`` so that the receiver's policy can refuse them
(a second From field is a known way to show one author and get another checked).
A single From field with several addresses (RFC 5322 allows a mailbox-list) is
checked once per distinct domain, and the strictest failing policy applies (6.6.1).
U-labels are converted to A-labels (6.6.1, IDNA 2008).  Each domain costs DNS
lookups, so a From field with more than :data:`MAX_AUTHOR_DOMAINS` distinct domains
is refused as a problem rather than checked.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from email.utils import getaddresses

from mailyard.dns.api import DnsNameError, ascii_domain

__all__ = ["MAX_AUTHOR_DOMAINS", "FromProblem", "author_domains"]

_FOLD = re.compile(r"\r?\n[ \t]")
MAX_AUTHOR_DOMAINS = 8
# The usual From value, one plain mailbox: ``Name <local@domain>``, ``"Name"
# <local@domain>`` or ``local@domain``, dot-atoms only.  For these the standard
# library's address parser (a few hundred Python calls) finds the same domain as this
# one match; anything else goes to that parser.
_ATOM = r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)"
_PLAIN_MAILBOX = re.compile(
    rf'\s*(?:(?:[A-Za-z0-9]+(?: [A-Za-z0-9]+)*|"[A-Za-z0-9 ._-]*")?\s*<{_ATOM}>|{_ATOM})\s*')


class FromProblem(enum.StrEnum):
    NO_FROM = "no From field"
    MULTIPLE_FROM = "more than one From field"
    NO_DOMAIN = "From has no address with a valid domain"
    TOO_MANY_DOMAINS = f"From names more than {MAX_AUTHOR_DOMAINS} domains"


def _domain(address: str, local: bool = True) -> str | None:
    """``local``: the address must have a local part."""
    name, at, domain = address.rpartition("@")
    if not at or (local and not name) or not domain:
        return None
    domain = domain.strip()
    if domain.startswith("["):  # an address literal names no domain to look up
        return None
    try:
        return ascii_domain(domain)
    except DnsNameError:
        return None


def author_domains(from_values: Sequence[str]) -> tuple[str, ...] | FromProblem:
    """The distinct Author Domains of a message, given the values of its From fields
    (as found in the header, folded or not), in the order they appear."""
    if not from_values:
        return FromProblem.NO_FROM
    if len(from_values) > 1:
        return FromProblem.MULTIPLE_FROM
    value = _FOLD.sub(" ", from_values[0])
    plain = _PLAIN_MAILBOX.fullmatch(value)
    if plain is not None:
        domain = _domain("@" + (plain.group(1) or plain.group(2)), local=False)
        return FromProblem.NO_DOMAIN if domain is None else (domain,)
    domains: list[str] = []
    for _name, address in getaddresses([value]):
        if not address:
            continue
        domain = _domain(address)
        if domain is None:
            return FromProblem.NO_DOMAIN
        if domain not in domains:
            if len(domains) == MAX_AUTHOR_DOMAINS:
                return FromProblem.TOO_MANY_DOMAINS
            domains.append(domain)
    return tuple(domains) if domains else FromProblem.NO_DOMAIN
