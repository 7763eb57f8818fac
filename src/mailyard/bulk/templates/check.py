"""``mailyard campaign check``: what can be seen in one rendered sample message.

A pure function over the message bytes as they will be sent, so it sees what a
mailbox provider sees (the header fields, the MIME parts, the decoded HTML), not the
template.  The From-domain alignment (SPF, DKIM, DMARC) needs DNS and is decided
elsewhere; its result comes in as :class:`AuthAlignment` and is reported here with
the rest, so ``schedule`` has one list of errors to refuse on.
"""

from __future__ import annotations

import email
import email.policy
import enum
import ipaddress
import re
from dataclasses import dataclass
from email.message import EmailMessage
from html.parser import HTMLParser
from typing import Any
from urllib.parse import unquote, urlsplit

#: Gmail shows "[Message clipped]" and hides the rest beyond about 102 KB of HTML,
#: the unsubscribe link and open pixel included.
HTML_CLIP_BYTES = 102_400
HTML_WARN_BYTES = 90_000
MAX_FINDINGS_PER_CODE = 10

_HOST = re.compile(r"[A-Za-z0-9\u0080-\U0010ffff](?:[A-Za-z0-9.\u0080-\U0010ffff-]*"
                   r"[A-Za-z0-9\u0080-\U0010ffff])?\.?")
_UNSAFE_SCHEMES = frozenset({"javascript", "vbscript", "data", "file"})
_SAFE_SCHEMES = frozenset({"http", "https", "mailto", "tel", "sms"})


class Severity(enum.StrEnum):
    ERROR = "error"  # schedule refuses unless forced
    WARNING = "warning"


@dataclass(frozen=True)
class Finding:
    severity: Severity
    code: str  # stable, for the API and tests
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"severity": self.severity.value, "code": self.code, "message": self.message}


@dataclass(frozen=True)
class AuthAlignment:
    """Whether the From domain passes each mechanism aligned (DMARC, RFC 7489 3.1);
    None where it was not checked."""

    spf: bool | None = None
    dkim: bool | None = None
    dmarc: bool | None = None  # a DMARC record is published (p= other than none is better)


@dataclass(frozen=True)
class CheckReport:
    findings: tuple[Finding, ...]

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.WARNING]

    @property
    def ok(self) -> bool:
        return not self.errors

    def codes(self) -> set[str]:
        return {f.code for f in self.findings}

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "findings": [f.to_dict() for f in self.findings]}


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.images: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag in ("a", "area") and "href" in found:
            self.links.append(found["href"] or "")
        elif tag == "img":
            self.images.append(found)


class _Findings:
    def __init__(self) -> None:
        self.items: list[Finding] = []
        self.counts: dict[str, int] = {}

    def add(self, severity: Severity, code: str, message: str) -> None:
        self.counts[code] = self.counts.get(code, 0) + 1
        if self.counts[code] <= MAX_FINDINGS_PER_CODE:
            self.items.append(Finding(severity, code, message))

    def error(self, code: str, message: str) -> None:
        self.add(Severity.ERROR, code, message)

    def warning(self, code: str, message: str) -> None:
        self.add(Severity.WARNING, code, message)


def check_message(data: bytes, *, unsubscribe_url: str | None = None,
                  alignment: AuthAlignment | None = None) -> CheckReport:
    """Errors and warnings for one rendered sample.  ``unsubscribe_url`` is the
    contact's unsubscribe link the body must carry (default: the https URI of
    List-Unsubscribe)."""
    found = _Findings()
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    _check_headers(message, found)
    https = _list_unsubscribe_https(message)
    html, text = _bodies(message, found)
    links = _Links()
    if html is not None:
        links.feed(html)
        links.close()
        _check_html_size(html, found)
        _check_links(links.links, found)
        _check_images(links.images, found)
    target = unsubscribe_url or https
    _check_unsubscribe_link(target, links.links, html, text, found)
    _check_alignment(alignment, found)
    return CheckReport(tuple(found.items))


def _check_headers(message: EmailMessage, found: _Findings) -> None:
    if not message.get("From"):
        found.error("no-from", "the message has no From field")
    if not str(message.get("Subject", "")).strip():
        found.warning("empty-subject", "the subject is empty")
    unsubscribe = message.get("List-Unsubscribe")
    if not unsubscribe:
        found.error("no-list-unsubscribe", "no List-Unsubscribe field (RFC 2369; Gmail and "
                    "Yahoo require it of bulk senders)")
        return
    if _list_unsubscribe_https(message) is None:
        found.error("no-one-click", "List-Unsubscribe has no https URI for one-click "
                    "unsubscribe (RFC 8058)")
    elif str(message.get("List-Unsubscribe-Post", "")).strip() != "List-Unsubscribe=One-Click":
        found.error("no-one-click-post", "List-Unsubscribe-Post: List-Unsubscribe=One-Click "
                    "is missing (RFC 8058 3.1)")


