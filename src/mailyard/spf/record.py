"""Reading an SPF record (RFC 7208 4.5 and 4.6.1, the grammar of section 12).

:func:`select_record` picks the one ``v=spf1`` record among a name's TXT records;
:func:`parse_record` turns its text into :class:`Record`, or raises
:class:`RecordSyntaxError`, which the evaluator reports as ``permerror``: a record
with a syntax error anywhere is not evaluated at all (4.6).  Parsing is pure and its
result is cached per text, so a warm evaluation does not parse again.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import re
from dataclasses import dataclass, replace

from mailyard.spf.macro import MacroString, MacroSyntaxError, parse_domain_spec, parse_macro_string
from mailyard.spf.result import QUALIFIERS, SpfStatus

__all__ = [
    "Directive",
    "Mechanism",
    "MultipleRecordsError",
    "Record",
    "RecordSyntaxError",
    "parse_record",
    "select_record",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Mechanism(enum.StrEnum):
    ALL = "all"
    INCLUDE = "include"
    A = "a"
    MX = "mx"
    PTR = "ptr"
    IP4 = "ip4"
    IP6 = "ip6"
    EXISTS = "exists"


#: RFC 7208 4.6.4: the terms that cause DNS queries and count toward the limit of 10.
COUNTED = frozenset({Mechanism.INCLUDE, Mechanism.A, Mechanism.MX, Mechanism.PTR,
                     Mechanism.EXISTS})


class RecordSyntaxError(ValueError):
    """The record breaks RFC 7208's grammar: the result is ``permerror``."""


class MultipleRecordsError(ValueError):
    """RFC 7208 4.5: more than one ``v=spf1`` record: ``permerror``."""


@dataclass(frozen=True, slots=True)
class Directive:
    """One ``[qualifier] mechanism``.  ``domain`` None means the current <domain>;
    ``network`` is set for ip4 and ip6."""

    qualifier: SpfStatus
    mechanism: Mechanism
    text: str
    domain: MacroString | None = None
    network: IPNetwork | None = None
    cidr4: int = 32
    cidr6: int = 128


@dataclass(frozen=True, slots=True)
class Record:
    directives: tuple[Directive, ...]
    redirect: MacroString | None = None
    redirect_text: str = ""
    explanation: MacroString | None = None


def select_record(texts: list[str] | tuple[str, ...]) -> str | None:
    """RFC 7208 4.5: the record whose version section is exactly ``v=spf1``
    (case-insensitive, ended by a space or the end), None when there is none."""
    found = [t for t in texts if t[:6].lower() == "v=spf1" and (len(t) == 6 or t[6] == " ")]
    if len(found) > 1:
        raise MultipleRecordsError(f"{len(found)} SPF records published")
    return found[0] if found else None


_MODIFIER = re.compile(r"([A-Za-z][A-Za-z0-9._-]*)=(.*)\Z", re.DOTALL)
_MECHANISM = re.compile(r"([A-Za-z0-9]+)(.*)\Z", re.DOTALL)
_DUAL_CIDR = re.compile(r"(?:/([0-9]+))?(?://([0-9]+))?\Z")
_IP4 = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}\Z")


def parse_record(text: str) -> Record:
    """Parse a ``v=spf1`` record (as :func:`select_record` returned it)."""
    parsed = _parse_cached(text)
    if isinstance(parsed, str):
        raise RecordSyntaxError(parsed)
    return parsed


@functools.lru_cache(maxsize=4096)
def _parse_cached(text: str) -> Record | str:
    try:
        return _parse(text)
    except (RecordSyntaxError, MacroSyntaxError) as exc:
        return str(exc)


