"""The DNS records a local domain publishes (MX, SPF, DKIM, DMARC, MTA-STS, TLS-RPT,
RFC 6186 SRV) and a live check of each against the DNS.

Pure over an injected :class:`mailyard.dns.Resolver`: :func:`expected_records` says what
to publish, :func:`check_record` how the DNS compares; the operator-facing operation
that joins them to the configuration and the DKIM keys is
:class:`mailyard.services.domains.DomainSetup`.
"""

from __future__ import annotations

from mailyard.dnsrecords.check import PolicyFetcher, SpfEvaluator, check_record, check_records
from mailyard.dnsrecords.expected import (
    ClientService,
    MtaStsPolicy,
    expected_records,
    mta_sts_policy,
)
from mailyard.dnsrecords.model import DnsRecord, RecordKind, Status, Verdict

__all__ = [
    "ClientService",
    "DnsRecord",
    "MtaStsPolicy",
    "PolicyFetcher",
    "RecordKind",
    "SpfEvaluator",
    "Status",
    "Verdict",
    "check_record",
    "check_records",
    "expected_records",
    "mta_sts_policy",
]
