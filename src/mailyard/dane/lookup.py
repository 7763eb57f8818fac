"""Which MX hosts DANE applies to (RFC 7672 2.2), asked of a validating resolver.

What is checked, in order:

1. the recipient domain's MX RRset is authenticated (AD bit) - an insecure MX answer
   could name any host, so DANE applies to none of its hosts (RFC 7672 2.2.1);
2. the MX host's address records are authenticated - otherwise its TLSA records are
   not looked up at all (RFC 7672 2.2.2);
3. ``_25._tcp.<host>`` TLSA (at the host's canonical name when its addresses came
   through a CNAME, then at the name itself): an authenticated answer with usable
   records makes DANE mandatory for the host; an authenticated answer with only
   unusable records makes TLS mandatory without authentication (RFC 7672 2.2); no
   records (or an unauthenticated answer) means no DANE; a failed lookup (a validating
   resolver answers SERVFAIL for bogus data) makes the host unusable (``BOGUS``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from mailyard.dane.tlsa import usable_records
from mailyard.dns.api import AnswerKind, DnsError, Resolver

__all__ = ["DaneState", "HostDane", "host_dane", "mx_secure"]


class DaneState(enum.StrEnum):
    SECURE = "secure"  # usable TLSA records: TLS and the TLSA check required
    UNUSABLE = "unusable"  # TLSA records, none usable: TLS required, not authenticated
    INSECURE = "insecure"  # no DANE for this host
    BOGUS = "bogus"  # the lookups failed: do not use the host


@dataclass(frozen=True)
class HostDane:
    state: DaneState
    records: tuple[str, ...] = ()  # the usable TLSA records, resolver text form
    names: tuple[str, ...] = ()  # reference identifiers for DANE-TA
    reason: str = ""


async def mx_secure(resolver: Resolver, domain: str) -> bool:
    try:
        answer = await resolver.query(domain, "MX")
    except DnsError:
        return False
    return answer.authenticated


async def _secure_addresses(resolver: Resolver, host: str) -> tuple[bool, str]:
    """(every address answer of ``host`` is authenticated, its canonical name)."""
    secure, canonical, found = True, host, False
    for rdtype in ("AAAA", "A"):
        answer = await resolver.query(host, rdtype)
        if answer.kind is AnswerKind.ANSWER:
            found = True
            secure = secure and answer.authenticated
            canonical = answer.canonical_name or canonical
    return found and secure, canonical


async def host_dane(resolver: Resolver, host: str) -> HostDane:
    try:
        secure, canonical = await _secure_addresses(resolver, host)
    except DnsError as exc:
        return HostDane(DaneState.BOGUS, reason=f"address lookup of {host}: {exc.reason}")
    if not secure:
        return HostDane(DaneState.INSECURE, reason=f"addresses of {host} are not DNSSEC-signed")
    names = tuple(dict.fromkeys((canonical, host)))
    for base in names:
        try:
            answer = await resolver.query(f"_25._tcp.{base}", "TLSA")
        except DnsError as exc:
            return HostDane(DaneState.BOGUS, names=names,
                            reason=f"TLSA lookup of _25._tcp.{base}: {exc.reason}")
        if answer.kind is not AnswerKind.ANSWER or not answer.authenticated:
            continue
        usable = usable_records(answer.records)
        if usable:
            return HostDane(DaneState.SECURE, tuple(answer.records), names)
        return HostDane(DaneState.UNUSABLE, names=names,
                        reason=f"no usable TLSA record at _25._tcp.{base}")
    return HostDane(DaneState.INSECURE, names=names, reason="no TLSA records")
