"""The HTML part after Jinja: CSS inlined, ``<a href>`` links rewritten for click
tracking, the open pixel added, and the text part made from it.

CSS inlining (css-inline) and the HTML-to-text conversion (inscriptis) each cost about
a millisecond for a 3 KB message, ten times the Jinja render itself.  They are done on
a *skeleton*: the template rendered with every ``{{ value }}`` replaced by a marker
(``\\ue000N\\ue001``, Unicode private use characters).  Contacts whose render takes the
same path through the template (the same ``if`` branches, the same loop lengths) share
one skeleton, which is inlined and converted once; each contact then only costs the
substitution of its values into the prepared pieces: escaped into the HTML, as plain
text (white space collapsed as a browser would) into the text part.

The template source itself cannot be inlined instead: an HTML parser moves template
tags out of tables (``{% for %}`` between ``<tr>`` rows is "foster-parented") and
escapes the ``<`` of ``{% if a < b %}``.

A skeleton is used only when the inliner kept every marker exactly once in the output;
a marker inside CSS (``<style>`` rules that depend on a variable) is inlined into
other elements or dropped, and such a skeleton is processed again for each contact
from the real values, which is correct and only slower.
"""

from __future__ import annotations

import html
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import css_inline
from inscriptis import get_text
from inscriptis.model.config import ParserConfig
from markupsafe import escape

from mailyard.bulk.templates.sandbox import MARK_CLOSE, MARK_OPEN

_MARKER = re.compile(f"{MARK_OPEN}([0-9]+){MARK_CLOSE}")
# An <a> start tag as css-inline serialises it (attribute values always in double
# quotes, with " written &quot;), and its href attribute.
_A_HREF = re.compile(r'<a(?:\s+[^\s"\'>/=]+(?:="[^"]*")?)*?\s+href="([^"]*)"', re.IGNORECASE)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)
_TEXT_CONFIG = ParserConfig(display_links=True)
_WHITE = re.compile(r"[ \t\n\r\f]+")  # HTML's white space (not NBSP)

#: A piece of a prepared part: literal text, the index of a value, or an href.
Piece = str | int


@dataclass(frozen=True)
class Href:
    """An ``<a href>`` value: its pieces, to be joined, unescaped, given to the link
    rewriter and escaped again.  ``url``: for an href without values (the template's
    own links), the unescaped http(s) URL, found once; "" for other literal ones."""

    pieces: tuple[Piece, ...]
    url: str | None = None

    @classmethod
    def of(cls, pieces: list[Piece]) -> Href:
        if not all(isinstance(p, str) for p in pieces):
            return cls(tuple(pieces))
        raw = "".join(str(p) for p in pieces)
        url = html.unescape(raw)
        return cls((raw,), url if url.lower().startswith(("http://", "https://")) else "")


@dataclass(frozen=True)
class Pixel:
    """Where the open-tracking image goes: before ``</body>``, or at the end."""


HtmlPiece = str | int | Href | Pixel

LinkRewriter = Callable[[str], str]


def _split(text: str) -> list[Piece]:
    pieces: list[Piece] = []
    pos = 0
    for match in _MARKER.finditer(text):
        if match.start() > pos:
            pieces.append(text[pos:match.start()])
        pieces.append(int(match.group(1)))
        pos = match.end()
    if pos < len(text):
        pieces.append(text[pos:])
    return pieces


def _with_hrefs(text: str) -> list[HtmlPiece]:
    pieces: list[HtmlPiece] = []
    pos = 0
    for match in _A_HREF.finditer(text):
        start, end = match.span(1)
        pieces += _split(text[pos:start])
        pieces.append(Href.of(_split(text[start:end])))
        pos = end
    pieces += _split(text[pos:])
    return pieces