def _parse(text: str) -> Record:
    directives: list[Directive] = []
    redirect: MacroString | None = None
    redirect_text = ""
    explanation: MacroString | None = None
    for term in text[6:].split(" "):
        if not term:
            continue
        modifier = _MODIFIER.match(term)
        if modifier is None:
            directives.append(_directive(term))
            continue
        name, value = modifier[1].lower(), modifier[2]
        if name == "redirect":
            if redirect is not None:
                raise RecordSyntaxError("redirect= appears more than once")
            redirect, redirect_text = parse_domain_spec(value), term
        elif name == "exp":
            if explanation is not None:
                raise RecordSyntaxError("exp= appears more than once")
            explanation = parse_domain_spec(value)
        else:
            parse_macro_string(value)  # RFC 7208 6: unknown modifiers are ignored
    return Record(tuple(directives), redirect, redirect_text, explanation)


def _directive(term: str) -> Directive:
    qualifier = QUALIFIERS.get(term[0])
    body = term[1:] if qualifier is not None else term
    found = _MECHANISM.match(body)
    if found is None:
        raise RecordSyntaxError(f"unknown term {term!r}")
    try:
        mechanism = Mechanism(found[1].lower())
    except ValueError:
        raise RecordSyntaxError(f"unknown mechanism {term!r}") from None
    rest = found[2]
    directive = Directive(qualifier or SpfStatus.PASS, mechanism, term)
    if mechanism is Mechanism.ALL:
        if rest:
            raise RecordSyntaxError(f"'all' takes no argument: {term!r}")
        return directive
    if mechanism in (Mechanism.IP4, Mechanism.IP6):
        return _ip_directive(directive, rest)
    if mechanism in (Mechanism.A, Mechanism.MX):
        return _address_directive(directive, rest)
    # include, exists (domain required), ptr (domain optional): no CIDR length
    if not rest and mechanism is Mechanism.PTR:
        return directive
    if not rest.startswith(":") or len(rest) == 1:
        raise RecordSyntaxError(f"{mechanism} needs ':domain': {term!r}")
    return replace(directive, domain=parse_domain_spec(rest[1:]))


def _address_directive(directive: Directive, rest: str) -> Directive:
    """a and mx: ``[":" domain-spec] [dual-cidr-length]``."""
    domain: MacroString | None = None
    if rest.startswith(":"):
        cidr = _DUAL_CIDR.search(rest, 1)
        assert cidr is not None  # the pattern matches the empty string at the end
        spec = rest[1:cidr.start()]
        if not spec:
            raise RecordSyntaxError(f"empty domain in {directive.text!r}")
        domain = parse_domain_spec(spec)
    else:
        cidr = _DUAL_CIDR.fullmatch(rest)
        if cidr is None:
            raise RecordSyntaxError(f"malformed {directive.mechanism}: {directive.text!r}")
    cidr4 = _cidr_length(cidr[1], 32, directive.text)
    cidr6 = _cidr_length(cidr[2], 128, directive.text)
    return replace(directive, domain=domain, cidr4=cidr4, cidr6=cidr6)


def _ip_directive(directive: Directive, rest: str) -> Directive:
    """ip4 and ip6: ``":" network ["/" length]``, with no leading zeros anywhere."""
    if not rest.startswith(":"):
        raise RecordSyntaxError(f"{directive.mechanism} needs an address: {directive.text!r}")
    address, slash, length = rest[1:].partition("/")
    v4 = directive.mechanism is Mechanism.IP4
    bits = 32 if v4 else 128
    prefix = _cidr_length(length, bits, directive.text) if slash else bits
    try:
        if v4:
            if not _IP4.match(address):
                raise ValueError(address)
            network: IPNetwork = ipaddress.IPv4Network((ipaddress.IPv4Address(address), prefix),
                                                       strict=False)
        else:
            if "%" in address or "." in address.rpartition(":")[0]:
                raise ValueError(address)
            network = ipaddress.IPv6Network((ipaddress.IPv6Address(address), prefix),
                                            strict=False)
    except ValueError:
        raise RecordSyntaxError(f"invalid address in {directive.text!r}") from None
    return replace(directive, network=network)


def _cidr_length(text: str | None, maximum: int, term: str) -> int:
    if text is None:
        return maximum
    if not text.isdigit() or not text.isascii() or (len(text) > 1 and text[0] == "0") \
            or int(text) > maximum:
        raise RecordSyntaxError(f"invalid CIDR length in {term!r}")
    return int(text)
