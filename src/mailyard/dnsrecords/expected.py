"""What a local domain should publish, from what the server is: its host name, its DKIM
keys, the client services it listens for.

* MX (RFC 5321 5.1): the server's host name.
* SPF (RFC 7208): ``v=spf1 mx -all``: the hosts the MX names may send, nobody else.
* DKIM (RFC 6376 3.6.2.1): one TXT record per selector that signs or is about to.
* DMARC (RFC 7489 6.1): ``p=quarantine`` with aggregate reports to
  ``dmarc-reports@<domain>``.
* MTA-STS (RFC 8461 3.1): the ``_mta-sts`` TXT record, whose id is derived from the
  policy text, so it changes exactly when the policy does.
* TLS-RPT (RFC 8460 3): reports to ``tls-reports@<domain>``.
* RFC 6186 SRV records for the client services the server listens for, implicit TLS
  preferred to STARTTLS (RFC 8314 5.1) and IMAP to POP3 (RFC 6186 3.4), through the
  priorities in :data:`SERVICE_PRIORITY`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from mailyard.dnsrecords.model import DnsRecord, RecordKind
from mailyard.mtasts.policy import Mode, policy_text, record_text

__all__ = ["ClientService", "MtaStsPolicy", "SERVICE_PRIORITY", "expected_records",
           "mta_sts_policy"]

MX_PREFERENCE = 10
#: RFC 6186 SRV services: lower numbers are tried first (RFC 8314 5.1: implicit TLS
#: before STARTTLS; RFC 6186 3.4: the priority orders IMAP before POP3 too).
SERVICE_PRIORITY = {"submissions": 0, "submission": 10, "imaps": 0, "imap": 10,
                    "pop3s": 20, "pop3": 30}
MTA_STS_MAX_AGE = 604_800  # a week


@dataclass(frozen=True)
class ClientService:
    """A client service the server offers: its RFC 6186 name and its port."""

    service: str  # a key of SERVICE_PRIORITY
    port: int


@dataclass(frozen=True)
class MtaStsPolicy:
    """The policy file of RFC 8461 3.2, served at ``url`` over HTTPS."""

    url: str
    text: str
    policy_id: str

    def to_dict(self) -> dict[str, str]:
        return {"url": self.url, "text": self.text, "id": self.policy_id}


def mta_sts_policy(domain: str, mx_hosts: Sequence[str], mode: Mode = Mode.TESTING,
                   max_age: int = MTA_STS_MAX_AGE) -> MtaStsPolicy:
    text = policy_text(mode, tuple(mx_hosts), max_age)
    policy_id = hashlib.sha256(text.encode()).hexdigest()[:20]
    return MtaStsPolicy(f"https://mta-sts.{domain}/.well-known/mta-sts.txt", text, policy_id)


_SERVICE_NAMES = {"submissions": "mail submission (implicit TLS)",
                  "submission": "mail submission (STARTTLS)", "imaps": "IMAP (implicit TLS)",
                  "imap": "IMAP (STARTTLS)", "pop3s": "POP3 (implicit TLS)",
                  "pop3": "POP3 (STARTTLS)"}


def _srv(domain: str, hostname: str, service: ClientService) -> DnsRecord:
    priority = SERVICE_PRIORITY[service.service]
    return DnsRecord(RecordKind.SRV, f"_{service.service}._tcp.{domain}", "SRV",
                     f"{priority} 1 {service.port} {hostname}",
                     f"mail clients find {_SERVICE_NAMES[service.service]} here (RFC 6186)")


def expected_records(domain: str, hostname: str, *, dkim: Sequence[tuple[str, str]],
                     services: Sequence[ClientService], policy: MtaStsPolicy) -> list[DnsRecord]:
    """Every record ``domain`` should publish.  ``dkim``: ``(record name, TXT value)``
    of each selector to publish."""
    records = [
        DnsRecord(RecordKind.MX, domain, "MX", f"{MX_PREFERENCE} {hostname}",
                  "mail for the domain goes to this server"),
        DnsRecord(RecordKind.SPF, domain, "TXT", "v=spf1 mx -all",
                  "SPF: only the MX hosts send mail for the domain"),
        *(DnsRecord(RecordKind.DKIM, name, "TXT", value,
                    "DKIM: the public key receivers verify our signatures with")
          for name, value in dkim),
        DnsRecord(RecordKind.DMARC, f"_dmarc.{domain}", "TXT",
                  f"v=DMARC1; p=quarantine; rua=mailto:dmarc-reports@{domain}",
                  "DMARC: what receivers do with mail failing SPF and DKIM, and where "
                  "they send aggregate reports"),
        DnsRecord(RecordKind.MTA_STS, f"_mta-sts.{domain}", "TXT", record_text(policy.policy_id),
                  f"MTA-STS: senders fetch the policy at {policy.url}"),
        DnsRecord(RecordKind.TLS_RPT, f"_smtp._tls.{domain}", "TXT",
                  f"v=TLSRPTv1; rua=mailto:tls-reports@{domain}",
                  "TLS-RPT: where senders report TLS failures"),
    ]
    ordered = sorted(services, key=lambda s: (SERVICE_PRIORITY[s.service], s.service))
    records.extend(_srv(domain, hostname, s) for s in ordered)
    return records
