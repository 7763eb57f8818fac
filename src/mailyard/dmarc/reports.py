"""DMARC aggregate reports received from other receivers (RFC 7489 7.2, appendix C).

A report is an XML document, usually gzip- or zip-compressed, attached to a mail.
Everything in it comes from strangers, so reading it is bounded at every step:

* the XML is parsed with ``defusedxml``, which refuses document type declarations
  and entities: an "XML bomb" (entities expanding to gigabytes) or an external entity
  (a file read or a network fetch) is a :class:`ReportError`, never an expansion;
* a compressed attachment is at most :data:`MAX_ATTACHMENT` octets and is
  decompressed into at most :data:`MAX_XML` octets (a "zip bomb" stops at the cap,
  whatever the archive claims); a zip archive must hold exactly one file;
* at most :data:`MAX_RECORDS` ``<record>`` elements are read, each field is
  length-capped, counts are non-negative integers and source addresses valid IP
  addresses.

Element names are compared without an XML namespace, so reports in the DMARCbis
format (``urn:ietf:params:xml:ns:dmarc-2.0``) read the same.
"""

from __future__ import annotations

import gzip
import io
import ipaddress
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

__all__ = [
    "MAX_ATTACHMENT",
    "MAX_RECORDS",
    "MAX_XML",
    "AggregateReport",
    "AuthCheck",
    "ReportError",
    "ReportRow",
    "parse_aggregate_xml",
    "reports_from_message",
    "unpack_report",
]

MAX_ATTACHMENT = 10 * 1024 * 1024
MAX_XML = 32 * 1024 * 1024
MAX_RECORDS = 100_000
MAX_TEXT = 1024
MAX_COUNT = 1 << 40
_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGIC = b"PK\x03\x04"
_REPORT_TYPES = frozenset((
    "application/gzip", "application/x-gzip", "application/zip", "application/x-zip-compressed",
    "application/xml", "text/xml", "application/octet-stream"))


@dataclass(frozen=True)
class ReportError:
    reason: str


@dataclass(frozen=True)
class AuthCheck:
    """One ``<auth_results>`` entry: a raw SPF or DKIM result the reporter saw."""

    method: str  # "spf" or "dkim"
    domain: str
    result: str
    selector: str = ""  # dkim
    scope: str = ""  # spf: "mfrom" or "helo"


@dataclass(frozen=True)
class ReportRow:
    source_ip: str
    count: int
    disposition: str
    dkim: str  # the DMARC-aligned DKIM result (policy_evaluated)
    spf: str  # the DMARC-aligned SPF result (policy_evaluated)
    header_from: str
    envelope_from: str = ""
    envelope_to: str = ""
    reasons: tuple[str, ...] = ()
    checks: tuple[AuthCheck, ...] = ()


@dataclass(frozen=True)
class AggregateReport:
    org_name: str
    email: str
    report_id: str
    begin: int
    end: int
    domain: str
    policy: str
    subdomain_policy: str
    pct: int
    adkim: str
    aspf: str
    rows: tuple[ReportRow, ...]
    errors: tuple[str, ...] = ()

    @property
    def messages(self) -> int:
        return sum(row.count for row in self.rows)


class _Bad(Exception):
    pass


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(node: Element | None, name: str) -> Element | None:
    if node is None:
        return None
    for child in node:
        if _local(child.tag) == name:
            return child
    return None


def _children(node: Element | None, name: str) -> Iterator[Element]:
    if node is not None:
        for child in node:
            if _local(child.tag) == name:
                yield child


def _text(node: Element | None, name: str, required: bool = False) -> str:
    child = _child(node, name)
    text = (child.text or "").strip() if child is not None else ""
    if required and not text:
        raise _Bad(f"missing <{name}>")
    return text[:MAX_TEXT]


def _int(node: Element | None, name: str, default: int | None = None) -> int:
    text = _text(node, name, required=default is None)
    if not text:
        return default if default is not None else 0
    if not text.isascii() or not text.isdigit() or len(text) > 13:
        raise _Bad(f"<{name}> is not a non-negative integer")
    return min(int(text), MAX_COUNT)


def _checks(node: Element | None) -> tuple[AuthCheck, ...]:
    checks = [AuthCheck("dkim", _text(d, "domain").lower(), _text(d, "result").lower(),
                        selector=_text(d, "selector")) for d in _children(node, "dkim")]
    checks += [AuthCheck("spf", _text(s, "domain").lower(), _text(s, "result").lower(),
                         scope=_text(s, "scope").lower()) for s in _children(node, "spf")]
    return tuple(checks)


