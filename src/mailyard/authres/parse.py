"""Reading Authentication-Results fields found in incoming mail (RFC 8601 2.2).

Two readers:

* :func:`authserv_id_of` reads only the authserv-id, which is all that deciding
  whether a field claims to be ours needs (RFC 8601 5): a field whose id is ours was
  not written by us (we add ours after the check) and is removed, even when the rest
  of it is malformed;
* :func:`parse_value` reads the whole grammar: comments (nested, with quoted pairs)
  wherever CFWS may stand, quoted strings, the field version after the authserv-id,
  method versions (``dkim/1``), ``reason=``, properties and the ``none`` form.
  Malformed input gives a :class:`ParseError` value; nothing raises.

The parser is a cursor over the unfolded text (folding is whitespace, 2.2 allows
CFWS between every element).  Comments and quoted strings are bounded by the field's
length, so any input is read in linear time.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from mailyard.authres.model import AuthResults, MethodResult, ResultProperty

__all__ = ["ParseError", "authserv_id_of", "claims_authserv_id", "parse_value"]

# RFC 2045 token: any printable ASCII but SPACE and tspecials; non-ASCII is let through
# (RFC 6532 fields), control characters and tspecials end it.
_TOKEN = re.compile(r'[^\x00-\x20\x7f()<>@,;:\\"/\[\]?=]*')
# An unquoted pvalue: a token or [local-part]@domain (a dot-atom local part may hold
# "/", "=", "?"...); read up to whitespace, ";" or a comment, which also takes the
# base64 padding some writers leave unquoted in header.b.
_PVALUE = re.compile(r'[^\x00-\x20\x7f();"]*')
_KEYWORD = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-_]*[A-Za-z0-9])?")
_DIGITS = re.compile(r"[0-9]+")
_MAX_COMMENT_DEPTH = 32


@dataclass(frozen=True)
class ParseError:
    """The field is not valid RFC 8601 syntax; ``position`` is where reading stopped."""

    reason: str
    position: int


class _Invalid(Exception):
    def __init__(self, reason: str, position: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.position = position


class _Cursor:
    def __init__(self, text: str) -> None:
        self.text = text.replace("\r\n", "").replace("\n", "")
        self.pos = 0
        self.comments: list[str] = []

    def fail(self, reason: str) -> _Invalid:
        return _Invalid(reason, self.pos)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def cfws(self) -> None:
        """Skip whitespace and comments, keeping the comments' text."""
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char in " \t":
                self.pos += 1
            elif char == "(":
                self.comments.append(self._comment())
            else:
                return

    def _comment(self) -> str:
        depth, start = 0, self.pos + 1
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "\\":
                self.pos += 2
                continue
            if char == "(":
                depth += 1
                if depth > _MAX_COMMENT_DEPTH:
                    raise self.fail("comments nested too deeply")
            elif char == ")":
                depth -= 1
                if depth == 0:
                    self.pos += 1
                    return self.text[start:self.pos - 1].strip()
            self.pos += 1
        raise self.fail("unterminated comment")

    def expect(self, char: str) -> None:
        self.cfws()
        if self.peek() != char:
            raise self.fail(f"expected {char!r}")
        self.pos += 1

    def keyword(self, what: str) -> str:
        self.cfws()
        match = _KEYWORD.match(self.text, self.pos)
        if match is None:
            raise self.fail(f"expected {what}")
        self.pos = match.end()
        return match.group()

    def quoted(self) -> str:
        self.pos += 1  # the opening quote
        out: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "\\" and self.pos + 1 < len(self.text):
                out.append(self.text[self.pos + 1])
                self.pos += 2
            elif char == '"':
                self.pos += 1
                return "".join(out)
            else:
                out.append(char)
                self.pos += 1
        raise self.fail("unterminated quoted string")

    def token(self, pattern: re.Pattern[str] = _TOKEN) -> str:
        """An RFC 2045 token (or what ``pattern`` reads), possibly empty."""
        match = pattern.match(self.text, self.pos)
        token = match.group() if match is not None else ""
        self.pos += len(token)
        return token

    def value(self, what: str) -> str:
        """RFC 2045 value: a token or a quoted string."""
        self.cfws()
        if self.peek() == '"':
            return self.quoted()
        token = self.token()
        if not token:
            raise self.fail(f"expected {what}")
        return token

    def pvalue(self) -> str:
        """RFC 8601 pvalue: a value, or ``[local-part]@domain`` (the local part may be a
        quoted string)."""
        self.cfws()
        if self.peek() == '"':
            text = self.quoted()
            if self.peek() != "@":
                return text
            return text + self.token(_PVALUE)
        token = self.token(_PVALUE)
        if not token:
            raise self.fail("expected a property value")
        return token


def _method(cur: _Cursor) -> MethodResult:
    name = cur.keyword("a method")
    version = ""
    cur.cfws()
    if cur.peek() == "/":
        cur.pos += 1
        cur.cfws()
        match = _DIGITS.match(cur.text, cur.pos)
        if match is None:
            raise cur.fail("expected a method version")
        version, cur.pos = match.group(), match.end()
    cur.expect("=")
    result = cur.keyword("a result")
    cur.comments.clear()
    cur.cfws()
    comment = cur.comments[0] if cur.comments else ""
    reason = ""
    props: list[ResultProperty] = []
    while cur.peek() not in ("", ";"):
        ptype = cur.keyword("a property type")
        cur.cfws()
        if ptype.lower() == "reason" and cur.peek() == "=" and not props and not reason:
            cur.pos += 1
            reason = cur.value("a reason")
        else:
            cur.expect(".")
            prop = cur.keyword("a property")
            cur.expect("=")
            props.append(ResultProperty(ptype, prop, cur.pvalue()))
        cur.cfws()
    return MethodResult(name, result, tuple(props), reason, comment, version)


def _header(cur: _Cursor) -> tuple[str, str]:
    authserv_id = cur.value("an authserv-id")
    cur.cfws()
    version = ""
    match = _DIGITS.match(cur.text, cur.pos)
    if match is not None:
        version, cur.pos = match.group(), match.end()
        cur.cfws()
    return authserv_id, version


def parse_value(value: str) -> AuthResults | ParseError:
    """Parse the body of one Authentication-Results field (after the colon)."""
    cur = _Cursor(value)
    try:
        authserv_id, version = _header(cur)
        results: list[MethodResult] = []
        cur.expect(";")
        cur.cfws()
        saved = cur.pos
        if cur.keyword("a method").lower() == "none":
            cur.cfws()
            if cur.peek() == "":
                return AuthResults(authserv_id, (), version)
        cur.pos = saved
        while True:
            results.append(_method(cur))
            if cur.peek() == "":
                break
            cur.expect(";")
            cur.cfws()
            if cur.peek() == "":  # a trailing ";" is common and harmless
                break
        return AuthResults(authserv_id, tuple(results), version)
    except _Invalid as exc:
        return ParseError(exc.reason, exc.position)


def authserv_id_of(value: str) -> str | None:
    """The authserv-id a field claims, or None if not even that can be read."""
    cur = _Cursor(value)
    try:
        return cur.value("an authserv-id")
    except _Invalid:
        return None


def _normal(authserv_id: str) -> str:
    return authserv_id.strip().rstrip(".").lower()


def claims_authserv_id(value: str, ours: Collection[str]) -> bool:
    """Whether a field claims to come from one of our authserv-ids (RFC 8601 5), which
    are compared as domain names are: without case and a trailing dot."""
    claimed = authserv_id_of(value)
    return claimed is not None and _normal(claimed) in {_normal(i) for i in ours}
