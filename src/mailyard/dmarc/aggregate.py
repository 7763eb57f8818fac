"""DMARC aggregate reports we send (RFC 7489 7.1, 7.2, appendix C), all pure.

Each DMARC evaluation of an inbound message is an :class:`Evaluation`: the facts a
report row needs (source address, From domain, the SPF and DKIM results with their
domains, the disposition we applied, the policy we found).  Evaluations that agree in
every fact are counted together (:class:`CountedEvaluation`), so a day of mail from
one sender is one row whatever its volume.

:func:`feedback_xml` builds the report document for one policy domain and period, in
the structure of RFC 7489 appendix C (``<feedback>`` without a namespace, ``version``
1.0, ``policy_published`` with ``p``, ``sp``, ``pct`` and ``fo`` as the schema
requires them), which every report reader accepts, including those written for the
DMARCbis format.  :func:`report_message` wraps the gzipped document in a mail with
the subject and file name of RFC 7489 7.2.1.1.

:func:`report_addresses` picks the ``mailto:`` destinations of a record's ``rua``
and says which of them need the external destination check of RFC 7489 7.1 (a
destination outside the policy domain's Organizational Domain may receive the report
only if ``<policy domain>._report._dmarc.<destination host>`` publishes a
``v=DMARC1`` TXT record; :func:`authorization_name` and :func:`authorizes`).
"""

from __future__ import annotations

import datetime
import gzip
import re
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from xml.etree.ElementTree import Element, SubElement, tostring

from mailyard.dmarc.orgdomain import PublicSuffixes
from mailyard.dmarc.record import DmarcRecord, is_dmarc_record

__all__ = [
    "AuthEntry",
    "CountedEvaluation",
    "Destination",
    "Evaluation",
    "PublishedPolicy",
    "ReportMeta",
    "authorization_name",
    "authorizes",
    "feedback_xml",
    "report_addresses",
    "report_filename",
    "report_message",
    "report_subject",
]

_DKIM_RESULTS = frozenset(("none", "pass", "fail", "policy", "neutral", "temperror",
                           "permerror"))
_SPF_RESULTS = frozenset(("none", "neutral", "pass", "fail", "softfail", "temperror",
                          "permerror"))
_REASONS = frozenset(("forwarded", "sampled_out", "trusted_forwarder", "mailing_list",
                      "local_policy", "other"))
_UNIQUE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class PublishedPolicy:
    """The record's policy as the report states it (``policy_published``)."""

    p: str
    sp: str
    pct: int = 100
    adkim: str = "r"
    aspf: str = "r"
    fo: str = "0"

    @classmethod
    def of(cls, record: DmarcRecord) -> PublishedPolicy:
        sub = record.subdomain_policy or record.policy
        return cls(str(record.policy), str(sub), record.pct, str(record.adkim),
                   str(record.aspf), ":".join(record.fo))


_ANY_POLICY = PublishedPolicy("none", "none")


@dataclass(frozen=True)
class AuthEntry:
    """One raw SPF or DKIM result (``auth_results``)."""

    method: str  # "dkim" or "spf"
    domain: str
    result: str
    selector: str = ""  # dkim
    scope: str = ""  # spf: "mfrom" or "helo"


@dataclass(frozen=True)
class Evaluation:
    """The report facts of one evaluated message."""

    policy_domain: str  # where the DMARC record was found
    header_from: str  # the Author Domain
    source_ip: str
    envelope_from: str  # the MAIL FROM domain ("" for the null sender)
    disposition: str  # what we did: none, quarantine, reject
    dkim: str  # the DMARC-aligned DKIM result: pass or fail
    spf: str  # the DMARC-aligned SPF result: pass or fail
    reasons: tuple[str, ...]  # policy override reasons (sampled_out, local_policy)
    auth: tuple[AuthEntry, ...]
    policy: PublishedPolicy


@dataclass(frozen=True)
class CountedEvaluation:
    evaluation: Evaluation
    count: int
    first: float  # when the first of them was evaluated (seconds since the epoch)
    last: float


@dataclass(frozen=True)
class ReportMeta:
    org_name: str
    email: str
    report_id: str
    begin: int  # seconds since the epoch
    end: int
    extra_contact_info: str = ""


def _add(parent: Element, name: str, text: str | int) -> Element:
    node = SubElement(parent, name)
    node.text = str(text)
    return node


def _auth_results(record: Element, evaluation: Evaluation) -> None:
    auth = SubElement(record, "auth_results")
    for entry in evaluation.auth:
        if entry.method == "dkim":
            node = SubElement(auth, "dkim")
            _add(node, "domain", entry.domain)
            if entry.selector:
                _add(node, "selector", entry.selector)
            _add(node, "result", entry.result if entry.result in _DKIM_RESULTS else "permerror")
    spf = [e for e in evaluation.auth if e.method == "spf"]
    if not spf:  # the schema asks for at least one: SPF was not checked
        spf = [AuthEntry("spf", evaluation.envelope_from or evaluation.header_from, "none",
                         scope="mfrom")]
    for entry in spf:
        node = SubElement(auth, "spf")
        _add(node, "domain", entry.domain)
        if entry.scope in ("mfrom", "helo"):
            _add(node, "scope", entry.scope)
        _add(node, "result", entry.result if entry.result in _SPF_RESULTS else "permerror")


def _record(root: Element, evaluation: Evaluation, count: int) -> None:
    record = SubElement(root, "record")
    row = SubElement(record, "row")
    _add(row, "source_ip", evaluation.source_ip)
    _add(row, "count", count)
    evaluated = SubElement(row, "policy_evaluated")
    _add(evaluated, "disposition", evaluation.disposition)
    _add(evaluated, "dkim", evaluation.dkim)
    _add(evaluated, "spf", evaluation.spf)
    for reason in evaluation.reasons:
        if reason in _REASONS:
            _add(SubElement(evaluated, "reason"), "type", reason)
    identifiers = SubElement(record, "identifiers")
    _add(identifiers, "header_from", evaluation.header_from)
    _auth_results(record, evaluation)


