"""The DNS records a local domain publishes, and the verdict on one found in the DNS.

A :class:`DnsRecord` is one record to publish (name, type, value) with what it is for;
:meth:`DnsRecord.zone_line` writes it the way a zone file takes it, a TXT value split
into character-strings of at most 255 octets (RFC 1035 3.3.14: one string holds 255;
DKIM keys of 2048 bits do not fit in one).  A :class:`Verdict` says whether what the
DNS holds for a record is right, missing or wrong, and how to fix it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DnsRecord", "RecordKind", "Status", "Verdict", "txt_strings"]

#: RFC 1035 3.3: a character-string holds at most 255 octets.
MAX_STRING = 255


class RecordKind(enum.StrEnum):
    MX = "mx"
    SPF = "spf"
    DKIM = "dkim"
    DMARC = "dmarc"
    MTA_STS = "mta-sts"
    TLS_RPT = "tls-rpt"
    SRV = "srv"


class Status(enum.StrEnum):
    OK = "ok"
    MISSING = "missing"  # the DNS has no such record
    WRONG = "wrong"  # a record is there, but it is not what it should be
    UNKNOWN = "unknown"  # the lookup failed (timeout, SERVFAIL): nothing can be said


@dataclass(frozen=True)
class DnsRecord:
    kind: RecordKind
    name: str  # fully qualified, no trailing dot
    rtype: str  # MX, TXT, SRV
    value: str  # as the resolver presents it (TXT strings concatenated)
    purpose: str = ""

    def zone_value(self) -> str:
        """The value in zone-file syntax (TXT quoted, split into 255-octet strings)."""
        if self.rtype != "TXT":
            return self.value if self.rtype not in ("MX", "SRV", "CNAME") else self.value + "."
        return " ".join(f'"{s}"' for s in txt_strings(self.value))

    def zone_line(self, ttl: int = 3600) -> str:
        return f"{self.name}. {ttl} IN {self.rtype} {self.zone_value()}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "name": self.name, "type": self.rtype,
                "value": self.value, "zone": self.zone_line(), "purpose": self.purpose}


def txt_strings(value: str) -> list[str]:
    """``value`` cut into character-strings of at most 255 octets, with ``"`` and ``\\``
    escaped for a zone file (the values we publish are ASCII)."""
    raw = value.encode("ascii", "replace").decode("ascii")
    chunks = [raw[i:i + MAX_STRING] for i in range(0, len(raw), MAX_STRING)] or [""]
    return [c.replace("\\", "\\\\").replace('"', '\\"') for c in chunks]


@dataclass(frozen=True)
class Verdict:
    record: DnsRecord  # what should be published
    status: Status
    found: tuple[str, ...] = ()  # what the DNS holds there (relevant records only)
    problem: str = ""  # what is wrong or missing ("" when ok)
    fix: str = ""  # how to fix it
    notes: tuple[str, ...] = field(default=())  # advice that does not make it wrong

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    def to_dict(self) -> dict[str, Any]:
        return {**self.record.to_dict(), "status": self.status.value,
                "found": list(self.found), "problem": self.problem, "fix": self.fix,
                "notes": list(self.notes)}