@dataclass(frozen=True)
class PreparedHtml:
    """An inlined HTML part and its text, cut into pieces around the values."""

    html: tuple[HtmlPiece, ...]
    text: tuple[Piece, ...]

    @classmethod
    def prepare(cls, inlined: str, text: str | None) -> PreparedHtml:
        ends = list(_BODY_END.finditer(inlined))
        cut = ends[-1].start() if ends else len(inlined)
        pieces = [*_with_hrefs(inlined[:cut]), Pixel(), *_with_hrefs(inlined[cut:])]
        return cls(tuple(pieces), tuple(_split(text)) if text is not None else ())

    def fill_html(self, values: Sequence[str], links: LinkRewriter | None,
                  pixel_url: str | None) -> str:
        out: list[str] = []
        for piece in self.html:
            if isinstance(piece, str):
                out.append(piece)
            elif isinstance(piece, int):
                out.append(escape(values[piece]))
            elif isinstance(piece, Href):
                out.append(_href(piece, values, links))
            elif pixel_url is not None:
                out.append(pixel_tag(pixel_url))
        return "".join(out)

    def fill_text(self, values: Sequence[str]) -> str:
        """The text part: a value's white space collapsed, and dropped where it meets
        a space or a line end, as the conversion of the real HTML would have it."""
        out: list[str] = []
        pieces = self.text
        skip_space = False
        for i, piece in enumerate(pieces):
            if isinstance(piece, str):
                out.append(piece[1:] if skip_space and piece[:1] == " " else piece)
                skip_space = False
                continue
            value = _WHITE.sub(" ", values[piece])
            before = out[-1][-1:] if out else "\n"
            if before in (" ", "\n"):
                value = value.lstrip(" ")
            after = pieces[i + 1] if i + 1 < len(pieces) else "\n"
            if isinstance(after, str) and after[:1] in (" ", "\n"):
                value = value.rstrip(" ")
            if value:
                out.append(value)
            elif before == " ":
                skip_space = True  # "a {{ '' }} b" reads "a b"
        return "".join(out).strip() + "\n"


_HTML_SPECIAL = re.compile(r"[&<>\"']")  # what markupsafe's escape replaces


def _attribute(text: str) -> str:
    """``text`` escaped for an attribute value, as markupsafe's ``escape`` does; a
    tracked URL (our public URL, a path and a base64url token) has nothing to escape
    and is returned as it is, without the Markup object and copy ``escape`` makes."""
    return str(escape(text)) if _HTML_SPECIAL.search(text) else text


def _href(href: Href, values: Sequence[str], links: LinkRewriter | None) -> str:
    if href.url is not None:  # no values in it
        if links is None or not href.url:
            return str(href.pieces[0])
        return _attribute(links(href.url))
    raw = "".join(p if isinstance(p, str) else escape(values[p]) for p in href.pieces)
    if links is None:
        return raw
    url = html.unescape(raw)
    if not url.lower().startswith(("http://", "https://")):
        return raw
    return _attribute(links(url))


def pixel_tag(url: str) -> str:
    return (f'<img src="{_attribute(url)}" width="1" height="1" alt="" '
            'style="display:block;width:1px;height:1px;border:0">')


def marker_counts_ok(inlined: str, count: int) -> bool:
    """Every value marker 0..count-1 is in the inlined skeleton exactly once."""
    found = [int(m) for m in _MARKER.findall(inlined)]
    return len(found) == count and sorted(found) == list(range(count))


class HtmlFinisher:
    """Inlines and converts HTML, keeping prepared skeletons in a small LRU cache.
    One per compiled template; safe to share between threads (two threads meeting a
    new skeleton at once both prepare it)."""

    def __init__(self, *, want_text: bool, cache_size: int = 64) -> None:
        self.want_text = want_text
        self.cache_size = cache_size
        self._inliner = css_inline.CSSInliner(load_remote_stylesheets=False,
                                              keep_at_rules=True, keep_link_tags=False)
        self._cache: OrderedDict[str, PreparedHtml | None] = OrderedDict()
        self._lock = threading.Lock()
        self.prepared = 0  # skeletons inlined and converted (for the benchmark and tests)

    def skeleton(self, skeleton: str, count: int) -> PreparedHtml | None:
        """The prepared form of a skeleton with ``count`` values, or None when it
        cannot be shared (a value inside CSS)."""
        cache = self._cache
        with self._lock:
            if skeleton in cache:
                cache.move_to_end(skeleton)
                return cache[skeleton]
        inlined = self._inline(skeleton)
        prepared = None
        if marker_counts_ok(inlined, count):
            prepared = PreparedHtml.prepare(inlined, self._text(inlined))
        with self._lock:
            self.prepared += 1
            cache[skeleton] = prepared
            if len(cache) > self.cache_size:
                cache.popitem(last=False)
        return prepared

    def direct(self, rendered: str) -> PreparedHtml:
        """One contact's HTML, processed on its own (no values to substitute)."""
        inlined = self._inline(rendered)
        self.prepared += 1
        return PreparedHtml.prepare(inlined, self._text(inlined))

    def _inline(self, source: str) -> str:
        try:
            return self._inliner.inline(source)
        except css_inline.InlineError:  # CSS the inliner cannot parse: the HTML goes out as written
            return source

    def _text(self, inlined: str) -> str | None:
        if not self.want_text:
            return None
        return str(get_text(inlined, _TEXT_CONFIG)).strip() + "\n"
