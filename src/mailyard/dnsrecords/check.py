"""Compare what the DNS holds with what a domain should publish, record by record.

:func:`check_record` looks one expected :class:`DnsRecord` up through the injected
resolver and returns a :class:`Verdict`: ``ok``, ``missing``, ``wrong`` (with what is
wrong and how to fix it) or ``unknown`` (the lookup failed).  What counts as right
is what receivers need, not textual equality:

* MX: this server's host name among the MX hosts, and that name has an address;
* SPF: exactly one ``v=spf1`` record (RFC 7208 4.5: two are a permerror), well formed,
  and check_host() (:mod:`mailyard.spf`, includes and redirects followed) gives
  ``pass`` for each address of this server;
* DKIM: one key record at the selector, holding our public key;
* DMARC: one valid record (RFC 7489 6.6.3) whose policy is not ``none``;
* MTA-STS: one valid ``v=STSv1`` record, ``mta-sts.<domain>`` has an address, and
  (with a :data:`PolicyFetcher`) the policy fetched over HTTPS is valid and lists this
  server;
* TLS-RPT: one valid ``v=TLSRPTv1`` record with a report address;
* SRV: a record naming this server and port.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import Awaitable, Callable, Sequence

from mailyard.dkim.record import KeyRecordError, parse_key_record, public_key_text
from mailyard.dmarc.record import Policy, RecordError, is_dmarc_record, parse_record
from mailyard.dns.api import AnswerKind, DnsError, DnsTemporaryError, MxKind, Resolver
from mailyard.dnsrecords.model import DnsRecord, RecordKind, Status, Verdict
from mailyard.mtasts.fetch import Fetched, FetchFailed
from mailyard.mtasts.policy import Invalid, Mode
from mailyard.mtasts.policy import parse_policy as parse_sts_policy
from mailyard.mtasts.policy import parse_record as parse_sts_record
from mailyard.spf.check import check_host
from mailyard.spf.record import RecordSyntaxError
from mailyard.spf.record import parse_record as parse_spf_record
from mailyard.tlsrpt.report import parse_rua_record

__all__ = ["PolicyFetcher", "SpfEvaluator", "check_record", "check_records", "is_spf_record",
           "spf_evaluator", "spf_syntax_problem"]

#: ``(ip, domain)`` to the SPF result keyword (RFC 7208 2.6) of that address sending
#: for that domain.
SpfEvaluator = Callable[[str, str], Awaitable[str]]
#: A domain to its MTA-STS policy text, fetched over HTTPS (mailyard.mtasts.fetch).
PolicyFetcher = Callable[[str], Awaitable[Fetched | FetchFailed]]

_SPF_VERSION = re.compile(r"v=spf1(?: |\Z)", re.IGNORECASE)


def is_spf_record(text: str) -> bool:
    """RFC 7208 4.5: a TXT record is an SPF record when it begins with ``v=spf1``
    followed by a space or its end."""
    return _SPF_VERSION.match(text) is not None


def spf_syntax_problem(text: str) -> str:
    """What is wrong with an SPF record's terms (RFC 7208 12), "" when nothing."""
    try:
        parse_spf_record(text)
    except RecordSyntaxError as exc:
        return str(exc)
    return ""


def spf_evaluator(resolver: Resolver) -> SpfEvaluator:
    """check_host() (RFC 7208 4) over ``resolver``, for ``postmaster@domain``."""
    async def evaluate(ip: str, domain: str) -> str:
        result = await check_host(resolver, ip, domain, f"postmaster@{domain}")
        return result.status.value
    return evaluate


async def check_records(resolver: Resolver, records: Sequence[DnsRecord], *, hostname: str,
                        spf: SpfEvaluator | None = None,
                        fetch_policy: PolicyFetcher | None = None) -> list[Verdict]:
    """All of ``records`` at once (a slow name server costs one timeout, not one each)."""
    return list(await asyncio.gather(*(check_record(resolver, r, hostname=hostname, spf=spf,
                                                    fetch_policy=fetch_policy)
                                       for r in records)))


