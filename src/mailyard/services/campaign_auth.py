"""Whether a campaign's From domain will pass DMARC: SPF, DKIM and DMARC looked up live.

A campaign message leaves with a VERP envelope sender in the bounce domain
(``[bulk] bounce_domain``) and is DKIM-signed with the From domain's key, so (RFC 7489
3.1):

* SPF is aligned when the bounce domain's SPF record lets this server send (the same
  live check as ``mailyard domain check``) and the bounce domain is in the From
  domain's Organizational Domain (relaxed, ``aspf=r``, the default) or is the From
  domain itself (``aspf=s``);
* DKIM is aligned when the From domain has an active key here and its record in the
  DNS holds that key;
* DMARC needs one valid record at ``_dmarc.<From domain>`` or, failing that, at the
  Organizational Domain (RFC 7489 6.6.3); ``p=none`` is a warning.

A lookup that fails leaves the mechanism unknown (``None``): a warning, not an error,
so a flaky name server does not block a campaign.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mailyard.bulk.templates.check import AuthAlignment, Finding, Severity
from mailyard.dmarc.orgdomain import PublicSuffixes
from mailyard.dmarc.record import Alignment, DmarcRecord, Policy, is_dmarc_record, parse_record
from mailyard.dns.api import DnsError, DnsTemporaryError, Resolver
from mailyard.dnsrecords import DnsRecord, RecordKind, Status, Verdict, check_record
from mailyard.dnsrecords.check import SpfEvaluator
from mailyard.services.dkim import DkimKeys
from mailyard.services.errors import ServiceError

__all__ = ["AlignmentCheck", "DnsAlignment"]


@dataclass(frozen=True)
class AlignmentCheck:
    alignment: AuthAlignment
    findings: tuple[Finding, ...]  # the details: what is missing and how to fix it


class DnsAlignment:
    def __init__(self, resolver: Resolver, keys: DkimKeys, *, hostname: str,
                 bounce_domain: str, suffixes: Callable[[], PublicSuffixes],
                 spf: SpfEvaluator | None = None) -> None:
        self.resolver = resolver
        self.keys = keys
        self.hostname = hostname.lower().rstrip(".")
        self.bounce_domain = bounce_domain.lower().rstrip(".")
        self.suffixes = suffixes
        self.spf = spf

    async def check(self, from_domain: str) -> AlignmentCheck:
        domain = from_domain.lower().rstrip(".")
        findings: list[Finding] = []
        record, dmarc = await self._dmarc(domain, findings)
        strict_spf = record is not None and record.aspf is Alignment.STRICT
        spf = await self._spf(domain, strict_spf, findings)
        dkim = await self._dkim(domain, findings)
        return AlignmentCheck(AuthAlignment(spf=spf, dkim=dkim, dmarc=dmarc), tuple(findings))

    async def _dmarc(self, domain: str, findings: list[Finding]
                     ) -> tuple[DmarcRecord | None, bool | None]:
        org = self.suffixes().organizational_domain(domain)
        names = [f"_dmarc.{domain}"] + ([f"_dmarc.{org}"] if org != domain else [])
        for name in names:
            try:
                texts = [t for t in await self.resolver.txt(name) if is_dmarc_record(t)]
            except DnsTemporaryError as exc:
                findings.append(Finding(Severity.WARNING, "dmarc-lookup-failed",
                                        f"{name}: lookup failed ({exc.reason})"))
                return None, None
            except DnsError:
                continue
            if not texts:
                continue
            if len(texts) > 1:
                findings.append(Finding(Severity.ERROR, "dmarc-record-invalid",
                                        f"{name} has {len(texts)} DMARC records; receivers "
                                        "then apply none (RFC 7489 6.6.3)"))
                return None, False
            parsed = parse_record(texts[0])
            if not isinstance(parsed, DmarcRecord):
                findings.append(Finding(Severity.ERROR, "dmarc-record-invalid",
                                        f"{name}: {parsed.reason}"))
                return None, False
            if parsed.policy is Policy.NONE:
                findings.append(Finding(Severity.WARNING, "dmarc-policy-none",
                                        f"{name} says p=none: mailbox providers trust a "
                                        "sender more with p=quarantine or p=reject"))
            return parsed, True
        findings.append(Finding(Severity.ERROR, "dmarc-missing",
                                f"no DMARC record at _dmarc.{domain}: Gmail and Yahoo "
                                f"require one of bulk senders; publish e.g. "
                                f"\"v=DMARC1; p=quarantine; rua=mailto:dmarc-reports@{domain}\""))
        return None, False

    async def _spf(self, domain: str, strict: bool, findings: list[Finding]) -> bool | None:
        bounce = self.bounce_domain
        record = DnsRecord(RecordKind.SPF, bounce, "TXT", "v=spf1 mx -all", "SPF")
        verdict = await check_record(self.resolver, record, hostname=self.hostname,
                                     spf=self.spf)
        suffixes = self.suffixes()
        aligned = bounce == domain if strict else \
            suffixes.organizational_domain(bounce) == suffixes.organizational_domain(domain)
        if not aligned:
            findings.append(Finding(Severity.ERROR, "spf-domain-not-aligned",
                                    f"the envelope sender's domain {bounce} is not "
                                    f"{'the From domain' if strict else 'in the From domain'}"
                                    f" {domain} (set [bulk] bounce_domain)"))
            return False
        return _verdict(verdict, "spf", f"SPF of {bounce}", findings)

    async def _dkim(self, domain: str, findings: list[Finding]) -> bool | None:
        try:
            selectors = [s for s in self.keys.show(domain).selectors if s.state == "active"]
        except ServiceError as exc:
            findings.append(Finding(Severity.ERROR, "dkim-no-key",
                                    f"no DKIM key signs for {domain}: {exc}"))
            return False
        if not selectors:
            findings.append(Finding(Severity.ERROR, "dkim-no-key",
                                    f"no DKIM key signs for {domain}: run `mailyard domain "
                                    f"records {domain}` and publish the key"))
            return False
        results = []
        for s in selectors:
            record = DnsRecord(RecordKind.DKIM, s.record_name, "TXT", s.record, "DKIM")
            verdict = await check_record(self.resolver, record, hostname=self.hostname)
            results.append(_verdict(verdict, "dkim", f"DKIM key {s.record_name}", findings))
        if all(r is True for r in results):
            return True
        return False if False in results else None


def _verdict(verdict: Verdict, name: str, what: str, findings: list[Finding]) -> bool | None:
    if verdict.status is Status.OK:
        return True
    detail = "; ".join(p for p in (verdict.problem, verdict.fix) if p)
    if verdict.status is Status.UNKNOWN:
        findings.append(Finding(Severity.WARNING, f"{name}-lookup-failed", f"{what}: {detail}"))
        return None
    findings.append(Finding(Severity.ERROR, f"{name}-{verdict.status.value}", f"{what}: {detail}"))
    return False
