"""SMTP paths and ESMTP parameters (RFC 5321 4.1.2, RFC 3461 4, RFC 6531 3.3).

Parses the argument of ``MAIL FROM:`` and ``RCPT TO:``: a path in angle brackets (a
mailbox whose local part is a dot-string or a quoted-string, whose domain is a host
name or an address literal such as ``[192.0.2.1]`` / ``[IPv6:2001:db8::1]``; the null
reverse-path ``<>``; the obsolete source route ``<@a,@b:user@c>`` is accepted and
dropped, RFC 5321 4.1.1.3 / C), followed by ``KEY=VALUE`` parameters.  Also here: the
RFC 3461 xtext codec used by ENVID= and ORCPT=, and SMTPUTF8 detection.

The grammar is small and the error replies must be exact, so it is written out as a
few regular expressions rather than bending ``email.utils`` (which parses RFC 5322
header addresses, a different and far looser grammar).  Both roles use it: the server
core parses MAIL and RCPT with it, and the delivery client encodes them (with
:func:`format_path` and :func:`xtext_encode`) and checks its addresses against the same
grammar, all through :mod:`mailyard.proto.smtp.wire`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from mailyard.proto.smtp.replies import (
    REPLY_BAD_ADDRESS,
    REPLY_BAD_SENDER_ADDRESS,
    REPLY_SYNTAX,
    Reply,
    SmtpError,
)

__all__ = [
    "AddressError",
    "Mailbox",
    "ParameterError",
    "format_address",
    "format_path",
    "needs_smtputf8",
    "parse_forward_path",
    "parse_params",
    "parse_reverse_path",
    "quote_local_part",
    "valid_address_literal",
    "xtext_decode",
    "xtext_encode",
]

MAX_PATH_OCTETS = 256  # RFC 5321 4.5.3.1.3, including the angle brackets
MAX_DOMAIN_OCTETS = 255  # RFC 5321 4.5.3.1.2
MAX_LABEL_OCTETS = 63  # RFC 1035 2.3.4


class AddressError(SmtpError):
    """A path that does not parse; carries 501 5.1.7 (sender) or 501 5.1.3 (recipient)."""


class ParameterError(SmtpError):
    """A malformed ESMTP parameter list or value (501 5.5.4 unless stated)."""


# UTF8-non-ascii (RFC 6531 3.3) is allowed wherever atext, qtext or a label character
# is; whether the transaction may carry it is decided later (SMTPUTF8, 553 5.6.7).
_U = "\u0080-\U0010ffff"
_ATEXT = rf"[A-Za-z0-9!#$%&'*+\-/=?^_`{{|}}~{_U}]"
_DOT_STRING = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
_QUOTED_STRING = rf'"(?:[\x20\x21\x23-\x5b\x5d-\x7e{_U}]|\\[\x20-\x7e])*"'
_LABEL = rf"[A-Za-z0-9{_U}](?:[A-Za-z0-9\-{_U}]*[A-Za-z0-9{_U}])?"
_DOMAIN = rf"{_LABEL}(?:\.{_LABEL})*"
_LITERAL = r"\[[\x21-\x5a\x5e-\x7e]+\]"  # dcontent (RFC 5321 4.1.3); checked below
_HOST = rf"(?:{_DOMAIN}|{_LITERAL})"
_ADL = rf"@{_HOST}(?:,@{_HOST})*:"
_PATH_RE = re.compile(
    rf"<(?:{_ADL})?(?P<local>{_DOT_STRING}|{_QUOTED_STRING})@(?P<domain>{_HOST})>"
)
_DOT_STRING_RE = re.compile(_DOT_STRING)
_QUOTED_PAIR_RE = re.compile(r"\\(.)")
_NEEDS_QUOTE_ESCAPE_RE = re.compile(r'(["\\])')
_KEYWORD_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-]*")
# esmtp-value: %d33-60 / %d62-126, and UTF-8 under SMTPUTF8 (RFC 6531 3.3).
_VALUE_RE = re.compile(rf"[\x21-\x3c\x3e-\x7e{_U}]+")
_XTEXT_HEX_RE = re.compile(r"\+([0-9A-F]{2})")
_XTEXT_RE = re.compile(r"(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})*")


@dataclass(frozen=True, slots=True)
class Mailbox:
    """One mailbox from a path: the local part *unquoted*, the domain as sent.

    ``domain`` is "" only for the special recipient ``<postmaster>`` (RFC 5321 4.1.1.3).
    """

    local_part: str
    domain: str

    @property
    def address(self) -> str:
        """The mailbox as it goes into an :class:`~mailyard.envelope.Envelope`:
        local part quoted only when it must be (RFC 5321 4.1.2)."""
        return format_address(self.local_part, self.domain)

    @property
    def needs_smtputf8(self) -> bool:
        return not (self.local_part.isascii() and self.domain.isascii())

    def __str__(self) -> str:
        return self.address


def quote_local_part(local_part: str) -> str:
    """A dot-string stays as it is; anything else becomes a quoted-string."""
    if _DOT_STRING_RE.fullmatch(local_part):
        return local_part
    return '"' + _NEEDS_QUOTE_ESCAPE_RE.sub(r"\\\1", local_part) + '"'


def format_address(local_part: str, domain: str) -> str:
    if not domain:
        return quote_local_part(local_part)
    return f"{quote_local_part(local_part)}@{domain}"


def format_path(address: str) -> str:
    """``<address>`` for MAIL FROM/RCPT TO; ``<>`` for the null reverse-path ("")."""
    return f"<{address}>"


def needs_smtputf8(address: str) -> bool:
    """True when the address has non-ASCII characters (RFC 6531 3.4)."""
    return not address.isascii()


def _unquote(local: str) -> str:
    if local.startswith('"'):
        return _QUOTED_PAIR_RE.sub(r"\1", local[1:-1])
    return local


def valid_address_literal(literal: str) -> bool:
    """``[...]``, RFC 5321 4.1.3: IPv4, ``IPv6:`` or a general ``tag:content`` literal."""
    if len(literal) < 2 or literal[0] != "[" or literal[-1] != "]":
        return False
    inner = literal[1:-1]
    tag, colon, rest = inner.partition(":")
    if not colon:
        try:
            ipaddress.IPv4Address(inner)
        except ValueError:
            return False
        return True
    if tag.lower() == "ipv6":
        try:
            ipaddress.IPv6Address(rest)
        except ValueError:
            return False
        return True
    return bool(_KEYWORD_RE.fullmatch(tag)) and bool(rest)


def _valid_domain(domain: str) -> bool:
    if domain.startswith("["):
        return valid_address_literal(domain)
    if len(domain) <= MAX_LABEL_OCTETS and domain.isascii():  # the usual case: no label too long
        return True
    if len(domain.encode("utf-8")) > MAX_DOMAIN_OCTETS:
        return False
    return all(len(label.encode("utf-8")) <= MAX_LABEL_OCTETS for label in domain.split("."))


def _parse_path(text: str, reply: Reply) -> tuple[Mailbox, str]:
    match = _PATH_RE.match(text)
    if match is None:
        raise AddressError(reply)
    if len(match.group(0).encode("utf-8")) > MAX_PATH_OCTETS:
        raise AddressError(reply.with_text("Path too long (RFC 5321 4.5.3.1.3)"))
    domain = match.group("domain")
    if not _valid_domain(domain):
        raise AddressError(reply)
    return Mailbox(_unquote(match.group("local")), domain), _rest(text, match.end(), reply)


def _rest(text: str, end: int, reply: Reply) -> str:
    """What follows the path: nothing, or parameters after a space."""
    rest = text[end:]
    if rest and rest[0] != " ":
        raise AddressError(reply)
    return rest.strip(" ")


def parse_reverse_path(text: str) -> tuple[Mailbox | None, str]:
    """Parse what follows ``MAIL FROM:``: (mailbox or None for ``<>``, parameter text).

    A space before the path is tolerated (common, harmless); a path without angle
    brackets is not (RFC 5321 4.1.2).  Errors carry 501 5.1.7."""
    text = text.lstrip(" ")
    if text.startswith("<>"):
        return None, _rest(text, 2, REPLY_BAD_SENDER_ADDRESS)
    return _parse_path(text, REPLY_BAD_SENDER_ADDRESS)


def parse_forward_path(text: str) -> tuple[Mailbox, str]:
    """Parse what follows ``RCPT TO:``.  ``<Postmaster>`` without a domain is accepted
    (RFC 5321 4.1.1.3) and comes back with ``domain == ""``.  Errors carry 501 5.1.3."""
    text = text.lstrip(" ")
    if text[:12].lower() == "<postmaster>":
        return Mailbox(text[1:11], ""), _rest(text, 12, REPLY_BAD_ADDRESS)
    return _parse_path(text, REPLY_BAD_ADDRESS)


def parse_params(text: str) -> dict[str, str | None]:
    """``KEY=VALUE KEY2`` -> {"KEY": "VALUE", "KEY2": None}; keys upper-cased
    (RFC 5321 4.1.2: esmtp-keyword is case-insensitive).  A repeated key is an error."""
    params: dict[str, str | None] = {}
    for item in text.split(" "):
        if not item:
            continue
        key, eq, value = item.partition("=")
        if not _KEYWORD_RE.fullmatch(key):
            raise ParameterError(REPLY_SYNTAX.with_text(f"Bad parameter syntax: {item[:40]}"))
        if eq and not _VALUE_RE.fullmatch(value):
            raise ParameterError(REPLY_SYNTAX.with_text(f"Bad value for {key.upper()}"))
        key = key.upper()
        if key in params:
            raise ParameterError(REPLY_SYNTAX.with_text(f"Duplicate parameter {key}"))
        params[key] = value if eq else None
    return params


def xtext_decode(text: str) -> str:
    """RFC 3461 4: ``+XX`` (upper-case hex) stands for one octet; other characters
    are ASCII 33-126 except ``+`` and ``=``.  Octets are read as UTF-8 (RFC 6533)."""
    if not _XTEXT_RE.fullmatch(text):
        raise ParameterError(REPLY_SYNTAX.with_text("Invalid xtext"))
    if "+" not in text:
        return text
    raw = _XTEXT_HEX_RE.sub(lambda m: chr(int(m.group(1), 16)), text).encode("latin-1")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ParameterError(REPLY_SYNTAX.with_text("Invalid xtext")) from None


def xtext_encode(text: str) -> str:
    """Encode for ENVID=/ORCPT= (RFC 3461 4): octets outside 33-126, ``+`` and ``=``
    become ``+XX``; non-ASCII text is encoded as its UTF-8 octets."""
    out = []
    for byte in text.encode("utf-8"):
        if 33 <= byte <= 126 and byte not in (0x2B, 0x3D):
            out.append(chr(byte))
        else:
            out.append(f"+{byte:02X}")
    return "".join(out)
