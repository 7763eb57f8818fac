"""SPF macros (RFC 7208 7): parsed once with the record, expanded per evaluation.

A macro string is parsed into literal text and :class:`Macro` pieces, so a syntax
error (``%`` not followed by ``{``, ``%``, ``_`` or ``-``; an unknown letter; a zero
part count) is found when the record is read: RFC 7208 4.6 makes any syntax error a
``permerror`` before anything is evaluated.  Expansion is pure: the values come from a
:class:`MacroContext`; the one letter that needs DNS (``p``, the validated domain name
of the client, 7.3) is looked up by the evaluator beforehand and passed in.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import quote

__all__ = [
    "MacroContext",
    "MacroSyntaxError",
    "MacroString",
    "expand",
    "expand_domain",
    "parse_domain_spec",
    "needs_validated_name",
    "parse_macro_string",
]

_DOMAIN_LETTERS = frozenset("slodiphv")
_EXPLANATION_LETTERS = _DOMAIN_LETTERS | frozenset("crt")
_DELIMITERS = ".-+,/_="
_MACRO = re.compile(r"%(?:(?P<escape>[%_-])|\{(?P<body>[^}]*)\})")
_BODY = re.compile(r"(?P<letter>[A-Za-z])(?P<digits>[0-9]*)(?P<reverse>[rR]?)"
                   r"(?P<delimiters>[.\-+,/_=]*)")
# RFC 7208 7.1 domain-end: "." toplabel ["."] or a macro-expand.
_TOPLABEL_END = re.compile(
    r"\.(?:[0-9A-Za-z]*[A-Za-z][0-9A-Za-z]*|[0-9A-Za-z]+-[0-9A-Za-z-]*[0-9A-Za-z])\.?\Z")
_MACRO_END = re.compile(r"%(?:[%_-]|\{[^}]*\})\Z")
_ESCAPES = {"%": "%", "_": " ", "-": "%20"}
MAX_DOMAIN_LENGTH = 253


class MacroSyntaxError(ValueError):
    """A macro string that RFC 7208 7.1's grammar does not allow."""


@dataclass(frozen=True, slots=True)
class Macro:
    """``%{letter digits r delimiters}``: ``digits`` 0 means "all parts"."""

    letter: str  # lower case
    digits: int
    reverse: bool
    delimiters: str
    url_escape: bool  # the letter was upper case


MacroString = tuple[str | Macro, ...]


@dataclass(frozen=True, slots=True)
class MacroContext:
    """The values macros expand to (RFC 7208 7.2)."""

    sender: str  # s
    local_part: str  # l
    sender_domain: str  # o
    domain: str  # d
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address  # i, c, v
    helo: str  # h
    receiver: str = "unknown"  # r
    timestamp: int = 0  # t
    validated_name: str = "unknown"  # p

    def for_domain(self, domain: str) -> MacroContext:
        return MacroContext(self.sender, self.local_part, self.sender_domain, domain, self.ip,
                            self.helo, self.receiver, self.timestamp, self.validated_name)

    def with_validated_name(self, name: str) -> MacroContext:
        return MacroContext(self.sender, self.local_part, self.sender_domain, self.domain,
                            self.ip, self.helo, self.receiver, self.timestamp, name)

    def value(self, letter: str) -> str:
        if letter == "s":
            return self.sender
        if letter == "l":
            return self.local_part
        if letter == "o":
            return self.sender_domain
        if letter == "d":
            return self.domain
        if letter == "i":
            return dotted_ip(self.ip)
        if letter == "v":
            return "in-addr" if self.ip.version == 4 else "ip6"
        if letter == "h":
            return self.helo
        if letter == "c":
            return str(self.ip)
        if letter == "r":
            return self.receiver
        if letter == "t":
            return str(self.timestamp)
        return self.validated_name  # p


def dotted_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """RFC 7208 7.3: IPv4 in dotted quad, IPv6 as 32 dot-separated nibbles."""
    if ip.version == 4:
        return str(ip)
    return ".".join(ip.exploded.replace(":", ""))


def parse_macro_string(text: str, *, explanation: bool = False) -> MacroString:
    """RFC 7208 7.1 macro-string (``explanation``: explain-string, which also allows
    spaces and the ``c``, ``r`` and ``t`` letters)."""
    letters = _EXPLANATION_LETTERS if explanation else _DOMAIN_LETTERS
    parts: list[str | Macro] = []
    literal: list[str] = []
    pos = 0
    while pos < len(text):
        char = text[pos]
        if char != "%":
            if not ("\x21" <= char <= "\x7e" or (explanation and char == " ")):
                raise MacroSyntaxError(f"character {char!r} is not allowed in {text!r}")
            literal.append(char)
            pos += 1
            continue
        match = _MACRO.match(text, pos)
        if match is None:
            raise MacroSyntaxError(f"'%' not followed by '{{', '%', '_' or '-' in {text!r}")
        pos = match.end()
        if match["escape"]:
            literal.append(_ESCAPES[match["escape"]])
            continue
        macro = _parse_body(match["body"], letters)
        if literal:
            parts.append("".join(literal))
            literal = []
        parts.append(macro)
    if literal:
        parts.append("".join(literal))
    return tuple(parts)


def _parse_body(body: str, letters: frozenset[str]) -> Macro:
    found = _BODY.fullmatch(body)
    if found is None:
        raise MacroSyntaxError(f"malformed macro %{{{body}}}")
    letter = found["letter"]
    if letter.lower() not in letters:
        raise MacroSyntaxError(f"macro letter {letter!r} is not allowed here")
    digits = found["digits"]
    if digits and int(digits) == 0:
        raise MacroSyntaxError(f"macro %{{{body}}}: the part count must be nonzero")
    return Macro(letter.lower(), int(digits) if digits else 0, bool(found["reverse"]),
                 found["delimiters"], letter.isupper())


def parse_domain_spec(text: str) -> MacroString:
    """RFC 7208 7.1 domain-spec: a macro string ending in ``.toplabel`` (optionally
    followed by a dot) or in a macro."""
    parts = parse_macro_string(text)
    if not text or not (_TOPLABEL_END.search(text) or _MACRO_END.search(text)):
        raise MacroSyntaxError(f"{text!r} does not end in a top-level domain label or macro")
    return parts


def _transform(value: str, macro: Macro) -> str:
    if macro.digits or macro.reverse or macro.delimiters:
        delimiters = macro.delimiters or "."
        pieces = re.split("[" + re.escape(delimiters) + "]", value)
        if macro.reverse:
            pieces.reverse()
        if macro.digits:
            pieces = pieces[-macro.digits:]
        value = ".".join(pieces)  # RFC 7208 7.3: rejoined with "."
    if macro.url_escape:
        value = quote(value, safe="")
    return value


def expand(parts: MacroString, context: MacroContext) -> str:
    return "".join(p if isinstance(p, str) else _transform(context.value(p.letter), p)
                   for p in parts)


def needs_validated_name(parts: MacroString) -> bool:
    return any(isinstance(p, Macro) and p.letter == "p" for p in parts)


def expand_domain(parts: MacroString, context: MacroContext) -> str:
    """A domain-spec expanded to the <target-name>: without its trailing dot, and
    (RFC 7208 7.3) cut from the left, label by label, to at most 253 characters."""
    name = expand(parts, context)
    if name.endswith("."):
        name = name[:-1]
    while len(name) > MAX_DOMAIN_LENGTH and "." in name:
        name = name.split(".", 1)[1]
    return name
