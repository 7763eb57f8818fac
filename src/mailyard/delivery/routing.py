"""Outbound routing: from a recipient domain to the ordered list of next hops.

Order of decisions (the caller has already taken local domains out):

1. a per-domain transport (``delivery.transports``): its ``nexthop`` if set, else MX
   routing with the transport's TLS policy; its ``mode`` gives :attr:`Route.end_to_end`;
2. the smarthost (``delivery.relayhost``) with its port, credentials and TLS policy;
3. an address literal (``[192.0.2.1]``, ``[IPv6:2001:db8::1]``, RFC 5321 4.1.3) as is;
4. MX routing (RFC 5321 5.1): MX records by preference, shuffled among equal
   preferences; each host resolved to AAAA and A; no MX means the domain itself is
   the one implicit MX; a Null MX (RFC 7505) fails permanently.

Outcomes that stop delivery are :class:`RouteError` carrying the reply for the
bounce or the queue (temporary: retry; permanent: bounce).  Name-resolution details
(CNAMEs, negative answers, caching) belong to :mod:`mailyard.dns`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
import random
from dataclasses import dataclass, field, replace

from mailyard.config import Config, TransportRoute, parse_hostport
from mailyard.dns.api import (
    DnsNameError,
    DnsTemporaryError,
    MxKind,
    MxRecord,
    Resolver,
    ascii_domain,
    is_ip_literal,
)
from mailyard.obs import log_event
from mailyard.proto.smtp.client import tls_level
from mailyard.proto.smtp.replies import (
    REPLY_BAD_DESTINATION,
    REPLY_DNS_TEMP_FAILURE,
    REPLY_DOMAIN_NOT_FOUND,
    REPLY_MAIL_LOOPS,
    REPLY_NEXTHOP_UNRESOLVED,
    REPLY_NO_MX_ADDRESS,
    REPLY_NO_ROUTE,
    REPLY_NO_SECURE_MX,
    REPLY_NULL_MX,
    Reply,
)
from mailyard.tlsrpt.results import PolicyTag

log = logging.getLogger("mailyard.delivery.routing")

#: MX hosts considered per domain; bounds the DNS work a hostile zone can cause.
MAX_MX_HOSTS = 10
#: Routes remembered by a Router (see there); the memo is emptied when it is full.
MAX_FIXED_ROUTES = 10_000


@dataclass(frozen=True)
class SmtpAuth:
    username: str
    password: str = field(repr=False)
    # delivery.relayhost_auth_unverified: may go over TLS whose certificate was not checked
    unverified_ok: bool = False


@dataclass(frozen=True)
class NextHop:
    host: str  # name for TLS verification and logs: MX host, relay host or literal
    ip: str
    port: int
    tls_policy: str  # TLS level: "none", "may", "encrypt" ("require"), "verify", "secure"
    auth: SmtpAuth | None = None
    mx_preference: int | None = None  # None when the hop does not come from MX routing
    tls_ca_file: str = ""  # "verify"/"secure": check the chain against this, not the system store
    tls_fingerprints: tuple[str, ...] = ()  # "verify"/"secure": leaf certificate pins instead
    # DANE (RFC 7672): DNSSEC-validated TLSA records the certificate must match, and
    # the names a DANE-TA certificate may carry (set by delivery.tls_policy)
    tls_tlsa: tuple[str, ...] = ()
    tls_names: tuple[str, ...] = ()
    tls_report: PolicyTag | None = None  # TLS-RPT: the policy sessions are counted under


@dataclass(frozen=True)
class Route:
    domain: str  # the destination domain in A-label form
    hops: tuple[NextHop, ...]
    via: str  # "transport", "relayhost", "literal", "mx" or "implicit-mx"
    end_to_end: bool = False  # transport mode "end-to-end": relay only while the client waits
    warnings: tuple[str, ...] = ()


class RouteError(Exception):
    """No next hop.  ``reply`` is the reply text for the queue and the DSN
    (``"556 5.1.10 ..."``); ``temporary`` says retry (4xx) rather than bounce (5xx)."""

    def __init__(self, smtp_reply: Reply) -> None:
        self.smtp_reply = smtp_reply
        self.reply = str(smtp_reply)
        self.temporary = smtp_reply.is_transient
        super().__init__(self.reply)


def _fail(template: Reply, **values: str) -> RouteError:
    return RouteError(template.with_text(template.text.format(**values)))


def find_transport(domain: str, transports: tuple[TransportRoute, ...]) -> TransportRoute | None:
    """The transport for ``domain``: an exact entry, else the closest ``.parent`` entry
    (which matches subdomains only), else ``*``."""
    by_name = {t.domain.lower().rstrip("."): t for t in transports}
    if domain in by_name:
        return by_name[domain]
    labels = domain.split(".")
    for i in range(1, len(labels)):
        parent = "." + ".".join(labels[i:])
        if parent in by_name:
            return by_name[parent]
    return by_name.get("*")


def parse_address_literal(domain: str) -> str | None:
    """The IP of an RFC 5321 4.1.3 address literal, None if ``domain`` is not one."""
    if not (domain.startswith("[") and domain.endswith("]")):
        return None
    inner = domain[1:-1]
    try:
        if inner[:5].lower() == "ipv6:":
            return str(ipaddress.IPv6Address(inner[5:]))
        return str(ipaddress.IPv4Address(inner))
    except ValueError:
        raise _fail(REPLY_BAD_DESTINATION, domain=domain,
                    reason="not an IPv4 or IPv6 address literal") from None


class Router:
    """Routing bound to one config and resolver, as the delivery engine holds it.

    A route that follows from the configuration alone (a transport or relay host given
    as an IP address, an address literal) is remembered per domain: the same answer
    would be worked out again for every message.  Routes that needed DNS are not kept
    here; the resolver's cache keeps the answers for their TTL, and MX hosts of equal
    preference are shuffled afresh for every message."""

    def __init__(self, config: Config, resolver: Resolver,
                 rng: random.Random | None = None) -> None:
        self.config = config
        self.resolver = resolver
        self.rng = rng or random.Random()
        self._fixed: dict[str, Route] = {}

    async def route(self, domain: str) -> list[NextHop]:
        """The next hops for ``domain``, best first.  Raises :class:`RouteError`."""
        return list((await self.plan(domain)).hops)

    async def plan(self, domain: str) -> Route:
        """The whole routing decision: hops, how they were found, warnings."""
        known = self._fixed.get(domain)
        if known is not None:
            return known
        planned = await route(domain, self.config, self.resolver, rng=self.rng)
        if _from_config_alone(planned):
            if len(self._fixed) >= MAX_FIXED_ROUTES:
                self._fixed.clear()
            self._fixed[domain] = planned
        return planned

    def end_to_end(self, domain: str) -> bool:
        """Whether ``domain``'s transport is in "end-to-end" mode (no DNS needed)."""
        transport = find_transport(_destination(domain)[0], self.config.delivery.transports)
        return transport is not None and transport.mode == "end-to-end"