async def check_record(resolver: Resolver, record: DnsRecord, *, hostname: str,
                       spf: SpfEvaluator | None = None,
                       fetch_policy: PolicyFetcher | None = None) -> Verdict:
    """``spf``: the SPF evaluation (default: :mod:`mailyard.spf` over ``resolver``);
    ``fetch_policy``: the MTA-STS policy fetch for a domain (None: not fetched)."""
    try:
        if record.kind is RecordKind.MX:
            return await _mx(resolver, record, hostname)
        if record.kind is RecordKind.SPF:
            return await _spf(resolver, record, hostname, spf)
        if record.kind is RecordKind.SRV:
            return await _srv(resolver, record)
        texts = tuple(await resolver.txt(record.name))
        if record.kind is RecordKind.MTA_STS:
            return await _mta_sts(resolver, record, texts, hostname.lower().rstrip("."),
                                  fetch_policy)
        return _TXT_CHECKS[record.kind](record, texts)
    except DnsTemporaryError as exc:
        return Verdict(record, Status.UNKNOWN, problem=f"lookup failed: {exc.reason}",
                       fix="try again; if it persists, check the domain's name servers")
    except DnsError as exc:
        return Verdict(record, Status.WRONG, problem=f"{exc.name}: {exc.reason}")


def _publish(record: DnsRecord) -> str:
    return f"publish: {record.zone_line()}"


def _missing(record: DnsRecord, what: str, found: Sequence[str] = ()) -> Verdict:
    return Verdict(record, Status.MISSING, tuple(found), what, _publish(record))


# --- MX ------------------------------------------------------------------------------
async def _mx(resolver: Resolver, record: DnsRecord, hostname: str) -> Verdict:
    result = await resolver.mx(record.name)
    found = tuple(f"{r.preference} {r.host}" for r in result.records)
    if result.kind is MxKind.NXDOMAIN:
        return _missing(record, f"{record.name} does not exist in the DNS")
    if result.kind is MxKind.NO_RECORDS:
        return _missing(record, "no MX record")
    if result.kind is MxKind.NULL_MX:
        return Verdict(record, Status.WRONG, ("0 .",),
                       "a Null MX (RFC 7505): the domain says it accepts no mail",
                       f"replace it; {_publish(record)}")
    hosts = [r.host for r in result.records]
    host = hostname.lower().rstrip(".")
    if host not in hosts:
        return Verdict(record, Status.WRONG, found,
                       f"the MX names {', '.join(hosts)}, not this server ({host})",
                       f"{_publish(record)} (and remove the other MX records unless those "
                       "hosts forward mail to this server)")
    if not await resolver.addresses(host):
        return Verdict(record, Status.WRONG, found, f"{host} has no A or AAAA record",
                       f"publish the server's public addresses as A/AAAA records of {host}")
    others = [h for h in hosts if h != host]
    notes = (f"other MX hosts ({', '.join(others)}) must pass the mail on to this server",) \
        if others else ()
    return Verdict(record, Status.OK, found, notes=notes)


