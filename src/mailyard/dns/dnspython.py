"""The real resolver: dnspython's asyncio stub resolver behind :class:`BaseResolver`.

With ``servers`` (``delivery.dns_servers``, ``"ip"`` or ``"ip:port"``) queries go to
those servers only, each on its own port; without, the system configuration
(``/etc/resolv.conf``) is used.  With ``dnssec``, queries carry the DO and AD bits
(RFC 6840 5.7) and answers report the AD bit the resolver set as
``RecordSet.authenticated``; only a validating resolver reached over a trusted path
(on the same host) should be used so.  dnspython's own cache is off: answers are cached by
:class:`mailyard.dns.cache.CachingResolver`, which also caches negative answers.
"""

from __future__ import annotations

import ipaddress

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

from mailyard.config import parse_hostport
from mailyard.dns.api import (
    SUPPORTED_TYPES,
    AnswerKind,
    BaseResolver,
    DnsNameError,
    DnsTemporaryError,
    RecordSet,
)

# Without an SOA in a negative answer there is no negative TTL (RFC 2308 5); dnspython
# then uses a short default, and so do we.
_NEGATIVE_TTL_WITHOUT_SOA = 60
# Per-server try timeout when several servers share the overall lookup timeout.
_MAX_TRY_TIMEOUT = 2.0


def _nameserver(spec: str) -> dns.nameserver.Do53Nameserver:
    host, port = parse_hostport(spec, 53)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"a DNS server must be an IP address (with :port), not {spec!r}") from None
    return dns.nameserver.Do53Nameserver(host, port)


def _record_text(rdtype: str, rdata: object) -> str:
    if rdtype in ("A", "AAAA"):
        return str(rdata)
    if rdtype == "MX":
        exchange = str(rdata.exchange).lower()  # type: ignore[attr-defined]
        return f"{rdata.preference} {exchange.rstrip('.') or '.'}"  # type: ignore[attr-defined]
    if rdtype == "TXT":
        return b"".join(rdata.strings).decode("utf-8", "replace")  # type: ignore[attr-defined]
    if rdtype in ("CNAME", "PTR"):
        return str(rdata.target).lower().rstrip(".")  # type: ignore[attr-defined]
    if rdtype == "TLSA":
        r = rdata
        return f"{r.usage} {r.selector} {r.mtype} {r.cert.hex()}"  # type: ignore[attr-defined]
    raise ValueError(f"unsupported record type {rdtype}")


def _negative_ttl(response: dns.message.Message | None) -> int:
    if not isinstance(response, dns.message.QueryMessage):  # only a query's answer chains
        return _NEGATIVE_TTL_WITHOUT_SOA
    try:
        return int(response.resolve_chaining().minimum_ttl)
    except dns.exception.DNSException:
        return _NEGATIVE_TTL_WITHOUT_SOA


class DnsPythonResolver(BaseResolver):
    def __init__(self, servers: list[str] | tuple[str, ...] = (), timeout: float = 5.0,
                 dnssec: bool = False) -> None:
        if servers:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = [_nameserver(s) for s in servers]
        else:
            try:
                resolver = dns.asyncresolver.Resolver(configure=True)
            except dns.resolver.NoResolverConfiguration:
                # No /etc/resolv.conf: local delivery still works; remote mail defers
                # (every query fails temporarily) until DNS is configured.
                resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.cache = None
        resolver.lifetime = timeout
        several = len(resolver.nameservers) > 1
        resolver.timeout = min(timeout, _MAX_TRY_TIMEOUT) if several else timeout
        # 1232: the DNS flag day 2020 payload size
        resolver.use_edns(0, dns.flags.DO if dnssec else 0, 1232)
        if dnssec:
            resolver.flags = dns.flags.RD | dns.flags.AD
        self._resolver = resolver

    async def query(self, name: str, rdtype: str) -> RecordSet:
        if rdtype not in SUPPORTED_TYPES:
            raise ValueError(f"unsupported record type {rdtype}")
        try:
            qname = dns.name.from_text(name)
        except dns.exception.DNSException as exc:
            raise DnsNameError(name, rdtype, str(exc)) from None
        try:
            answer = await self._resolver.resolve(
                qname, rdtype, search=False, raise_on_no_answer=False
            )
        except dns.resolver.NXDOMAIN as exc:
            responses = exc.responses()
            response = responses.get(qname) if responses else None
            return RecordSet(name, rdtype, AnswerKind.NXDOMAIN, ttl=_negative_ttl(response),
                             canonical_name=name)
        except dns.exception.Timeout:
            raise DnsTemporaryError(name, rdtype, "timeout") from None
        except dns.resolver.NoNameservers as exc:
            reason = f"no server answered: {exc}" if self._resolver.nameservers else \
                "no DNS servers configured"
            raise DnsTemporaryError(name, rdtype, reason) from None
        except dns.resolver.YXDOMAIN:
            raise DnsTemporaryError(name, rdtype,
                                    "name too long after DNAME substitution") from None
        except (dns.exception.DNSException, OSError) as exc:
            raise DnsTemporaryError(name, rdtype, f"{type(exc).__name__}: {exc}") from None
        canonical = str(answer.canonical_name).lower().rstrip(".")
        secure = bool(answer.response.flags & dns.flags.AD)
        if answer.rrset is None:
            return RecordSet(name, rdtype, AnswerKind.NODATA, ttl=_negative_ttl(answer.response),
                             canonical_name=canonical, authenticated=secure)
        records = tuple(_record_text(rdtype, rd) for rd in answer.rrset)
        ttl = int(answer.chaining_result.minimum_ttl)
        return RecordSet(name, rdtype, AnswerKind.ANSWER, records, ttl, canonical, secure)