def _from_config_alone(planned: Route) -> bool:
    """True when no DNS answer went into ``planned`` (it can be reused as it is)."""
    if planned.via == "literal":
        return True
    return planned.via in ("transport", "relayhost") and all(
        is_ip_literal(hop.host) for hop in planned.hops)


def _destination(domain: str) -> tuple[str, str | None]:
    """(the domain as routing keys it, the IP if it is an address literal)."""
    domain = domain.strip()
    literal_ip = parse_address_literal(domain)
    if literal_ip is not None:
        return domain.lower(), literal_ip
    try:
        return ascii_domain(domain), None
    except DnsNameError as exc:
        raise _fail(REPLY_BAD_DESTINATION, domain=domain, reason=exc.reason) from None


async def route(domain: str, config: Config, resolver: Resolver, *,
                rng: random.Random | None = None) -> Route:
    """The next hops for mail to ``domain``, best first.  Raises :class:`RouteError`."""
    delivery = config.delivery
    name, literal_ip = _destination(domain)
    transport = find_transport(name, delivery.transports)
    end_to_end = transport is not None and transport.mode == "end-to-end"
    if transport is not None and transport.nexthop:
        hops = await _nexthop(name, transport.nexthop, delivery.smtp_port, transport.tls,
                              None, resolver)
        return Route(name, _with_tls_files(hops, transport.tls_ca_file,
                                           transport.tls_fingerprints), "transport", end_to_end)
    if transport is None and delivery.relayhost:
        auth = (SmtpAuth(delivery.relayhost_username, delivery.relayhost_password,
                         delivery.relayhost_auth_unverified)
                if delivery.relayhost_username else None)
        hops = await _nexthop(name, delivery.relayhost, delivery.smtp_port,
                              delivery.relayhost_tls_level, auth, resolver)
        return Route(name, _with_tls_files(hops, delivery.relayhost_tls_ca_file,
                                           delivery.relayhost_tls_fingerprints), "relayhost")
    tls = transport.tls if transport is not None else delivery.tls
    if literal_ip is not None:
        planned = Route(name, (NextHop(name, literal_ip, delivery.smtp_port, tls),), "literal",
                        end_to_end)
    else:
        planned = await _mx_route(name, config, resolver, tls, rng or random.Random())
        if tls_level(tls) == "secure":
            planned = _secure_mx(planned)
        planned = replace(planned, end_to_end=end_to_end)
    if transport is not None:
        planned = replace(planned, hops=_with_tls_files(
            planned.hops, transport.tls_ca_file, transport.tls_fingerprints))
    return planned


