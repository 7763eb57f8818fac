"""VERP: an envelope sender ``bounces+<token>@domain`` per message, so a bounce says by
its envelope recipient which campaign and contact (or which transactional message) it
belongs to, whatever the remote system puts in its report.

The token is signed: anyone can send mail to ``bounces+...@domain``, and an unsigned
token would let a forged bounce suppress any contact.  It carries

- one byte for the kind (campaign recipient or transactional message),
- the ids (two unsigned LEB128 varints, or the message id's ASCII bytes),
- 10 bytes (80 bits) of HMAC-SHA256 over the kind and ids, keyed by a key derived
  from the server secret (:func:`verp_key`),

in lower-case RFC 4648 base32 without padding.  Remote MTAs may change the case of a
local part (RFC 5321 2.4 lets them treat it as case-insensitive, and some do), so only
one case is used and decoding folds case.  A campaign token is at most 47 characters
(ids up to 2**63-1), so ``bounces+<token>`` stays within the 64 octets of RFC 5321
4.5.3.1.1; a message id may have up to 24 characters with the default prefix, and a
local part that would be longer is refused when encoding.  Decoding a token that is malformed,
non-canonical, or whose signature does not match gives ``None``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass

from mailyard import varint
from mailyard.daemon.secret import derive_key

DEFAULT_PREFIX = "bounces"
DELIMITER = "+"
MAX_LOCAL_PART = 64  # RFC 5321 4.5.3.1.1
MAC_BYTES = 10
MAX_ID = varint.MAX_VALUE

_KIND_CAMPAIGN = 0x01
_KIND_MESSAGE = 0x02


@dataclass(frozen=True)
class CampaignRecipient:
    """A campaign message: which campaign, which contact."""

    campaign_id: int
    contact_id: int


@dataclass(frozen=True)
class TransactionalMessage:
    """A single (transactional) message, named by its message id (ASCII)."""

    message_id: str


VerpTarget = CampaignRecipient | TransactionalMessage


def verp_key(secret: bytes) -> bytes:
    """The VERP signing key, derived from the server secret."""
    return derive_key(secret, "verp")


def encode_token(target: VerpTarget, key: bytes) -> str:
    payload = _payload(target)
    mac = hmac.digest(key, payload, "sha256")[:MAC_BYTES]  # (one C call)
    return base64.b32encode(payload + mac).decode("ascii").rstrip("=").lower()


def decode_token(token: str, key: bytes) -> VerpTarget | None:
    raw = _b32decode(token)
    if raw is None or len(raw) <= MAC_BYTES:
        return None
    payload, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
    expected = hmac.digest(key, payload, "sha256")[:MAC_BYTES]
    if not hmac.compare_digest(mac, expected):
        return None
    return _target(payload)


def verp_address(target: VerpTarget, key: bytes, domain: str, *,
                 prefix: str = DEFAULT_PREFIX) -> str:
    """The envelope sender for a message to ``target``.

    Raises ValueError when the local part would exceed 64 octets (a long prefix or
    message id) or an id is out of range: a programming error, not remote input.
    """
    return token_address(encode_token(target, key), domain, prefix=prefix)


def token_address(token: str, domain: str, *, prefix: str = DEFAULT_PREFIX) -> str:
    """:func:`verp_address` from the target's token (:func:`encode_token`), for a
    caller that uses the token elsewhere too (a campaign's unsubscribe mailto)."""
    local = f"{prefix}{DELIMITER}{token}"
    if len(local.encode("utf-8")) > MAX_LOCAL_PART:
        raise ValueError(f"VERP local part is {len(local)} octets, over {MAX_LOCAL_PART}")
    return f"{local}@{domain}"


def parse_verp_address(address: str, key: bytes, *,
                       prefix: str = DEFAULT_PREFIX) -> VerpTarget | None:
    """The target of a VERP address (an envelope recipient of a bounce, or the
    Return-Path of a returned message); ``None`` for any other address or a bad token.
    Prefix and token are compared without regard to case; the domain is not checked
    (the caller routed the mail here because the domain is ours)."""
    address = address.strip().strip("<>").strip()
    local, at, _domain = address.rpartition("@")
    if not at:
        return None
    if local.startswith('"') and local.endswith('"') and len(local) >= 2:
        local = local[1:-1]
    head, delim, token = local.partition(DELIMITER)
    if not delim or head.lower() != prefix.lower() or not token:
        return None
    return decode_token(token, key)


def _payload(target: VerpTarget) -> bytes:
    if isinstance(target, CampaignRecipient):
        return (bytes([_KIND_CAMPAIGN]) + varint.encode(target.campaign_id)
                + varint.encode(target.contact_id))
    mid = target.message_id
    if not mid or not mid.isascii() or not mid.isprintable():
        raise ValueError("a transactional message id must be printable ASCII")
    return bytes([_KIND_MESSAGE]) + mid.encode("ascii")


def _target(payload: bytes) -> VerpTarget | None:
    kind, body = payload[0], payload[1:]
    if kind == _KIND_CAMPAIGN:
        first = varint.decode(body, 0)
        if first is None:
            return None
        campaign_id, pos = first
        second = varint.decode(body, pos)
        if second is None or second[1] != len(body):
            return None
        return CampaignRecipient(campaign_id, second[0])
    if kind == _KIND_MESSAGE and body:
        try:
            mid = body.decode("ascii")
        except UnicodeDecodeError:
            return None
        return TransactionalMessage(mid) if mid.isprintable() else None
    return None



def _b32decode(token: str) -> bytes | None:
    token = token.strip()
    if not token or len(token) > MAX_LOCAL_PART or not token.isascii():
        return None
    upper = token.upper()
    try:
        raw = base64.b32decode(upper + "=" * (-len(upper) % 8))
    except (binascii.Error, ValueError):
        return None
    # Unused trailing bits make several strings decode alike: accept only the one
    # encode_token writes.
    if base64.b32encode(raw).decode("ascii").rstrip("=") != upper:
        return None
    return raw
