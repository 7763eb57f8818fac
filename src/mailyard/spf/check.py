"""check_host() (RFC 7208 4): the SPF evaluation, over an injected resolver.

One :class:`_Evaluation` runs per check: it carries the counters the RFC bounds (4.6.4:
at most ``max_lookups`` terms that query DNS, ``max_void_lookups`` queries that find
nothing, ``max_mx`` MX names per ``mx``, ``max_ptr`` PTR names per ``ptr``) and is
itself bounded by ``time_budget`` seconds overall, so hostile DNS ends in
``permerror`` or ``temperror``, never in a stalled session.  Inside it, the two error
results travel as private exceptions up to :func:`check_host`, which turns every
outcome into an :class:`~mailyard.spf.result.SpfResult` value.

Queries go through the resolver given, normally the caching one, so a warm
evaluation asks the network nothing.  Deliberate readings of the RFC:

* a query counts as void when it is answered with no records (NODATA or NXDOMAIN),
  whichever term made it, except the ``exp=`` lookup and the first record lookup;
* ``mx`` and ``ptr`` look up every name (up to their limit) before comparing, as the
  RFC's text reads (5.4, 5.5); a DNS error in the ``ptr`` lookups skips that name
  (5.5) instead of ending the evaluation;
* a target name that is not a valid DNS name (an empty or over-long label after macro
  expansion) matches nothing without a query; for ``include`` and ``redirect`` it is
  ``none`` for the target, so ``permerror`` (5.2, 6.1).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass

from mailyard.dns.api import (
    DnsNameError,
    DnsTemporaryError,
    Resolver,
    ascii_domain,
    parse_mx_record,
)
from mailyard.spf.macro import (
    MacroContext,
    MacroString,
    MacroSyntaxError,
    expand,
    expand_domain,
    needs_validated_name,
    parse_macro_string,
)
from mailyard.spf.memo import SpfMemo
from mailyard.spf.record import (
    COUNTED,
    Directive,
    Mechanism,
    MultipleRecordsError,
    Record,
    RecordSyntaxError,
    parse_record,
    select_record,
)
from mailyard.spf.result import Identity, SpfResult, SpfStatus

__all__ = ["SpfLimits", "check_helo", "check_host", "check_mail_from", "remembered"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class SpfLimits:
    """RFC 7208 4.6.4's processing limits and the overall time budget (seconds)."""

    max_lookups: int = 10
    max_void_lookups: int = 2
    max_mx: int = 10
    max_ptr: int = 10
    time_budget: float = 10.0


DEFAULT_LIMITS = SpfLimits()


class _PermError(Exception):
    pass


class _TempError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class _Outcome:
    status: SpfStatus
    mechanism: str = ""
    explanation: str = ""
    problem: str = ""


def client_address(ip: str) -> IPAddress:
    """The client's address; an IPv4-mapped IPv6 address is its IPv4 address (RFC 7208
    5: "A" records are then fetched).  Raises ValueError for a malformed address."""
    address = ipaddress.ip_address(ip.strip().strip("[]").removeprefix("IPv6:"))
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


# Names repeat from one evaluation to the next; invalid ones raise and are not kept.
_query_name = functools.lru_cache(maxsize=8192)(ascii_domain)


def valid_domain(name: str) -> bool:
    """RFC 7208 4.3: a well-formed, multi-label domain name."""
    try:
        return "." in _query_name(name)
    except DnsNameError:
        return False