def _list_unsubscribe_https(message: EmailMessage) -> str | None:
    value = str(message.get("List-Unsubscribe", ""))
    for uri in re.findall(r"<([^<>]*)>", value):
        if uri.lower().startswith("https://"):
            return str(uri)
    return None


def _bodies(message: EmailMessage, found: _Findings) -> tuple[str | None, str | None]:
    html = text = None
    for part in message.walk():
        kind = part.get_content_type()
        if kind not in ("text/html", "text/plain") or part.is_attachment():
            continue
        assert isinstance(part, EmailMessage)
        try:
            content = part.get_content()
        except (LookupError, ValueError) as exc:
            found.error("undecodable-part", f"a {kind} part cannot be decoded: {exc}")
            continue
        if kind == "text/html" and html is None:
            html = str(content)
        elif kind == "text/plain" and text is None:
            text = str(content)
    if text is None:
        found.error("no-text-part", "the message has no text/plain part")
    elif not text.strip():
        found.warning("empty-text-part", "the text/plain part is empty")
    return html, text


def _check_html_size(html: str, found: _Findings) -> None:
    size = len(html.encode("utf-8"))
    if size > HTML_CLIP_BYTES:
        found.error("html-clipped", f"the HTML is {size} bytes; Gmail clips it beyond "
                    f"{HTML_CLIP_BYTES} (the unsubscribe link and open pixel get hidden)")
    elif size > HTML_WARN_BYTES:
        found.warning("html-near-clip", f"the HTML is {size} bytes, close to Gmail's "
                      f"{HTML_CLIP_BYTES}-byte clipping")


def link_problem(href: str) -> tuple[Severity, str, str] | None:
    """What is wrong with one link, if anything: (severity, code, message)."""
    url = href.strip()
    if not url:
        return Severity.WARNING, "empty-link", "a link has an empty href"
    if url.startswith("#"):
        return None
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return Severity.ERROR, "malformed-link", f"a link holds white space or controls: {url!r}"
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in _UNSAFE_SCHEMES:
        return Severity.ERROR, "unsafe-link", f"a {scheme}: link: {url[:80]!r}"
    if not scheme:
        return Severity.ERROR, "relative-link", f"a link without a scheme (mail has no base " \
            f"URL): {url[:80]!r}"
    if scheme not in _SAFE_SCHEMES:
        return Severity.WARNING, "unusual-link", f"a {scheme}: link: {url[:80]!r}"
    if scheme in ("http", "https"):
        try:
            host = parts.hostname or ""
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            host = ""
        if not _valid_host(host):
            return Severity.ERROR, "malformed-link", f"a link without a valid host: {url[:80]!r}"
        if scheme == "http":
            return Severity.WARNING, "insecure-link", f"a plain http link: {url[:80]!r}"
    return None


def _valid_host(host: str) -> bool:
    if ":" in host:  # an IPv6 literal, without its brackets
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
        return True
    return bool(_HOST.fullmatch(host)) and "." in host


def _check_links(links: list[str], found: _Findings) -> None:
    for href in links:
        problem = link_problem(href)
        if problem is not None:
            found.add(*problem)


def _check_images(images: list[dict[str, str | None]], found: _Findings) -> None:
    for attrs in images:
        src = (attrs.get("src") or "").strip()
        if "alt" not in attrs:
            found.warning("image-without-alt", f"an image has no alt text: {src[:80]!r}")
        scheme = urlsplit(src).scheme.lower()
        if scheme not in ("http", "https", "cid"):
            found.warning("image-source", f"an image not loaded over http(s) or cid: "
                          f"{src[:80]!r}")


def _check_unsubscribe_link(target: str | None, links: list[str], html: str | None,
                            text: str | None, found: _Findings) -> None:
    if target is None:
        if not any("unsubscribe" in unquote(h).lower() for h in links) and \
                "unsubscribe" not in (text or "").lower():
            found.error("no-unsubscribe-link", "no unsubscribe link in the body")
        return
    in_html = any(h == target or target in unquote(h) for h in links)
    in_text = target in (text or "")
    if html is not None and not in_html:
        found.error("no-unsubscribe-link", "the HTML has no link to the unsubscribe URL")
    elif html is None and not in_text:
        found.error("no-unsubscribe-link", "the text has no unsubscribe URL")
    if html is not None and text is not None and not in_text:
        found.warning("no-unsubscribe-in-text", "the text part has no unsubscribe URL")


def _check_alignment(alignment: AuthAlignment | None, found: _Findings) -> None:
    if alignment is None:
        found.warning("alignment-not-checked", "SPF, DKIM and DMARC alignment of the From "
                      "domain were not checked")
        return
    for name, value in (("spf", alignment.spf), ("dkim", alignment.dkim),
                        ("dmarc", alignment.dmarc)):
        if value is None:
            found.warning(f"{name}-not-checked", f"{name.upper()} was not checked")
        elif not value:
            found.error(f"{name}-not-aligned", f"{name.upper()} does not pass aligned with "
                        "the From domain")