# --- SPF -----------------------------------------------------------------------------
async def _spf(resolver: Resolver, record: DnsRecord, hostname: str,
               evaluate: SpfEvaluator | None) -> Verdict:
    found = tuple(t for t in await resolver.txt(record.name) if is_spf_record(t))
    if not found:
        return _missing(record, "no SPF record")
    if len(found) > 1:
        return Verdict(record, Status.WRONG, found,
                       f"{len(found)} SPF records: receivers treat that as a permerror "
                       "(RFC 7208 4.5), as if the domain had a broken policy",
                       f"merge them into one TXT record, e.g. {record.value!r}")
    problem = spf_syntax_problem(found[0])
    if problem:
        return Verdict(record, Status.WRONG, found, f"the SPF record is invalid: {problem}",
                       f"replace it; {_publish(record)}")
    host = hostname.lower().rstrip(".")
    evaluate = evaluate or spf_evaluator(resolver)
    for ip in await resolver.addresses(host):
        result = await evaluate(ip, record.name)
        if result == "pass":
            continue
        problem = (f"the SPF record does not let this server ({host}, {ip}) send mail for "
                   f"{record.name} (SPF result: {result})")
        if result == "temperror":
            return Verdict(record, Status.UNKNOWN, found, problem, "try again")
        fix = (f"add 'mx' (or 'ip{ipaddress.ip_address(ip).version}:{ip}') before the "
               f"'all' term, e.g. {record.value!r}")
        if result == "permerror":
            fix = ("make the record evaluate for receivers: every include: must name a "
                   "domain with an SPF record, and at most 10 terms may cause DNS lookups "
                   f"(RFC 7208 4.6.4); e.g. {record.value!r}")
        return Verdict(record, Status.WRONG, found, problem, fix)
    return Verdict(record, Status.OK, found)


# --- the TXT records -----------------------------------------------------------------
def _dkim(record: DnsRecord, texts: tuple[str, ...]) -> Verdict:
    if not texts:
        return _missing(record, "no DKIM key record at this selector")
    if len(texts) > 1:
        return Verdict(record, Status.WRONG, texts,
                       f"{len(texts)} TXT records at the selector: verifiers may use any",
                       f"keep only one; {_publish(record)}")
    ours = parse_key_record(record.value)
    try:
        published = parse_key_record(texts[0])
    except KeyRecordError as exc:
        return Verdict(record, Status.WRONG, texts, f"the key record is unusable: {exc}",
                       f"replace it; {_publish(record)}")
    if public_key_text(published.key) != public_key_text(ours.key):
        return Verdict(record, Status.WRONG, texts,
                       "the published key is not this server's key for the selector "
                       "(an older key?): signatures fail to verify",
                       f"replace it; {_publish(record)}")
    notes = ("t=y: receivers treat failures as if unsigned (testing)",) if published.testing \
        else ()
    return Verdict(record, Status.OK, texts, notes=notes)


def _dmarc(record: DnsRecord, texts: tuple[str, ...]) -> Verdict:
    found = tuple(t for t in texts if is_dmarc_record(t))
    if not found:
        return _missing(record, "no DMARC record")
    if len(found) > 1:
        return Verdict(record, Status.WRONG, found,
                       f"{len(found)} DMARC records: receivers then apply none "
                       "(RFC 7489 6.6.3)", f"keep only one; {_publish(record)}")
    parsed = parse_record(found[0])
    if isinstance(parsed, RecordError):
        return Verdict(record, Status.WRONG, found, f"the DMARC record is invalid: "
                       f"{parsed.reason}", f"replace it; {_publish(record)}")
    if parsed.policy is Policy.NONE:
        return Verdict(record, Status.WRONG, found,
                       "p=none: receivers take no action on mail that fails, so forged "
                       "mail from the domain is not stopped",
                       "once the aggregate reports show your own mail passes, set "
                       f"p=quarantine (or reject), e.g. {record.value!r}")
    notes = []
    if not parsed.rua:
        notes.append("no rua=: you receive no aggregate reports")
    if parsed.pct < 100:
        notes.append(f"pct={parsed.pct}: the policy applies to only part of the failing mail")
    return Verdict(record, Status.OK, found, notes=tuple(notes))