@functools.lru_cache(maxsize=8192)
def _address(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _same_prefix(ip: IPAddress, text: str, prefix: int) -> bool:
    other = _address(text)
    if other is None or other.version != ip.version:
        return False
    shift = ip.max_prefixlen - prefix
    return (int(ip) >> shift) == (int(other) >> shift)


class _Evaluation:
    def __init__(self, resolver: Resolver, ip: IPAddress, context: MacroContext,
                 limits: SpfLimits) -> None:
        self.resolver = resolver
        self.ip = ip
        self.context = context
        self.limits = limits
        self.address_type = "A" if ip.version == 4 else "AAAA"
        self.lookups = 0
        self.void_lookups = 0
        self.ttl: int | None = None  # the shortest TTL of the answers used
        self.uses_time = False  # a TXT record used holds the %{t} macro
        self.temporary = False  # a lookup failed for now (skipped where the RFC says so)

    # --- DNS, with the counters ---------------------------------------------------
    async def _query(self, name: str, rdtype: str, *, void_counts: bool = True
                     ) -> tuple[str, ...]:
        try:
            qname = _query_name(name)
            answer = await self.resolver.query(qname, rdtype)
        except DnsNameError:
            return ()
        except DnsTemporaryError as exc:
            self.temporary = True
            raise _TempError(f"DNS lookup of {exc.name}/{rdtype} failed: {exc.reason}") from None
        self.ttl = answer.ttl if self.ttl is None else min(self.ttl, answer.ttl)
        if rdtype == "TXT" and any("%{t" in r or "%{T" in r for r in answer.records):
            self.uses_time = True
        if not answer.records and void_counts:
            self.void_lookups += 1
            if self.void_lookups > self.limits.max_void_lookups:
                raise _PermError(f"more than {self.limits.max_void_lookups} void DNS lookups "
                                 f"(the last: {qname}/{rdtype})")
        return answer.records

    def _count_lookup(self, term: str) -> None:
        self.lookups += 1
        if self.lookups > self.limits.max_lookups:
            raise _PermError(f"more than {self.limits.max_lookups} DNS-querying terms "
                             f"(the last: {term})")

    # --- check_host() -------------------------------------------------------------
    async def check(self, domain: str, *, top: bool = False,
                    explain: bool = True) -> _Outcome:
        """RFC 7208 4.3 to 4.7 for one <domain>."""
        if not valid_domain(domain):
            return _Outcome(SpfStatus.NONE, problem=f"{domain!r} is not a valid domain name")
        texts = await self._query(domain, "TXT", void_counts=not top)
        try:
            text = select_record(texts)
        except MultipleRecordsError as exc:
            raise _PermError(f"{domain}: {exc}") from None
        if text is None:
            return _Outcome(SpfStatus.NONE)
        try:
            record = parse_record(text)
        except RecordSyntaxError as exc:
            raise _PermError(f"{domain}: {exc}") from None
        context = self.context.for_domain(domain)
        return await self._evaluate(record, context, explain)

    async def _evaluate(self, record: Record, context: MacroContext,
                        explain: bool) -> _Outcome:
        for directive in record.directives:
            if await self._matches(directive, context):
                explanation = ""
                if (directive.qualifier is SpfStatus.FAIL and explain
                        and record.explanation is not None):
                    explanation = await self._explanation(record.explanation, context)
                return _Outcome(directive.qualifier, directive.text, explanation)
        if record.redirect is None:
            return _Outcome(SpfStatus.NEUTRAL)
        # RFC 7208 6.1: the redirect target's result is ours; "none" there is an error.
        self._count_lookup(record.redirect_text)
        target = await self._target(record.redirect, context)
        outcome = await self.check(target, explain=explain)
        if outcome.status is SpfStatus.NONE:
            raise _PermError(f"{record.redirect_text}: {target!r} has no SPF record")
        return outcome

    async def _target(self, spec: MacroString, context: MacroContext) -> str:
        if needs_validated_name(spec):
            context = context.with_validated_name(await self._validated_name(context.domain))
        return expand_domain(spec, context)

    async def _matches(self, directive: Directive, context: MacroContext) -> bool:
        mechanism = directive.mechanism
        if mechanism is Mechanism.ALL:
            return True
        if directive.network is not None:  # ip4, ip6
            return self.ip in directive.network
        if mechanism in COUNTED:
            self._count_lookup(directive.text)
        target = context.domain if directive.domain is None else \
            await self._target(directive.domain, context)
        if mechanism is Mechanism.INCLUDE:
            return await self._include(directive, target)
        if mechanism is Mechanism.EXISTS:  # always an A query (RFC 7208 5.7)
            return bool(await self._query(target, "A"))
        prefix = directive.cidr4 if self.ip.version == 4 else directive.cidr6
        if mechanism is Mechanism.A:
            return self._any_in_prefix(await self._query(target, self.address_type), prefix)
        if mechanism is Mechanism.MX:
            return await self._mx(target, prefix)
        # ptr
        target = target.lower()
        return any(name == target or name.endswith("." + target)
                   for name in await self._validated_names())

    def _any_in_prefix(self, addresses: tuple[str, ...], prefix: int) -> bool:
        return any(_same_prefix(self.ip, a, prefix) for a in addresses)

    async def _include(self, directive: Directive, target: str) -> bool:
        """RFC 7208 5.2: pass matches; fail, softfail, neutral do not; none is an
        error; errors are the including record's errors."""
        outcome = await self.check(target, explain=False)
        if outcome.status is SpfStatus.NONE:
            raise _PermError(f"{directive.text}: {target!r} has no SPF record")
        return outcome.status is SpfStatus.PASS

    async def _mx(self, target: str, prefix: int) -> bool:
        """RFC 7208 5.4: more than ``max_mx`` MX names is a permerror."""
        hosts = sorted((parse_mx_record(r) for r in await self._query(target, "MX")),
                       key=lambda mx: (mx.preference, mx.host))
        if len(hosts) > self.limits.max_mx:
            raise _PermError(f"mx:{target} has {len(hosts)} MX records, "
                             f"more than {self.limits.max_mx}")
        addresses: list[str] = []
        for mx in hosts:
            if mx.host != ".":  # a Null MX names no host
                addresses.extend(await self._query(mx.host, self.address_type))
        return self._any_in_prefix(tuple(addresses), prefix)

    async def _validated_names(self) -> list[str]:
        """RFC 7208 5.5: the client's PTR names (the first ``max_ptr``) whose
        addresses include the client's.  DNS errors skip a name, or give no names."""
        try:
            names = await self._query(self.ip.reverse_pointer, "PTR")
        except _TempError:
            return []
        validated: list[str] = []
        for name in names[: self.limits.max_ptr]:
            try:
                addresses = await self._query(name, self.address_type)
            except _TempError:
                continue
            if self._any_in_prefix(addresses, self.ip.max_prefixlen):
                validated.append(name.lower())
        return validated

    async def _validated_name(self, domain: str) -> str:
        """RFC 7208 7.3 %{p}: the validated name equal to <domain>, else one under it,
        else any; "unknown" when there is none."""
        names = await self._validated_names()
        domain = domain.lower()
        for name in names:
            if name == domain:
                return name
        for name in names:
            if name.endswith("." + domain):
                return name
        return names[0] if names else "unknown"

    async def _explanation(self, spec: MacroString, context: MacroContext) -> str:
        """RFC 7208 6.2: any problem (DNS error, not exactly one record, bad macro
        syntax) means no explanation, never a different result."""
        try:
            target = await self._target(spec, context)
            texts = await self._query(target, "TXT", void_counts=False)
        except (_TempError, _PermError):
            return ""
        if len(texts) != 1:
            return ""
        try:
            parts = parse_macro_string(texts[0], explanation=True)
        except MacroSyntaxError:
            return ""
        if needs_validated_name(parts):
            try:
                name = await self._validated_name(context.domain)
            except _PermError:
                name = "unknown"
            context = context.with_validated_name(name)
        return expand(parts, context)


async def check_host(resolver: Resolver, ip: str, domain: str, sender: str, helo: str = "",
                     *, identity: Identity = Identity.MAILFROM, receiver: str = "unknown",
                     limits: SpfLimits = DEFAULT_LIMITS,
                     clock: Callable[[], float] = time.time,
                     memo: SpfMemo | None = None) -> SpfResult:
    """RFC 7208 4.1: the SPF result for ``ip`` sending as ``sender`` for ``domain``.

    ``sender`` without a local part gets ``postmaster`` (4.3).  ``receiver`` is the
    ``%{r}`` macro (our host name).  ``memo`` remembers results for as long as the
    DNS answers they came from (see :mod:`mailyard.spf.memo`).  Raises ValueError
    only for an ``ip`` that is not an IP address; every SPF outcome is a value.
    """
    key = _memo_key(identity, ip, domain, sender, helo, receiver, limits)
    if memo is not None:
        known = memo.get(key)
        if known is not None:
            return known
    address = client_address(ip)
    local, at, sender_domain = sender.rpartition("@")
    if not at:
        local, sender_domain = "", sender
    local = local or "postmaster"
    sender = f"{local}@{sender_domain}"
    domain = domain.rstrip(".")
    context = MacroContext(sender=sender, local_part=local, sender_domain=sender_domain,
                           domain=domain, ip=address, helo=helo, receiver=receiver or "unknown",
                           timestamp=int(clock()))
    evaluation = _Evaluation(resolver, address, context, limits)
    try:
        async with asyncio.timeout(limits.time_budget):
            outcome = await evaluation.check(domain, top=True)
    except _PermError as exc:
        outcome = _Outcome(SpfStatus.PERMERROR, problem=str(exc))
    except _TempError as exc:
        outcome = _Outcome(SpfStatus.TEMPERROR, problem=str(exc))
    except TimeoutError:
        outcome = _Outcome(SpfStatus.TEMPERROR,
                           problem=f"no result within {limits.time_budget:g} s")
    result = SpfResult(outcome.status, identity, str(address), sender, domain,
                       outcome.mechanism, outcome.explanation, outcome.problem,
                       evaluation.lookups, evaluation.void_lookups)
    if (memo is not None and evaluation.ttl is not None and not evaluation.uses_time
            and not evaluation.temporary and outcome.status is not SpfStatus.TEMPERROR):
        memo.put(key, result, evaluation.ttl)
    return result


def _memo_key(identity: Identity, ip: str, domain: str, sender: str, helo: str,
              receiver: str, limits: SpfLimits) -> tuple[object, ...]:
    return (identity, ip, domain, sender, helo, receiver, limits)


def remembered(memo: SpfMemo, ip: str, mail_from: str, helo: str, *, identity: Identity,
               receiver: str = "unknown", limits: SpfLimits = DEFAULT_LIMITS
               ) -> SpfResult | None:
    """The result :func:`check_mail_from` (``identity`` MAILFROM) or :func:`check_helo`
    (HELO) would give now, when it needs no DNS: it is in ``memo``, or the HELO name is
    not a domain name.  None: evaluate (a repeat sender then costs no task)."""
    if identity is Identity.MAILFROM and mail_from:
        domain = mail_from.rpartition("@")[2]
        return memo.get(_memo_key(identity, ip, domain, mail_from, helo, receiver, limits))
    name, sender, not_a_name = _helo_identity(ip, helo, identity)
    if not_a_name is not None:
        return not_a_name
    return memo.get(_memo_key(identity, ip, name, sender, name, receiver, limits))


async def check_mail_from(resolver: Resolver, ip: str, mail_from: str, helo: str, *,
                          receiver: str = "unknown", limits: SpfLimits = DEFAULT_LIMITS,
                          clock: Callable[[], float] = time.time,
                          memo: SpfMemo | None = None) -> SpfResult:
    """The MAIL FROM identity (RFC 7208 2.4); the null reverse-path checks
    ``postmaster@<HELO>``."""
    if not mail_from:
        return await _check_helo(resolver, ip, helo, Identity.MAILFROM, receiver, limits, clock,
                                 memo)
    domain = mail_from.rpartition("@")[2]
    return await check_host(resolver, ip, domain, mail_from, helo, identity=Identity.MAILFROM,
                            receiver=receiver, limits=limits, clock=clock, memo=memo)


async def check_helo(resolver: Resolver, ip: str, helo: str, *, receiver: str = "unknown",
                     limits: SpfLimits = DEFAULT_LIMITS,
                     clock: Callable[[], float] = time.time,
                     memo: SpfMemo | None = None) -> SpfResult:
    """The HELO identity (RFC 7208 2.3): ``none`` when the HELO argument is an
    address literal or not a domain name."""
    return await _check_helo(resolver, ip, helo, Identity.HELO, receiver, limits, clock, memo)


async def _check_helo(resolver: Resolver, ip: str, helo: str, identity: Identity,
                      receiver: str, limits: SpfLimits,
                      clock: Callable[[], float], memo: SpfMemo | None = None) -> SpfResult:
    name, sender, not_a_name = _helo_identity(ip, helo, identity)
    if not_a_name is not None:
        return not_a_name
    return await check_host(resolver, ip, name, sender, name, identity=identity,
                            receiver=receiver, limits=limits, clock=clock, memo=memo)


@functools.lru_cache(maxsize=4096)  # a client says the same HELO for every message
def _helo_identity(ip: str, helo: str, identity: Identity
                   ) -> tuple[str, str, SpfResult | None]:
    """The HELO name and its ``postmaster`` sender, and the ``none`` result when the
    name is an address literal or not a domain name (then nothing is looked up).
    Values only (the result is immutable), so they are remembered."""
    name = helo.strip().rstrip(".")
    sender = f"postmaster@{name}"
    if name.startswith("[") or not valid_domain(name) or name.rpartition(".")[2].isdigit():
        return name, sender, SpfResult(SpfStatus.NONE, identity, str(client_address(ip)),
                                       sender, name, problem=f"HELO {helo!r} is not a domain name")
    return name, sender, None
