"""Setting a domain up in the DNS: the records it publishes, and a live check of them.

``mailyard domain add|records|check`` (and the HTTP API) are adapters over
:class:`DomainSetup`.  What the records say comes from the server itself: its host
name (MX, SPF, MTA-STS), the domain's DKIM keys (made when missing, see
:meth:`DkimKeys.ensure`), the client listeners of ``[listen]`` (RFC 6186 SRV records,
one per service that has a listener, on the port of its first one).  The comparison
with the DNS is :mod:`mailyard.dnsrecords.check`.

Autoconfig and Autodiscover (the XML files some clients fetch over HTTP) are not
served, so no CNAMEs are proposed for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mailyard.config import Config, ListenerKind, parse_hostport
from mailyard.dns.api import Resolver
from mailyard.dnsrecords import (
    ClientService,
    DnsRecord,
    MtaStsPolicy,
    RecordKind,
    SpfEvaluator,
    Status,
    Verdict,
    check_records,
    expected_records,
    mta_sts_policy,
)
from mailyard.dnsrecords.expected import SERVICE_PRIORITY
from mailyard.mtasts.fetch import Fetched, FetchFailed, fetch_policy
from mailyard.services.accounts import Accounts, Domain
from mailyard.services.dkim import DkimKeys

__all__ = ["DomainCheck", "DomainRecords", "DomainSetup", "client_services"]


@dataclass(frozen=True)
class DomainRecords:
    domain: str
    records: tuple[DnsRecord, ...]
    mta_sts_policy: MtaStsPolicy
    notes: tuple[str, ...] = ()
    added: Domain | None = None  # set by DomainSetup.add_domain

    def to_dict(self) -> dict[str, Any]:
        return {"domain": self.domain, "records": [r.to_dict() for r in self.records],
                "mta_sts_policy": self.mta_sts_policy.to_dict(), "notes": list(self.notes)}


@dataclass(frozen=True)
class DomainCheck:
    domain: str
    verdicts: tuple[Verdict, ...]

    @property
    def ok(self) -> bool:
        return all(v.ok for v in self.verdicts)

    def count(self, status: Status) -> int:
        return sum(1 for v in self.verdicts if v.status is status)

    def to_dict(self) -> dict[str, Any]:
        return {"domain": self.domain, "ok": self.ok,
                "records": [v.to_dict() for v in self.verdicts]}


def client_services(config: Config) -> list[ClientService]:
    """The RFC 6186 services with a listener, each on its first listener's port."""
    services = []
    for kind in ListenerKind:
        addresses: Sequence[str] = getattr(config.listen, kind.value)
        if kind.value in SERVICE_PRIORITY and addresses:
            services.append(ClientService(kind.value, parse_hostport(addresses[0])[1]))
    return services


class DomainSetup:
    def __init__(self, accounts: Accounts, keys: DkimKeys, config: Config) -> None:
        self.accounts = accounts
        self.keys = keys
        self.hostname = config.hostname.lower().rstrip(".")
        self.services = client_services(config)
        self.relayhost = config.delivery.relayhost
        self.mta_sts = config.mta_sts  # fetch_timeout and ca_file of policy fetches

    def add_domain(self, name: str) -> DomainRecords:
        """Add the domain, make its DKIM keys, and say what to publish."""
        added = self.accounts.add_domain(name)
        records = self.records(added.name)
        return DomainRecords(records.domain, records.records, records.mta_sts_policy,
                             records.notes, added)

    def records(self, domain: str) -> DomainRecords:
        """What ``domain`` (a local domain) publishes; its DKIM keys are made first if it
        has none (a domain listed in ``local_domains`` was never ``add``-ed)."""
        self.keys.ensure(domain)
        shown = self.keys.show(domain)
        dkim = [(s.record_name, s.record) for s in shown.selectors
                if s.state in ("active", "pending")]
        policy = mta_sts_policy(shown.domain, [self.hostname])
        records = expected_records(shown.domain, self.hostname, dkim=dkim,
                                   services=self.services, policy=policy)
        return DomainRecords(shown.domain, tuple(records), policy,
                             self._notes(shown.domain, policy))

    async def check(self, domain: str, resolver: Resolver,
                    spf: SpfEvaluator | None = None) -> DomainCheck:
        """Each record looked up live and compared, the MTA-STS policy fetched over
        HTTPS (``[mta_sts] fetch_timeout``, ``ca_file``).  DKIM keys are not made here:
        a domain without one gets a ``missing`` DKIM verdict."""
        shown = self.keys.show(domain)
        dkim = [(s.record_name, s.record) for s in shown.selectors
                if s.state in ("active", "pending")]
        policy = mta_sts_policy(shown.domain, [self.hostname])
        records = expected_records(shown.domain, self.hostname, dkim=dkim,
                                   services=self.services, policy=policy)
        async def fetch(name: str) -> Fetched | FetchFailed:
            return await fetch_policy(name, resolver, timeout=self.mta_sts.fetch_timeout,
                                      ca_file=self.mta_sts.ca_file)

        verdicts = await check_records(resolver, records, hostname=self.hostname, spf=spf,
                                       fetch_policy=fetch)
        if not dkim:
            record = DnsRecord(RecordKind.DKIM, f"{self.keys.selector}._domainkey.{shown.domain}",
                               "TXT", "", "DKIM")
            verdicts.insert(2, Verdict(record, Status.MISSING,
                                       problem="this server has no DKIM key for the domain",
                                       fix=f"run `mailyard domain records {shown.domain}` "
                                           "(it makes the key) and publish its record"))
        return DomainCheck(shown.domain, tuple(verdicts))

    def _notes(self, domain: str, policy: MtaStsPolicy) -> tuple[str, ...]:
        notes = [
            f"{self.hostname} needs A/AAAA records with the server's public addresses, "
            "and those addresses a PTR record naming it",
            f"serve the MTA-STS policy below at {policy.url} over HTTPS (a certificate "
            f"valid for mta-sts.{domain}); start in mode testing, read the TLS reports, "
            "then switch to enforce (`mailyard domain mta-sts "
            f"{domain} --mode enforce` prints that policy and its record)",
            f"create dmarc-reports@{domain} and tls-reports@{domain} (users or aliases) "
            "to receive the reports",
        ]
        if self.relayhost:
            notes.append(f"mail leaves through the relay host {self.relayhost}: add what its "
                         "operator documents to the SPF record (e.g. include:...)")
        if not self.services:
            notes.append("no client listener (submission, IMAP, POP3) is configured: "
                         "no SRV records")
        return tuple(notes)