def _with_tls_files(hops: tuple[NextHop, ...], ca_file: str,
                    fingerprints: tuple[str, ...]) -> tuple[NextHop, ...]:
    if not (ca_file or fingerprints):
        return hops
    return tuple(replace(h, tls_ca_file=ca_file, tls_fingerprints=fingerprints) for h in hops)


def _secure_mx(mx_route: Route) -> Route:
    """TLS level "secure" on MX routing: the certificate is checked against the MX host
    name, and an MX host counts only when that name is the destination domain or under
    it, so a forged MX answer cannot point the mail to a certificate for another name."""
    domain = mx_route.domain
    kept = tuple(h for h in mx_route.hops if h.host == domain or h.host.endswith("." + domain))
    if kept:
        return replace(mx_route, hops=kept)
    raise _fail(REPLY_NO_SECURE_MX, domain=domain)


async def _nexthop(domain: str, spec: str, default_port: int, tls: str,
                   auth: SmtpAuth | None, resolver: Resolver) -> tuple[NextHop, ...]:
    """A configured next hop: resolved to addresses directly, never through MX.  A
    name that does not resolve is an operator problem, so it defers, never bounces."""
    host, port = parse_hostport(spec, default_port)
    if is_ip_literal(host):
        return (NextHop(host, str(ipaddress.ip_address(host)), port, tls, auth),)
    try:
        ips = await resolver.addresses(host)
    except DnsTemporaryError as exc:
        raise _fail(REPLY_DNS_TEMP_FAILURE, domain=host, reason=exc.reason) from None
    except DnsNameError:
        ips = []
    if not ips:
        raise _fail(REPLY_NEXTHOP_UNRESOLVED, host=host, domain=domain)
    return tuple(NextHop(host.lower().rstrip("."), ip, port, tls, auth) for ip in ips)


def order_mx(records: tuple[MxRecord, ...], rng: random.Random) -> list[MxRecord]:
    """RFC 5321 5.1: ascending preference, random order among equal preferences.  A
    host listed twice keeps its best preference only."""
    best: dict[str, MxRecord] = {}
    for record in records:
        if record.host not in best or record.preference < best[record.host].preference:
            best[record.host] = record
    ordered: list[MxRecord] = []
    by_pref = sorted(best.values(), key=lambda r: r.preference)
    for _, group in itertools.groupby(by_pref, key=lambda r: r.preference):
        same = list(group)
        rng.shuffle(same)
        ordered.extend(same)
    return ordered