async def _mta_sts(resolver: Resolver, record: DnsRecord, texts: tuple[str, ...],
                   hostname: str, fetch: PolicyFetcher | None) -> Verdict:
    parsed = parse_sts_record(list(texts))
    if parsed is None:
        return _missing(record, "no v=STSv1 record", texts)
    found = tuple(t for t in texts if t.startswith("v=STSv1"))
    if isinstance(parsed, Invalid):
        return Verdict(record, Status.WRONG, found,
                       f"the MTA-STS record is invalid: {parsed.reason}",
                       f"replace it; {_publish(record)}")
    policy_host = "mta-sts." + record.name.removeprefix("_mta-sts.")
    if not await resolver.addresses(policy_host):
        return Verdict(record, Status.WRONG, found,
                       f"{policy_host} has no address, so senders cannot fetch the policy",
                       f"point {policy_host} at an HTTPS server with a certificate for it "
                       "that serves the policy (`mailyard domain records` prints it)")
    if fetch is None:
        return Verdict(record, Status.OK, found, notes=("the policy file was not fetched",))
    return await _mta_sts_policy(record, found, hostname, await fetch(
        record.name.removeprefix("_mta-sts.")))


async def _mta_sts_policy(record: DnsRecord, found: tuple[str, ...], hostname: str,
                          fetched: Fetched | FetchFailed) -> Verdict:
    """RFC 8461 3.3: the policy must come over HTTPS with a valid certificate, parse, and
    (for senders to deliver here under it) list this server's host name."""
    domain = record.name.removeprefix("_mta-sts.")
    serve = (f"serve the policy (`mailyard domain records {domain}` prints it) at "
             f"https://mta-sts.{domain}/.well-known/mta-sts.txt with a certificate valid "
             f"for mta-sts.{domain}")
    if isinstance(fetched, FetchFailed):
        return Verdict(record, Status.WRONG, found,
                       f"the policy cannot be fetched: {fetched.reason}", serve)
    policy = parse_sts_policy(fetched.text)
    if isinstance(policy, Invalid):
        return Verdict(record, Status.WRONG, found, f"the policy is invalid: {policy.reason}",
                       serve)
    if policy.mode is not Mode.NONE and not policy.allows(hostname):
        return Verdict(record, Status.WRONG, found,
                       f"the policy's mx lines ({', '.join(policy.mx)}) do not match this "
                       f"server ({hostname}): senders that enforce it do not deliver here",
                       f"add 'mx: {hostname}' to the policy and change the id of the "
                       "_mta-sts record")
    notes = {Mode.TESTING: ("mode testing: senders report TLS failures but still deliver",),
             Mode.NONE: ("mode none: the policy is withdrawn",)}.get(policy.mode, ())
    return Verdict(record, Status.OK, found, notes=notes)


def _tls_rpt(record: DnsRecord, texts: tuple[str, ...]) -> Verdict:
    found = tuple(t for t in texts if t.startswith("v=TLSRPTv1"))
    if not found:
        return _missing(record, "no TLS-RPT record")
    if parse_rua_record(found) is None:
        what = f"{len(found)} TLS-RPT records" if len(found) > 1 else \
            "the TLS-RPT record is malformed or has no usable rua="
        return Verdict(record, Status.WRONG, found, what, f"replace it; {_publish(record)}")
    return Verdict(record, Status.OK, found)


_TXT_CHECKS: dict[RecordKind, Callable[[DnsRecord, tuple[str, ...]], Verdict]] = {
    RecordKind.DKIM: _dkim, RecordKind.DMARC: _dmarc, RecordKind.TLS_RPT: _tls_rpt,
}


# --- SRV -----------------------------------------------------------------------------
async def _srv(resolver: Resolver, record: DnsRecord) -> Verdict:
    answer = await resolver.query(record.name, "SRV")
    if answer.kind is not AnswerKind.ANSWER:
        return _missing(record, "no SRV record")
    found = answer.records
    _, _, port, target = record.value.split()
    served = [r.split() for r in found]
    if any(r[2:] == [port, target] for r in served):
        return Verdict(record, Status.OK, found)
    if any(r[3] == "." for r in served):
        problem = "the record says the service is not offered (target '.', RFC 6186 4)"
    else:
        problem = "it names " + ", ".join(f"{r[3]} port {r[2]}" for r in served) + \
            f", not {target} port {port}"
    return Verdict(record, Status.WRONG, found, problem, f"replace it; {_publish(record)}")
