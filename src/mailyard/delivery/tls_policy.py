"""The TLS each MX host of a destination must offer: DANE, then MTA-STS, then
opportunistic TLS (RFC 8461 2: DANE takes precedence where both apply).

Applied to routes found through MX records (and the implicit MX) whose hops have the
opportunistic levels "may" or "encrypt"; a transport or relay host, or a level the
operator set to "none", "verify" or "secure", is left as configured.

Per MX host:

* **DANE** (``dane.enabled``; :mod:`mailyard.dane.lookup` says what is checked):
  usable validated TLSA records make the host's level "verify" against them (the
  certificate is checked against the TLSA records, not the CA store); validated but
  unusable records make it "encrypt"; a failed (bogus) lookup drops the host.
* **MTA-STS** (``mta_sts.enabled``), for hosts without DANE: in ``enforce`` mode a host
  the policy does not list is dropped and the others get "verify" (certificate chain
  and MX host name, RFC 8461 4.2); ``testing`` mode changes nothing, a host outside the
  policy is only reported (TLS-RPT).
* otherwise the level stays as configured ("may").

When every host is dropped, the mail is deferred with 451 4.7.5.  Each hop carries the
policy it runs under (:class:`mailyard.tlsrpt.results.PolicyTag`), so the connection
pool can count the session's TLS outcome for TLS-RPT.
"""

from __future__ import annotations

from dataclasses import replace

from mailyard.dane.lookup import DaneState, HostDane, host_dane, mx_secure
from mailyard.delivery.routing import NextHop, Route, RouteError
from mailyard.dns.api import Resolver
from mailyard.mtasts import Discovery, Mode, StsResult
from mailyard.proto.smtp.client import tls_level
from mailyard.proto.smtp.replies import REPLY_TLS_POLICY_NO_HOP
from mailyard.tlsrpt.results import PolicyTag, PolicyType, ResultType
from mailyard.tlsrpt.store import TlsOutcomes

__all__ = ["TransportSecurity"]

_OPPORTUNISTIC = ("may", "encrypt")


class TransportSecurity:
    def __init__(self, sts: Discovery | None = None, dane_resolver: Resolver | None = None,
                 outcomes: TlsOutcomes | None = None, sts_ca_file: str = "") -> None:
        self.sts = sts
        self.dane_resolver = dane_resolver
        self.outcomes = outcomes
        self.sts_ca_file = sts_ca_file

    async def secure(self, route: Route) -> list[NextHop]:
        """The hops of ``route`` with the TLS their policies require.  Raises
        :class:`RouteError` (451 4.7.5) when no host may be used."""
        hops = list(route.hops)
        if route.via not in ("mx", "implicit-mx") or not any(
                tls_level(h.tls_policy) in _OPPORTUNISTIC for h in hops):
            return hops
        domain = route.domain
        dane = await self._dane(domain, hops)
        sts = await self.sts.policy_for(domain) if self.sts is not None else StsResult(None)
        if sts.failure:
            self._count(PolicyTag(domain, PolicyType.STS), "", "", ResultType(sts.failure),
                        sts.detail)
        kept: list[NextHop] = []
        refusals: list[tuple[str, str]] = []
        for hop in hops:
            if tls_level(hop.tls_policy) not in _OPPORTUNISTIC:
                kept.append(hop)
                continue
            host = dane.get(hop.host)
            if host is not None and host.state is not DaneState.INSECURE:
                self._with_dane(domain, hop, host, kept, refusals)
            else:
                self._with_sts(domain, hop, sts, kept, refusals)
        if kept:
            return kept
        policy, reason = refusals[0] if refusals else ("TLS", "no usable host")
        raise RouteError(REPLY_TLS_POLICY_NO_HOP.with_text(REPLY_TLS_POLICY_NO_HOP.text.format(
            domain=domain, policy=policy, reason=reason)))

    async def _dane(self, domain: str, hops: list[NextHop]) -> dict[str, HostDane]:
        if self.dane_resolver is None or not await mx_secure(self.dane_resolver, domain):
            return {}
        found = {}
        for host in dict.fromkeys(h.host for h in hops):
            found[host] = await host_dane(self.dane_resolver, host)
        return found

    def _with_dane(self, domain: str, hop: NextHop, host: HostDane, kept: list[NextHop],
                   refusals: list[tuple[str, str]]) -> None:
        tag = PolicyTag(domain, PolicyType.TLSA, host.records)
        if host.state is DaneState.BOGUS:
            self._count(tag, hop.host, hop.ip, ResultType.DNSSEC_INVALID, host.reason)
            refusals.append(("DANE", f"{hop.host}: {host.reason}"))
        elif host.state is DaneState.UNUSABLE:
            kept.append(replace(hop, tls_policy="encrypt", tls_report=tag))
        else:
            kept.append(replace(hop, tls_policy="verify", tls_tlsa=host.records,
                                tls_names=host.names, tls_ca_file="", tls_fingerprints=(),
                                tls_report=tag))

    def _with_sts(self, domain: str, hop: NextHop, sts: StsResult, kept: list[NextHop],
                  refusals: list[tuple[str, str]]) -> None:
        policy = sts.policy
        if policy is None or policy.mode is Mode.NONE:
            kept.append(replace(hop, tls_report=PolicyTag(domain)))
            return
        tag = PolicyTag(domain, PolicyType.STS, policy.lines(),
                        enforced=policy.mode is Mode.ENFORCE)
        allowed = policy.allows(hop.host)
        if not allowed:
            self._count(tag, hop.host, hop.ip, ResultType.VALIDATION_FAILURE,
                        f"MX host {hop.host} is not listed in the MTA-STS policy")
        if policy.mode is Mode.TESTING:
            kept.append(replace(hop, tls_report=tag))
        elif allowed:
            kept.append(replace(hop, tls_policy="verify", tls_ca_file=self.sts_ca_file,
                                tls_fingerprints=(), tls_report=tag))
        else:
            refusals.append(("MTA-STS", f"MX host {hop.host} is not listed in the policy"))

    def _count(self, tag: PolicyTag, host: str, ip: str, result: ResultType,
               detail: str) -> None:
        if self.outcomes is not None:
            self.outcomes.record(tag, host, ip, result, detail)