def _below_self(ordered: list[MxRecord], myself: str, domain: str) -> list[MxRecord]:
    """RFC 5321 5.1: when we are one of the MX hosts, only better ones may be tried;
    when we are the best one, the mail would loop."""
    mine = [r.preference for r in ordered if r.host == myself]
    if not mine:
        return ordered
    better = [r for r in ordered if r.preference < min(mine)]
    if not better:
        raise _fail(REPLY_MAIL_LOOPS, domain=domain)
    return better


async def _mx_route(domain: str, config: Config, resolver: Resolver, tls: str,
                    rng: random.Random) -> Route:
    try:
        mx = await resolver.mx(domain)
    except DnsTemporaryError as exc:
        raise _fail(REPLY_DNS_TEMP_FAILURE, domain=domain, reason=exc.reason) from None
    except DnsNameError as exc:
        raise _fail(REPLY_BAD_DESTINATION, domain=domain, reason=exc.reason) from None
    myself = config.hostname.lower().rstrip(".")
    port = config.delivery.smtp_port
    if mx.kind is MxKind.NXDOMAIN:
        raise _fail(REPLY_DOMAIN_NOT_FOUND, domain=domain)
    if mx.kind is MxKind.NULL_MX:
        raise _fail(REPLY_NULL_MX, domain=domain)
    if mx.kind is MxKind.NO_RECORDS:
        # RFC 5321 5.1: the domain is its own MX, with preference 0.
        if domain == myself:
            raise _fail(REPLY_MAIL_LOOPS, domain=domain)
        try:
            ips = await resolver.addresses(domain)
        except DnsTemporaryError as exc:
            raise _fail(REPLY_DNS_TEMP_FAILURE, domain=domain, reason=exc.reason) from None
        if not ips:
            raise _fail(REPLY_NO_ROUTE, domain=domain)
        return Route(domain, tuple(NextHop(domain, ip, port, tls, None, 0) for ip in ips),
                     "implicit-mx")
    ordered = _below_self(order_mx(mx.records, rng), myself, domain)[:MAX_MX_HOSTS]
    hops, warnings = await _resolve_mx_hosts(domain, ordered, port, tls, resolver)
    return Route(domain, hops, "mx", warnings=warnings)


async def _host_addresses(host: str, resolver: Resolver) -> list[str]:
    if is_ip_literal(host):
        return [str(ipaddress.ip_address(host.strip("[]")))]
    return await resolver.addresses(host)


async def _resolve_mx_hosts(domain: str, ordered: list[MxRecord], port: int, tls: str,
                            resolver: Resolver) -> tuple[tuple[NextHop, ...], tuple[str, ...]]:
    """Resolve every MX host at once.  Hosts without addresses are skipped; if none
    is left the failure is temporary (RFC 5321 5.1: try later)."""
    lookups = await asyncio.gather(*(_host_addresses(r.host, resolver) for r in ordered),
                                   return_exceptions=True)
    warnings: list[str] = []
    hops: list[NextHop] = []
    seen_ips: set[str] = set()
    temporary: DnsTemporaryError | None = None
    for record, result in zip(ordered, lookups, strict=True):
        if isinstance(result, DnsTemporaryError):
            temporary = result
            warnings.append(f"MX host {record.host}: {result.reason}")
        elif isinstance(result, DnsNameError):
            warnings.append(f"MX host {record.host} is not a valid host name")
        elif isinstance(result, BaseException):
            raise result
        elif not result:
            warnings.append(f"MX host {record.host} has no address records")
        else:
            if is_ip_literal(record.host):
                warnings.append(f"MX of {domain} is an IP address ({record.host}), RFC 5321 5.1")
            for ip in result:
                if ip not in seen_ips:  # two names for one server: try it once
                    seen_ips.add(ip)
                    hops.append(NextHop(record.host.strip("[]"), ip, port, tls, None,
                                        record.preference))
    for warning in warnings:
        log_event(log, "routing warning", level=logging.WARNING, domain=domain, detail=warning)
    if hops:
        return tuple(hops), tuple(warnings)
    if temporary is not None:
        raise _fail(REPLY_DNS_TEMP_FAILURE, domain=domain, reason=temporary.reason)
    raise _fail(REPLY_NO_MX_ADDRESS, domain=domain)
