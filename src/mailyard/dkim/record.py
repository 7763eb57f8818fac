"""The key record a signer publishes at ``selector._domainkey.domain`` (RFC 6376 3.6.1;
ed25519 keys per RFC 8463 4; key sizes per RFC 8301 3.2).

:func:`parse_key_record` turns the TXT text into a :class:`KeyRecord` holding a loaded
public key, or raises :class:`KeyRecordError` with the reason a verifier reports as
``permerror`` (a revoked key, an unknown key type, bad base64, a key that does not
load).  The key-size policy is the verifier's (it is a ``fail``, not a syntax error),
so the record keeps the key's size in bits.
"""

from __future__ import annotations

import base64
import binascii
import enum
import functools
from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mailyard.dkim.tags import TagListError, parse_tag_list, strip_fws

__all__ = ["KeyRecord", "KeyRecordError", "KeyType", "PublicKey", "parse_key_record",
           "public_key_text"]

PublicKey = rsa.RSAPublicKey | ed25519.Ed25519PublicKey

MAX_KEY_BYTES = 2048  # base64-decoded; an RSA-8192 SPKI is about 1,060 bytes


class KeyType(enum.StrEnum):
    RSA = "rsa"
    ED25519 = "ed25519"


class KeyRecordError(ValueError):
    """The key record is unusable; the message says why."""


@dataclass(frozen=True)
class KeyRecord:
    key_type: KeyType
    key: PublicKey
    bits: int  # RSA modulus size; 256 for ed25519
    hashes: tuple[str, ...]  # h=: acceptable hash algorithms, () for any
    services: tuple[str, ...]  # s=: "*" or "email"
    testing: bool  # t=y: the domain is testing DKIM
    strict_identity: bool  # t=s: i= must be exactly d=, not a subdomain


def parse_key_record(text: str | bytes) -> KeyRecord:
    """Parse a key record; raises :class:`KeyRecordError`.  The last 1,024 results are
    remembered: every message of a sender brings the same record from the DNS cache,
    and loading its public key is most of the work."""
    raw = text.encode("utf-8", "replace") if isinstance(text, str) else text
    found = _parsed(raw)
    if isinstance(found, str):
        raise KeyRecordError(found)
    return found


@functools.lru_cache(maxsize=1024)
def _parsed(raw: bytes) -> KeyRecord | str:
    try:
        return _parse(raw)
    except KeyRecordError as exc:
        return str(exc)


def _parse(raw: bytes) -> KeyRecord:
    try:
        tags = parse_tag_list(raw)
    except TagListError as exc:
        raise KeyRecordError(f"key record syntax: {exc}") from None
    version = tags.get("v")
    if version is not None and version != b"DKIM1":
        raise KeyRecordError("key record version is not DKIM1")
    if "p" not in tags:
        raise KeyRecordError("key record has no p=")
    data = strip_fws(tags["p"])
    if not data:
        raise KeyRecordError("key revoked (empty p=)")
    try:
        key_type = KeyType(tags.get("k", b"rsa").decode("ascii").lower())
    except ValueError:
        raise KeyRecordError("unknown key type k=") from None
    try:
        der = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise KeyRecordError("p= is not valid base64") from None
    if len(der) > MAX_KEY_BYTES:
        raise KeyRecordError("p= is too long")
    key, bits = _load_key(key_type, der)
    return KeyRecord(
        key_type=key_type, key=key, bits=bits,
        hashes=_list(tags.get("h")), services=_list(tags.get("s")) or ("*",),
        testing="y" in _list(tags.get("t")), strict_identity="s" in _list(tags.get("t")))


def _list(value: bytes | None) -> tuple[str, ...]:
    if not value:
        return ()
    items = (strip_fws(v).decode("ascii", "replace").lower() for v in value.split(b":"))
    return tuple(i for i in items if i)


def _load_key(key_type: KeyType, der: bytes) -> tuple[PublicKey, int]:
    if key_type is KeyType.ED25519:
        if len(der) != 32:
            raise KeyRecordError("ed25519 key is not 32 bytes")
        return ed25519.Ed25519PublicKey.from_public_bytes(der), 256
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, UnsupportedAlgorithm):
        raise KeyRecordError("p= is not an RSA public key") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise KeyRecordError("p= is not an RSA public key")
    return key, key.key_size


def public_key_text(key: PublicKey) -> str:
    """The p= value for ``key``: DER SubjectPublicKeyInfo for RSA, the raw 32 bytes
    for ed25519 (RFC 8463 4.2), base64."""
    if isinstance(key, ed25519.Ed25519PublicKey):
        der = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    else:
        der = key.public_bytes(serialization.Encoding.DER,
                               serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode("ascii")