def _merged(rows: Iterable[CountedEvaluation]) -> list[tuple[Evaluation, int]]:
    """Rows that differ only in the published policy are one report row."""
    counts: dict[Evaluation, int] = {}
    for row in rows:
        key = replace(row.evaluation, policy=_ANY_POLICY)
        counts[key] = counts.get(key, 0) + row.count
    return sorted(counts.items(), key=lambda item: (-item[1], item[0].source_ip,
                                                    item[0].header_from))


def feedback_xml(domain: str, rows: Sequence[CountedEvaluation], meta: ReportMeta) -> bytes:
    """The RFC 7489 appendix C document for one policy domain (UTF-8, with its XML
    declaration).  The policy published is the most recently seen one."""
    if not rows:
        raise ValueError("a report needs at least one row")
    root = Element("feedback")
    _add(root, "version", "1.0")
    metadata = SubElement(root, "report_metadata")
    _add(metadata, "org_name", meta.org_name)
    _add(metadata, "email", meta.email)
    if meta.extra_contact_info:
        _add(metadata, "extra_contact_info", meta.extra_contact_info)
    _add(metadata, "report_id", meta.report_id)
    dates = SubElement(metadata, "date_range")
    _add(dates, "begin", meta.begin)
    _add(dates, "end", meta.end)
    policy = max(rows, key=lambda r: r.last).evaluation.policy
    published = SubElement(root, "policy_published")
    _add(published, "domain", domain)
    _add(published, "adkim", policy.adkim)
    _add(published, "aspf", policy.aspf)
    _add(published, "p", policy.p)
    _add(published, "sp", policy.sp)
    _add(published, "pct", policy.pct)
    _add(published, "fo", policy.fo)
    for evaluation, count in _merged(rows):
        _record(root, evaluation, count)
    body: bytes = tostring(root, encoding="utf-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + body + b"\n"


@dataclass(frozen=True)
class Destination:
    """A ``mailto:`` report address, its size limit, and whether RFC 7489 7.1's
    external destination check applies to it."""

    address: str
    max_size: int | None
    external: bool


def _mailto(uri: str) -> str:
    if not uri.lower().startswith("mailto:"):
        return ""
    address = urllib.parse.unquote(uri[7:].split("?", 1)[0]).strip()
    local, at, host = address.rpartition("@")
    if not at or not local or not host or any(c.isspace() for c in address):
        return ""
    return f"{local}@{host.lower().rstrip('.')}"


def report_addresses(record: DmarcRecord, policy_domain: str,
                     suffixes: PublicSuffixes) -> list[Destination]:
    """The ``mailto:`` destinations of ``rua`` (other schemes are not ours to use);
    each marked external when its host is not in the policy domain's Organizational
    Domain (RFC 7489 7.1)."""
    own = suffixes.organizational_domain(policy_domain.lower().rstrip("."))
    found: list[Destination] = []
    for uri in record.rua:
        address = _mailto(uri.uri)
        if not address or any(d.address == address for d in found):
            continue
        host = address.rpartition("@")[2]
        found.append(Destination(address, uri.max_size,
                                 suffixes.organizational_domain(host) != own))
    return found


def authorization_name(policy_domain: str, destination_host: str) -> str:
    """RFC 7489 7.1: the TXT name where the destination's domain agrees to receive
    the policy domain's reports."""
    return f"{policy_domain.rstrip('.')}._report._dmarc.{destination_host.rstrip('.')}"


def authorizes(texts: Iterable[str]) -> bool:
    """RFC 7489 7.1: a TXT record at :func:`authorization_name` beginning with
    ``v=DMARC1`` authorizes the destination."""
    return any(is_dmarc_record(text) for text in texts)


def report_filename(submitter: str, domain: str, meta: ReportMeta) -> str:
    """RFC 7489 7.2.1.1: ``receiver!policy-domain!begin!end!unique-id.xml.gz``."""
    unique = _UNIQUE.sub("", meta.report_id)[:64]
    return f"{submitter}!{domain}!{meta.begin}!{meta.end}!{unique}.xml.gz"


def report_subject(submitter: str, domain: str, report_id: str) -> str:
    """RFC 7489 7.2.1.1: ``Report Domain: <domain> Submitter: <receiver>
    Report-ID: <id>``."""
    return f"Report Domain: {domain} Submitter: {submitter} Report-ID: <{report_id}>"


def report_message(xml: bytes, *, domain: str, submitter: str, meta: ReportMeta,
                   sender: str, recipients: Sequence[str], now: datetime.datetime) -> bytes:
    """The report mail: a short text part and the gzipped document as
    ``application/gzip`` (RFC 7489 7.2.1.1), CRLF line ends."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Subject"] = report_subject(submitter, domain, meta.report_id)
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = make_msgid(domain=submitter)
    begin = datetime.datetime.fromtimestamp(meta.begin, datetime.UTC)
    end = datetime.datetime.fromtimestamp(meta.end, datetime.UTC)
    msg.set_content(f"This is a DMARC aggregate report from {submitter} for {domain}, "
                    f"{begin:%Y-%m-%d %H:%M:%S} to {end:%Y-%m-%d %H:%M:%S} UTC.\n")
    msg.add_attachment(gzip.compress(xml, mtime=0), maintype="application", subtype="gzip",
                       filename=report_filename(submitter, domain, meta))
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n", max_line_length=998))
