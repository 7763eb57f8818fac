"""The DKIM-Signature header field (RFC 6376 3.5): parsing and the checks of 6.1.1
that need no DNS.

:func:`parse_signature` returns a :class:`Signature` or raises
:class:`SignatureError` (a ``permerror``).  :func:`without_b_value` gives the field
as it was hashed: the value of ``b=`` removed, everything else untouched (3.7).
"""

from __future__ import annotations

import binascii
import enum
import re
from dataclasses import dataclass

from mailyard.dkim.canon import Canon, parse_canon
from mailyard.dkim.tags import TagListError, parse_tag_list, strip_fws

__all__ = ["Algorithm", "Signature", "SignatureError", "parse_signature", "signature_from_tags",
           "without_b_value"]

_REQUIRED = ("v", "a", "b", "bh", "d", "h", "s")
_REQUIRED_SET = frozenset(_REQUIRED)
# The b= tag: first in the list, or after a ";" (a literal the search skips to).
_B_FIRST = re.compile(rb"[ \t\r\n]*b[ \t\r\n]*=")
_B_LATER = re.compile(rb";[ \t\r\n]*b[ \t\r\n]*=")
_DIGITS = re.compile(rb"[0-9]{1,12}\Z")
_DOMAIN = re.compile(r"[a-z0-9._-]+")
MAX_SIGNATURE_BYTES = 1024  # an RSA-8192 signature is 1,024 bytes


class Algorithm(enum.StrEnum):
    RSA_SHA256 = "rsa-sha256"
    ED25519_SHA256 = "ed25519-sha256"  # RFC 8463
    RSA_SHA1 = "rsa-sha1"  # parsed to be refused (RFC 8301 3.1)

    @property
    def key_type(self) -> str:
        return "ed25519" if self is Algorithm.ED25519_SHA256 else "rsa"

    @property
    def hash_name(self) -> str:
        return "sha1" if self is Algorithm.RSA_SHA1 else "sha256"


_ALGORITHMS = {a.value.encode(): a for a in Algorithm}  # by a= in lower case


class SignatureError(ValueError):
    """The signature field is unusable; the message says why (a permerror)."""


@dataclass(frozen=True)
class Signature:
    algorithm: Algorithm
    signature: bytes  # b=, decoded
    body_hash: bytes  # bh=, decoded
    domain: str  # d=, lower case
    selector: str  # s=
    headers: tuple[bytes, ...]  # h=, lower-case names in order
    header_canon: Canon
    body_canon: Canon
    identity: str  # i=, "@d" when absent
    length: int | None  # l=
    timestamp: int | None  # t=
    expires: int | None  # x=


def parse_signature(value: bytes) -> Signature:
    """The value of a DKIM-Signature field (the text after the colon)."""
    try:
        tags = parse_tag_list(value)
    except TagListError as exc:
        raise SignatureError(f"signature syntax: {exc}") from None
    return signature_from_tags(tags)


def signature_from_tags(tags: dict[str, bytes]) -> Signature:
    """The signature of a parsed tag list (:func:`parse_signature` after the syntax)."""
    if not tags.keys() >= _REQUIRED_SET:
        missing = [t for t in _REQUIRED if t not in tags]
        raise SignatureError(f"signature lacks {', '.join(t + '=' for t in missing)}")
    if tags["v"] != b"1":
        raise SignatureError("signature version is not 1")
    algorithm = _ALGORITHMS.get(tags["a"].lower())  # (bytes.lower: ASCII letters only)
    if algorithm is None:
        raise SignatureError("unknown signing algorithm")
    domain = _domain(tags["d"])
    headers = tuple(strip_fws(tags["h"]).lower().split(b":"))
    if b"from" not in headers:
        raise SignatureError("h= does not include From")
    try:
        header_canon, body_canon = parse_canon(tags.get("c", b"simple/simple"))
    except ValueError:
        raise SignatureError("unknown canonicalization") from None
    identity = strip_fws(tags.get("i", b"@" + domain.encode())).decode("utf-8", "replace")
    local, at, idomain = identity.rpartition("@")
    idomain = idomain.lower().rstrip(".")
    if not at or not (idomain == domain or idomain.endswith("." + domain)):
        raise SignatureError("i= is not in d= or a subdomain of it")
    timestamp = _number(tags, "t") if "t" in tags else None
    expires = _number(tags, "x") if "x" in tags else None
    if timestamp is not None and expires is not None and expires < timestamp:
        raise SignatureError("x= is before t=")
    if "q" in tags and b"dns/txt" not in strip_fws(tags["q"]).lower().split(b":"):
        raise SignatureError("no supported query method in q=")
    return Signature(
        algorithm=algorithm, signature=_b64(tags["b"], "b=", MAX_SIGNATURE_BYTES),
        body_hash=_b64(tags["bh"], "bh=", 64), domain=domain,
        selector=strip_fws(tags["s"]).decode("ascii", "replace"), headers=headers,
        header_canon=header_canon, body_canon=body_canon, identity=f"{local}@{idomain}",
        length=_number(tags, "l") if "l" in tags else None, timestamp=timestamp,
        expires=expires)


def _domain(value: bytes) -> str:
    try:
        domain = strip_fws(value).decode("ascii").lower().rstrip(".")
    except UnicodeDecodeError:
        raise SignatureError("d= is not an ASCII domain") from None
    if not domain or ".." in domain or not _DOMAIN.fullmatch(domain):
        raise SignatureError("d= is not a domain")
    return domain


def _b64(value: bytes, name: str, limit: int) -> bytes:
    try:
        # (base64.b64decode(..., validate=True) without its Python wrapper)
        data = binascii.a2b_base64(strip_fws(value), strict_mode=True)
    except (binascii.Error, ValueError):
        raise SignatureError(f"{name} is not valid base64") from None
    if not data or len(data) > limit:
        raise SignatureError(f"{name} has a bad length")
    return data


def _number(tags: dict[str, bytes], name: str) -> int | None:
    value = tags.get(name)
    if value is None:
        return None
    value = strip_fws(value)
    if not _DIGITS.match(value):
        raise SignatureError(f"{name}= is not a number")
    return int(value)


def without_b_value(raw: bytes) -> bytes:
    """The field with the value of its b= tag removed (3.7), for hashing."""
    name, colon, value = raw.partition(b":")
    found = _B_FIRST.match(value) or _B_LATER.search(value)
    if found is None:
        return raw
    start = found.end()
    end = value.find(b";", start)
    return name + colon + value[:start] + (value[end:] if end >= 0 else b"")
