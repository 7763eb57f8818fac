"""DMARC evaluation (RFC 7489 6.6): policy discovery, alignment, the result and the
disposition, as values.

The SPF and DKIM results come in as :class:`SpfOutcome` and :class:`DkimOutcome`,
small values of this package's own, so DMARC does not depend on how SPF and DKIM are
computed: whoever wires the checks together converts their results.  DNS goes through
the injected :class:`~mailyard.dns.Resolver`; a temporary DNS failure is the
``temperror`` result, never an exception.  Sampling (``pct``) draws from an injected
function, so tests choose the draw.

The steps (6.6.2, 6.6.3, RFC 9091 4.1):

1. look up ``_dmarc.<From domain>``; keep the TXT records that begin ``v=DMARC1``;
2. only if none are left, look up ``_dmarc.<Organizational Domain>``;
3. anything but exactly one record ends discovery: DMARC does not apply (``none``);
4. a record found at the From domain applies ``p``; one found at the Organizational
   Domain applies ``np`` when the From domain does not exist (no A, AAAA or MX:
   NXDOMAIN or NODATA for all three) and ``np`` is given, else ``sp``, else ``p``;
5. DMARC passes if SPF passed for an aligned domain or any DKIM signature passed for an
   aligned ``d=`` (3.1, relaxed or strict per ``aspf`` / ``adkim``);
6. a failing message is given the policy if the ``pct`` draw selects it, else the next
   lower one (6.6.4: reject -> quarantine -> none).
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from mailyard.dmarc.author import FromProblem, author_domains
from mailyard.dmarc.orgdomain import PublicSuffixes
from mailyard.dmarc.record import (
    Alignment,
    DmarcRecord,
    Policy,
    RecordError,
    is_dmarc_record,
    parse_record,
)
from mailyard.dns.api import (
    AnswerKind,
    DnsError,
    DnsNameError,
    DnsTemporaryError,
    Resolver,
    ascii_domain,
)

__all__ = [
    "Disposition",
    "DkimOutcome",
    "DmarcResult",
    "DmarcStatus",
    "SpfOutcome",
    "aligned",
    "evaluate_domain",
    "evaluate_message",
]

#: Draws an integer in [0, 100); the policy applies when the draw is below pct.
Sampler = Callable[[], int]


def random_percent() -> int:
    return random.randrange(100)


@dataclass(frozen=True)
class SpfOutcome:
    """The SPF result (RFC 7208 2.6 keyword) and the domain it was for: the MAIL FROM
    domain, or the HELO domain when MAIL FROM was empty (RFC 7489 3.1.2)."""

    result: str
    domain: str


@dataclass(frozen=True)
class DkimOutcome:
    """One DKIM signature's verification result (RFC 8601 2.7.1 keyword), its ``d=``,
    ``s=`` and, for ``header.b``, its ``b=`` value."""

    result: str
    domain: str
    selector: str = ""
    signature: str = ""


class DmarcStatus(enum.StrEnum):
    """The DMARC result keywords of RFC 7489 11.2 (Authentication-Results)."""

    PASS = "pass"
    FAIL = "fail"
    NONE = "none"
    TEMPERROR = "temperror"
    PERMERROR = "permerror"


class Disposition(enum.StrEnum):
    """What the receiver does with the message (RFC 7489 6.6.4, appendix C)."""

    NONE = "none"
    QUARANTINE = "quarantine"
    REJECT = "reject"


_STRICTNESS = {Disposition.NONE: 0, Disposition.QUARANTINE: 1, Disposition.REJECT: 2}
_LOWER = {Policy.REJECT: Disposition.QUARANTINE, Policy.QUARANTINE: Disposition.NONE,
          Policy.NONE: Disposition.NONE}


@dataclass(frozen=True)
class DmarcResult:
    status: DmarcStatus
    disposition: Disposition = Disposition.NONE
    author_domain: str = ""
    policy_domain: str = ""  # where the record was found; "" when none applies
    policy: Policy | None = None  # the policy the record asks for this message
    record: DmarcRecord | None = None
    spf_aligned: bool = False
    dkim_aligned: bool = False
    sampled_out: bool = False  # pct left this failing message to the lower policy
    reason: str = ""


def aligned(identifier: str, author_domain: str, mode: Alignment,
            suffixes: PublicSuffixes) -> bool:
    """RFC 7489 3.1.1/3.1.2: strict needs the same name, relaxed the same
    Organizational Domain."""
    a = identifier.lower().rstrip(".")
    b = author_domain.lower().rstrip(".")
    if not a or not b:
        return False
    if a == b:
        return True
    if mode is Alignment.STRICT:
        return False
    return suffixes.organizational_domain(a) == suffixes.organizational_domain(b)


@dataclass(frozen=True)
class _Found:
    record: DmarcRecord | None  # None: DMARC does not apply
    domain: str
    reason: str = ""


async def _records_at(resolver: Resolver, domain: str) -> list[str]:
    answer = await resolver.query(f"_dmarc.{domain}", "TXT")
    return [r for r in answer.records if is_dmarc_record(r)]


async def _discover(resolver: Resolver, domain: str, org: str) -> _Found:
    """Steps 1-6 of RFC 7489 6.6.3.  Raises DnsTemporaryError."""
    where = domain
    records = await _records_at(resolver, domain)
    if not records and org != domain:
        where = org
        records = await _records_at(resolver, org)
    if not records:
        return _Found(None, "", "no DMARC record")
    if len(records) > 1:
        return _Found(None, where, "more than one DMARC record")
    parsed = parse_record(records[0])
    if isinstance(parsed, RecordError):
        return _Found(None, where, f"unusable DMARC record: {parsed.reason}")
    return _Found(parsed, where)


async def _exists(resolver: Resolver, domain: str) -> bool:
    """RFC 9091 2.1: a domain exists unless A, AAAA and MX all give NXDOMAIN or
    NODATA.  Raises DnsTemporaryError."""
    for rdtype in ("A", "AAAA", "MX"):
        answer = await resolver.query(domain, rdtype)
        if answer.kind is AnswerKind.ANSWER:
            return True
        if answer.kind is AnswerKind.NXDOMAIN:
            return False  # RFC 8020: nothing of any type below
    return False


async def _requested_policy(resolver: Resolver, record: DmarcRecord, author: str,
                            policy_domain: str) -> Policy:
    if policy_domain == author:
        return record.policy
    if record.nonexistent_policy is not None and not await _exists(resolver, author):
        return record.nonexistent_policy
    return record.subdomain_policy or record.policy


def _authenticated(record: DmarcRecord, author: str, spf: SpfOutcome | None,
                   dkim: Sequence[DkimOutcome], suffixes: PublicSuffixes) -> tuple[bool, bool]:
    spf_ok = (spf is not None and spf.result.lower() == "pass"
              and aligned(spf.domain, author, record.aspf, suffixes))
    dkim_ok = any(sig.result.lower() == "pass"
                  and aligned(sig.domain, author, record.adkim, suffixes) for sig in dkim)
    return spf_ok, dkim_ok


async def evaluate_domain(author: str, spf: SpfOutcome | None, dkim: Sequence[DkimOutcome],
                          resolver: Resolver, suffixes: PublicSuffixes,
                          sample: Sampler = random_percent) -> DmarcResult:
    """DMARC for one Author Domain (U-labels are converted, case is ignored)."""
    try:
        author = ascii_domain(author)
    except DnsNameError:
        return DmarcResult(DmarcStatus.PERMERROR, author_domain=author,
                           reason="From domain is not a valid domain name")
    return await _evaluate(author, spf, dkim, resolver, suffixes, sample)


async def _evaluate(author: str, spf: SpfOutcome | None, dkim: Sequence[DkimOutcome],
                    resolver: Resolver, suffixes: PublicSuffixes, sample: Sampler) -> DmarcResult:
    """:func:`evaluate_domain` for a name already in the form :func:`ascii_domain`
    gives (the Author Domains of :func:`author_domains` are)."""
    try:
        found = await _discover(resolver, author, suffixes.organizational_domain(author))
        if found.record is None:
            return DmarcResult(DmarcStatus.NONE, author_domain=author,
                               policy_domain=found.domain, reason=found.reason)
        record = found.record
        policy = (record.policy if found.domain == author  # (no coroutine for the usual case)
                  else await _requested_policy(resolver, record, author, found.domain))
    except DnsTemporaryError as exc:
        return DmarcResult(DmarcStatus.TEMPERROR, author_domain=author,
                           reason=f"DNS: {exc.reason}")
    except DnsNameError:
        return DmarcResult(DmarcStatus.PERMERROR, author_domain=author,
                           reason="From domain is not a valid domain name")
    except DnsError as exc:  # any other failure to learn the facts is temporary
        return DmarcResult(DmarcStatus.TEMPERROR, author_domain=author,
                           reason=f"DNS: {exc.reason}")
    spf_ok, dkim_ok = _authenticated(record, author, spf, dkim, suffixes)
    result = DmarcResult(DmarcStatus.PASS, Disposition.NONE, author, found.domain, policy,
                         record, spf_ok, dkim_ok)
    if spf_ok or dkim_ok:
        return result
    applied = record.pct >= 100 or (record.pct > 0 and sample() < record.pct)
    disposition = Disposition(policy.value) if applied else _LOWER[policy]
    return replace(result, status=DmarcStatus.FAIL, disposition=disposition,
                   sampled_out=not applied, reason="no aligned SPF or DKIM pass")


def _combine(results: Sequence[DmarcResult]) -> DmarcResult:
    """Several Author Domains (RFC 7489 6.6.1): the strictest failing policy wins;
    without a failure, an error, then none, then pass."""
    if len(results) == 1:
        return results[0]
    failed = [r for r in results if r.status is DmarcStatus.FAIL]
    if failed:
        return max(failed, key=lambda r: _STRICTNESS[r.disposition])
    for status in (DmarcStatus.TEMPERROR, DmarcStatus.PERMERROR, DmarcStatus.NONE):
        for r in results:
            if r.status is status:
                return r
    return results[0]


async def evaluate_message(from_values: Sequence[str], spf: SpfOutcome | None,
                           dkim: Sequence[DkimOutcome], resolver: Resolver,
                           suffixes: PublicSuffixes,
                           sample: Sampler = random_percent) -> DmarcResult:
    """DMARC for a message, given the values of its From fields."""
    domains = author_domains(from_values)
    if isinstance(domains, FromProblem):
        return DmarcResult(DmarcStatus.PERMERROR, reason=domains.value)
    results = [await _evaluate(domain, spf, dkim, resolver, suffixes, sample)
               for domain in domains]
    return _combine(results)