def _row(record: Element) -> ReportRow:
    row = _child(record, "row")
    source = _text(row, "source_ip", required=True)
    try:
        source = str(ipaddress.ip_address(source))
    except ValueError:
        raise _Bad(f"<source_ip> {source!r} is not an IP address") from None
    evaluated = _child(row, "policy_evaluated")
    ids = _child(record, "identifiers")
    return ReportRow(
        source_ip=source,
        count=_int(row, "count"),
        disposition=_text(evaluated, "disposition").lower(),
        dkim=_text(evaluated, "dkim").lower(),
        spf=_text(evaluated, "spf").lower(),
        header_from=_text(ids, "header_from").lower(),
        envelope_from=_text(ids, "envelope_from").lower(),
        envelope_to=_text(ids, "envelope_to").lower(),
        reasons=tuple(_text(r, "type").lower() for r in _children(evaluated, "reason")),
        checks=_checks(_child(record, "auth_results")),
    )


def _report(root: Element) -> AggregateReport:
    if _local(root.tag) != "feedback":
        raise _Bad("the document is not a <feedback> report")
    meta = _child(root, "report_metadata")
    dates = _child(meta, "date_range")
    published = _child(root, "policy_published")
    if meta is None or published is None:
        raise _Bad("missing <report_metadata> or <policy_published>")
    rows: list[ReportRow] = []
    for record in _children(root, "record"):
        if len(rows) == MAX_RECORDS:
            raise _Bad(f"more than {MAX_RECORDS} records")
        rows.append(_row(record))
    return AggregateReport(
        org_name=_text(meta, "org_name", required=True),
        email=_text(meta, "email"),
        report_id=_text(meta, "report_id", required=True),
        begin=_int(dates, "begin"),
        end=_int(dates, "end"),
        domain=_text(published, "domain", required=True).lower().rstrip("."),
        policy=_text(published, "p").lower(),
        subdomain_policy=_text(published, "sp").lower(),
        pct=_int(published, "pct", 100),
        adkim=_text(published, "adkim").lower() or "r",
        aspf=_text(published, "aspf").lower() or "r",
        rows=tuple(rows),
        errors=tuple((e.text or "").strip()[:MAX_TEXT] for e in _children(meta, "error")),
    )


def parse_aggregate_xml(data: bytes) -> AggregateReport | ReportError:
    """Read one aggregate report document (uncompressed XML)."""
    if len(data) > MAX_XML:
        return ReportError(f"report larger than {MAX_XML} octets")
    try:
        root = fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
        return _report(root)
    except DefusedXmlException as exc:
        return ReportError(f"refused XML: {type(exc).__name__}")
    except ParseError as exc:
        return ReportError(f"not well-formed XML: {exc}")
    except _Bad as exc:
        return ReportError(str(exc))


def _gunzip(data: bytes) -> bytes | ReportError:
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
            out = stream.read(MAX_XML + 1)
    except (OSError, EOFError, zlib.error) as exc:
        return ReportError(f"bad gzip data: {exc}")
    if len(out) > MAX_XML:
        return ReportError(f"report decompresses to more than {MAX_XML} octets")
    return out


def _unzip(data: bytes) -> bytes | ReportError:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            if len(members) != 1:
                return ReportError("a zip report must hold exactly one file")
            with archive.open(members[0]) as stream:
                out = stream.read(MAX_XML + 1)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, zlib.error,
            NotImplementedError, RuntimeError) as exc:
        return ReportError(f"bad zip data: {exc}")
    if len(out) > MAX_XML:
        return ReportError(f"report decompresses to more than {MAX_XML} octets")
    return out


def unpack_report(data: bytes) -> AggregateReport | ReportError:
    """Read a report attachment: gzip, zip or plain XML, told apart by content."""
    if len(data) > MAX_ATTACHMENT:
        return ReportError(f"attachment larger than {MAX_ATTACHMENT} octets")
    xml: bytes | ReportError = data
    if data.startswith(_GZIP_MAGIC):
        xml = _gunzip(data)
    elif data.startswith(_ZIP_MAGIC):
        xml = _unzip(data)
    if isinstance(xml, ReportError):
        return xml
    return parse_aggregate_xml(xml)


def _attachments(message: EmailMessage) -> Iterator[bytes]:
    for part in message.walk():
        if part.is_multipart() or part.get_content_type() not in _REPORT_TYPES:
            continue
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            yield payload


def reports_from_message(message: bytes) -> list[AggregateReport | ReportError]:
    """The aggregate reports attached to a report mail (RFC 7489 7.2.1.1: one report
    per message, but a second attachment does no harm)."""
    parsed = BytesParser(policy=policy.default).parsebytes(message)
    found = [unpack_report(payload) for payload in _attachments(parsed)]
    return found or [ReportError("the message carries no report attachment")]
