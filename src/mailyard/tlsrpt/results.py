"""TLS-RPT (RFC 8460) vocabulary: the policy a session ran under and the result
types, and the mapping from what went wrong in a handshake to a result type."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["PolicyTag", "PolicyType", "ResultType", "certificate_failure"]


class PolicyType(enum.StrEnum):
    """RFC 8460 4.4 ``policy-type``."""

    STS = "sts"
    TLSA = "tlsa"
    NO_POLICY = "no-policy-found"


class ResultType(enum.StrEnum):
    """RFC 8460 4.3 result types."""

    # negotiation failures (4.3.1)
    STARTTLS_NOT_SUPPORTED = "starttls-not-supported"
    CERTIFICATE_HOST_MISMATCH = "certificate-host-mismatch"
    CERTIFICATE_EXPIRED = "certificate-expired"
    CERTIFICATE_NOT_TRUSTED = "certificate-not-trusted"
    VALIDATION_FAILURE = "validation-failure"
    # policy failures (4.3.2)
    TLSA_INVALID = "tlsa-invalid"
    DNSSEC_INVALID = "dnssec-invalid"
    DANE_REQUIRED = "dane-required"
    STS_POLICY_FETCH_ERROR = "sts-policy-fetch-error"
    STS_POLICY_INVALID = "sts-policy-invalid"
    STS_WEBPKI_INVALID = "sts-webpki-invalid"


@dataclass(frozen=True)
class PolicyTag:
    """The policy one delivery to ``domain`` was made under (what a report groups by)."""

    domain: str  # the policy domain: the recipient domain
    type: PolicyType = PolicyType.NO_POLICY
    strings: tuple[str, ...] = ()  # the policy as text: STS policy lines, TLSA records
    enforced: bool = True  # False: MTA-STS testing mode (reported, not enforced)


def certificate_failure(message: str) -> ResultType:
    """The result type of a certificate that did not verify, from OpenSSL's words."""
    text = message.lower()
    if "mismatch" in text:
        return ResultType.CERTIFICATE_HOST_MISMATCH
    if "expired" in text or "not yet valid" in text:
        return ResultType.CERTIFICATE_EXPIRED
    if "self-signed" in text or "self signed" in text or "issuer" in text or \
            "untrusted" in text:
        return ResultType.CERTIFICATE_NOT_TRUSTED
    return ResultType.VALIDATION_FAILURE
