"""What a DKIM verification says about one signature (RFC 8601 2.7.1 result names)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["DkimResult", "DkimStatus"]


class DkimStatus(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"  # the signature, the body hash or a policy rule of RFC 8301 failed
    NEUTRAL = "neutral"
    POLICY = "policy"  # valid, but not acceptable to us (l= leaving body unsigned)
    TEMPERROR = "temperror"  # the key could not be fetched now (DNS failure)
    PERMERROR = "permerror"  # unusable signature or key record (syntax, no key, revoked)


@dataclass(frozen=True)
class DkimResult:
    status: DkimStatus
    domain: str  # d= ("" when the signature did not parse that far)
    selector: str  # s=
    reason: str = ""  # why, for the log and Authentication-Results comments
    identity: str = ""  # i= (or "@d")
    algorithm: str = ""  # a=
    testing: bool = False  # the key record says t=y
    unsigned_body: int = 0  # canonical body octets after l= (not covered by the signature)

    def to_dict(self) -> dict[str, object]:
        return {"result": str(self.status), "domain": self.domain, "selector": self.selector,
                "reason": self.reason, "identity": self.identity,
                "algorithm": self.algorithm, "testing": self.testing,
                "unsigned_body": self.unsigned_body}
