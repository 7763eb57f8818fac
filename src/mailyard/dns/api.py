"""The resolver interface every component uses for DNS, and its result types.

A resolver answers one primitive, :meth:`BaseResolver.query` (a name and a record type
in, a :class:`RecordSet` out), and derives the mail-specific lookups from it:
:meth:`~BaseResolver.mx` (with Null MX, RFC 7505, and "no MX" told apart),
:meth:`~BaseResolver.addresses` (AAAA and A) and :meth:`~BaseResolver.txt`.  Keeping the
primitive this small lets the real resolver, the cache and the in-memory test resolver
share the derivations, so they cannot drift apart.

Outcomes that are facts about the DNS (the name does not exist, it has no records of
that type) are values (:class:`AnswerKind`).  Failures to learn the facts (SERVFAIL,
REFUSED, timeouts, network errors) raise :class:`DnsTemporaryError`, which delivery
turns into a retry; a name that is not a valid domain raises :class:`DnsNameError`.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
from dataclasses import dataclass
from typing import Protocol

import idna

__all__ = [
    "AnswerKind",
    "BaseResolver",
    "DnsError",
    "DnsNameError",
    "DnsTemporaryError",
    "MxKind",
    "MxRecord",
    "MxResult",
    "RecordSet",
    "Resolver",
    "ascii_domain",
]

#: Record types the resolvers answer, by their DNS mnemonic.
SUPPORTED_TYPES = ("A", "AAAA", "MX", "TXT", "CNAME", "TLSA", "PTR", "SRV")


class DnsError(Exception):
    """A DNS lookup could not produce an answer."""

    def __init__(self, name: str, rdtype: str, reason: str) -> None:
        self.name = name
        self.rdtype = rdtype
        self.reason = reason
        super().__init__(f"{name}/{rdtype}: {reason}")


class DnsTemporaryError(DnsError):
    """SERVFAIL, REFUSED, a timeout or a network error: worth trying again later."""


class DnsNameError(DnsError):
    """The name is not a valid domain name (empty label, label over 63 octets, bad IDN)."""


class AnswerKind(enum.StrEnum):
    ANSWER = "answer"  # NOERROR with records of the asked type
    NODATA = "nodata"  # NOERROR, the name exists but has no records of that type
    NXDOMAIN = "nxdomain"  # the name does not exist (RFC 8020: nor anything below it)


@dataclass(frozen=True)
class RecordSet:
    """One answer.  ``records`` are in a normalised text form per type:

    * A / AAAA: the address (``192.0.2.1``, ``2001:db8::1``)
    * MX: ``"<preference> <host>"``, host lower case without the trailing dot, ``.``
      for the root (so a Null MX is ``"0 ."``)
    * TXT: the character-strings of one record concatenated (RFC 7208 3.3)
    * CNAME, PTR: the target host
    * TLSA: ``"<usage> <selector> <matching-type> <hex data>"``
    * SRV: ``"<priority> <weight> <port> <target>"``, target as for MX

    ``ttl`` is the seconds the answer may be cached; for NODATA and NXDOMAIN it is the
    negative-caching TTL (RFC 2308 5).  ``canonical_name`` differs from ``name`` when a
    CNAME chain was followed.  ``authenticated``: the resolver set the AD bit (RFC 4035
    3.2.3), which only a validating resolver asked for it does (see
    :class:`mailyard.dns.dnspython.DnsPythonResolver` ``dnssec``).
    """

    name: str
    rdtype: str
    kind: AnswerKind
    records: tuple[str, ...] = ()
    ttl: int = 0
    canonical_name: str = ""
    authenticated: bool = False


class MxKind(enum.StrEnum):
    RECORDS = "records"  # one or more usable MX records
    NULL_MX = "null-mx"  # RFC 7505: the domain accepts no mail
    NO_RECORDS = "no-records"  # the domain exists without MX: implicit MX (RFC 5321 5.1)
    NXDOMAIN = "nxdomain"  # the domain does not exist


@dataclass(frozen=True)
class MxRecord:
    preference: int
    host: str  # lower case, no trailing dot; may be an IP literal if the zone is broken


@dataclass(frozen=True)
class MxResult:
    domain: str
    kind: MxKind
    records: tuple[MxRecord, ...] = ()  # as published; routing sorts and shuffles
    ttl: int = 0


class Resolver(Protocol):
    """What components depend on.  All implementations derive from BaseResolver."""

    async def query(self, name: str, rdtype: str) -> RecordSet: ...

    async def mx(self, domain: str) -> MxResult: ...

    async def addresses(self, host: str) -> list[str]: ...

    async def txt(self, name: str) -> list[str]: ...


def ascii_domain(domain: str) -> str:
    """A domain in the form DNS queries use: lower case A-labels, no trailing dot.

    Non-ASCII names are converted with IDNA 2008 and the UTS 46 mapping (the ``idna``
    package; the standard library's ``encodings.idna`` only implements IDNA 2003, which
    maps some characters, such as German sharp s, differently).  ASCII names are only
    checked for label lengths, so names such as ``_dmarc.example.org`` stay valid.
    """
    name = domain.strip().rstrip(".")
    if not name.isascii():
        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise DnsNameError(domain, "", f"invalid international domain name: {exc}") from None
    name = name.lower()
    if not name or len(name) > 253 or ".." in name or name[0] == ".":  # an empty label
        raise DnsNameError(domain, "", "not a valid domain name")
    if len(name) > 63 and any(len(label) > 63 for label in name.split(".")):
        raise DnsNameError(domain, "", "not a valid domain name")
    return name


def parse_mx_record(text: str) -> MxRecord:
    pref, _, host = text.partition(" ")
    return MxRecord(int(pref), host.strip().lower().rstrip(".") or ".")


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class BaseResolver:
    """Derives the mail lookups from :meth:`query`, which subclasses implement."""

    async def query(self, name: str, rdtype: str) -> RecordSet:
        raise NotImplementedError

    async def mx(self, domain: str) -> MxResult:
        """MX records of ``domain``.

        RFC 7505 3: a Null MX is a single record ``0 .``.  A root target published next
        to real MX records is a broken zone; the root entry is then dropped and the
        other records used.
        """
        name = ascii_domain(domain)
        answer = await self.query(name, "MX")
        if answer.kind is AnswerKind.NXDOMAIN:
            return MxResult(name, MxKind.NXDOMAIN, ttl=answer.ttl)
        records = tuple(parse_mx_record(r) for r in answer.records)
        if not records:
            return MxResult(name, MxKind.NO_RECORDS, ttl=answer.ttl)
        usable = tuple(r for r in records if r.host != ".")
        if not usable:
            return MxResult(name, MxKind.NULL_MX, ttl=answer.ttl)
        return MxResult(name, MxKind.RECORDS, usable, answer.ttl)

    async def addresses(self, host: str) -> list[str]:
        """The IPv6 then IPv4 addresses of ``host`` (RFC 6724 default preference).

        Both lookups run at once.  If one family answers and the other fails
        temporarily (a common DNS server bug for AAAA), the answering family is used;
        only when neither yields an address and one failed is the failure raised.
        """
        name = ascii_domain(host)
        results = await asyncio.gather(
            self.query(name, "AAAA"), self.query(name, "A"), return_exceptions=True
        )
        found: list[str] = []
        failure: DnsTemporaryError | None = None
        for result in results:
            if isinstance(result, DnsTemporaryError):
                failure = result
            elif isinstance(result, BaseException):
                raise result
            else:
                found.extend(result.records)
        if not found and failure is not None:
            raise failure
        return found

    async def txt(self, name: str) -> list[str]:
        """TXT records of ``name``, each record's strings concatenated."""
        answer = await self.query(ascii_domain(name), "TXT")
        return list(answer.records)
