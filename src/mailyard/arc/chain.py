"""ARC chain validation and sealing (RFC 8617).

An ARC Set is three header fields with the same instance ``i=``:
ARC-Authentication-Results (AAR, the intermediary's Authentication-Results),
ARC-Message-Signature (AMS, a DKIM signature of the message with ``i=`` the instance
instead of an identity) and ARC-Seal (AS, a signature over all ARC Sets so far, with
``cv=`` the chain status the sealer saw).

Validation (5.2): no ARC field at all is ``none``; otherwise the sets must be complete
and numbered 1..N (N <= 50), the newest seal must not say ``cv=fail``, the first seal
must say ``cv=none`` and the others ``cv=pass``, the newest AMS must verify, and every
seal from N down to 1 must verify.  Anything else is ``fail``, with the reason.  A key
that cannot be fetched now is ``fail`` too (RFC 8617 has no temperror for the chain),
with a reason that says so.

Sealing (5.1): a new set N+1 with ``cv`` the validation result.  A chain whose newest
seal already says ``cv=fail``, or that fails here, or has 50 sets, is not sealed (the
next hop would only see a broken chain); :meth:`ArcSealer.seal` returns ``b""``.
Seals use relaxed header canonicalization (5.1.1), the AMS relaxed/relaxed.
"""

from __future__ import annotations

import base64
import enum
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from mailyard.dkim.canon import (
    BodyHasher,
    Canon,
    HeaderField,
    canon_header,
    parse_canon,
    split_header,
)
from mailyard.dkim.crypto import PrivateKey, signing_function, verify_data
from mailyard.dkim.record import KeyRecordError, parse_key_record
from mailyard.dkim.sign import DEFAULT_HEADERS, Signer, fold_list
from mailyard.dkim.signature import Algorithm
from mailyard.dkim.tags import TagListError, parse_tag_list, strip_fws
from mailyard.dkim.verify import signed_header_data
from mailyard.dns.api import DnsNameError, DnsTemporaryError, Resolver

__all__ = ["ArcResult", "ArcSealer", "ArcStatus", "ArcValidation", "seal_message",
           "validate_message"]

MAX_INSTANCES = 50
AAR, AMS, AS = b"arc-authentication-results", b"arc-message-signature", b"arc-seal"
_INSTANCE = re.compile(rb"\s*i\s*=\s*([0-9]{1,3})\s*(?:;|\Z)")


class ArcStatus(enum.StrEnum):
    NONE = "none"
    PASS = "pass"
    FAIL = "fail"


@dataclass(frozen=True)
class ArcResult:
    status: ArcStatus
    instances: int = 0  # N, the number of ARC Sets
    reason: str = ""
    domain: str = ""  # d= of the newest seal

    def to_dict(self) -> dict[str, object]:
        return {"result": str(self.status), "instances": self.instances,
                "reason": self.reason, "domain": self.domain}


_NO_CHAIN = ArcResult(ArcStatus.NONE)  # immutable: one for every message without a chain


@dataclass(frozen=True)
class _Set:
    aar: HeaderField
    ams: HeaderField
    seal: HeaderField


class _Broken(Exception):
    """The chain fails; the message says why."""


def _instance(field: HeaderField) -> int:
    value = field.raw.partition(b":")[2]
    if field.name == AAR:
        match = _INSTANCE.match(value)
        if match is None:
            raise _Broken("ARC-Authentication-Results without i=")
        return int(match.group(1))
    try:
        tags = parse_tag_list(value)
    except TagListError as exc:
        raise _Broken(f"{field.name.decode()}: {exc}") from None
    number = strip_fws(tags.get("i", b""))
    if not number.isdigit() or len(number) > 3:
        raise _Broken(f"{field.name.decode()} without a valid i=")
    return int(number)


def _sets(fields: Sequence[HeaderField]) -> list[_Set]:
    """The ARC Sets in instance order; raises _Broken when they are not 1..N, each
    complete and unique."""
    found: dict[int, dict[bytes, HeaderField]] = {}
    for field in fields:
        if field.name in (AAR, AMS, AS):
            slot = found.setdefault(_instance(field), {})
            if field.name in slot:
                raise _Broken(f"two {field.name.decode()} fields with i={_instance(field)}")
            slot[field.name] = field
    if not found:
        return []
    count = max(found)
    if count > MAX_INSTANCES:
        raise _Broken(f"more than {MAX_INSTANCES} ARC sets")
    if sorted(found) != list(range(1, count + 1)):
        raise _Broken("ARC set instances are not 1..N")
    sets = []
    for i in range(1, count + 1):
        slot = found[i]
        if len(slot) != 3:
            raise _Broken(f"ARC set {i} is incomplete")
        sets.append(_Set(slot[AAR], slot[AMS], slot[AS]))
    return sets


def seal_data(sets: Sequence[_Set], last_seal: bytes) -> bytes:
    """What the seal of the newest set signs (5.1.1): every set's AAR, AMS and AS in
    instance order, relaxed, the newest AS (``last_seal``) without its b= value and
    final CRLF."""
    parts = []
    for s in sets[:-1]:
        parts += [canon_header(s.aar.raw, Canon.RELAXED), canon_header(s.ams.raw, Canon.RELAXED),
                  canon_header(s.seal.raw, Canon.RELAXED)]
    last = sets[-1]
    parts += [canon_header(last.aar.raw, Canon.RELAXED),
              canon_header(last.ams.raw, Canon.RELAXED)]
    # the b= removal and the missing CRLF: the same rule as a DKIM signature field
    return b"".join(parts) + signed_header_data((), (), Canon.RELAXED, last_seal)


class ArcValidation:
    """The ARC chain of one message, validated as its body streams by (only the
    newest AMS needs the body)."""

    def __init__(self, header: bytes, *, fields: list[HeaderField] | None = None) -> None:
        """``fields``: the header section already split (``header`` is then unused)."""
        self.fields = split_header(header) if fields is None else fields
        self._error = ""
        self._sets: list[_Set] = []
        self._ams: dict[str, bytes] = {}
        self._hasher: BodyHasher | None = None
        try:
            self._sets = _sets(self.fields)
            if self._sets:
                self._ams = _tags(self._sets[-1].ams, ("a", "b", "bh", "d", "h", "s"))
                try:
                    _, body = parse_canon(strip_fws(self._ams.get("c", b"simple/simple")))
                except ValueError:
                    raise _Broken("ARC-Message-Signature has an unknown c=") from None
                length = strip_fws(self._ams.get("l", b""))
                if length and not (length.isdigit() and len(length) <= 12):
                    raise _Broken("ARC-Message-Signature l= is not a number")
                self._hasher = BodyHasher(body, int(length) if length else None)
        except _Broken as exc:
            self._error = str(exc)

    def update(self, body: bytes) -> None:
        if self._hasher is not None:
            self._hasher.update(body)

    async def finish(self, resolver: Resolver, now: float | None = None) -> ArcResult:
        now = time.time() if now is None else now
        if self._error:
            return ArcResult(ArcStatus.FAIL, len(self._sets), self._error)
        if not self._sets:
            return _NO_CHAIN
        count = len(self._sets)
        newest = _tags(self._sets[-1].seal, ())
        domain = strip_fws(newest.get("d", b"")).decode("ascii", "replace").lower()
        try:
            await self._check(resolver)
        except _Broken as exc:
            return ArcResult(ArcStatus.FAIL, count, str(exc), domain)
        return ArcResult(ArcStatus.PASS, count, "", domain)

    async def _check(self, resolver: Resolver) -> None:
        sets = self._sets
        for i, s in enumerate(sets, 1):
            cv = strip_fws(_tags(s.seal, ("a", "b", "cv", "d", "s")).get("cv", b"")).lower()
            if i == len(sets) and cv == b"fail":
                raise _Broken(f"ARC-Seal i={i} says cv=fail")
            if cv != (b"none" if i == 1 else b"pass"):
                raise _Broken(f"ARC-Seal i={i} has cv={cv.decode('ascii', 'replace')}")
        await self._check_ams(resolver)
        for n in range(len(sets), 0, -1):
            seal = sets[n - 1].seal
            tags = _tags(seal, ("a", "b", "cv", "d", "s"))
            if "h" in tags:
                raise _Broken(f"ARC-Seal i={n} has h=")
            data = seal_data(sets[:n], seal.raw)
            await self._verify(tags, data, resolver, f"ARC-Seal i={n}")

    async def _check_ams(self, resolver: Resolver) -> None:
        tags = self._ams
        hasher = self._hasher
        assert hasher is not None
        try:
            body_hash = base64.b64decode(strip_fws(tags["bh"]), validate=True)
        except ValueError:
            raise _Broken("ARC-Message-Signature bh= is not base64") from None
        if hasher.digest() != body_hash:
            raise _Broken("ARC-Message-Signature body hash did not verify")
        names = [strip_fws(h).lower() for h in tags["h"].split(b":")]
        if AS in names:
            raise _Broken("ARC-Message-Signature signs ARC-Seal")
        head = strip_fws(tags.get("c", b"simple/simple")).lower().partition(b"/")[0]
        try:
            canon = Canon(head.decode())
        except ValueError:
            raise _Broken("ARC-Message-Signature has an unknown c=") from None
        ams = self._sets[-1].ams
        data = signed_header_data(self.fields, names, canon, ams.raw)
        await self._verify(tags, data, resolver, f"ARC-Message-Signature i={len(self._sets)}")

    async def _verify(self, tags: dict[str, bytes], data: bytes, resolver: Resolver,
                      what: str) -> None:
        try:
            algorithm = Algorithm(strip_fws(tags["a"]).decode("ascii").lower())
            signature = base64.b64decode(strip_fws(tags["b"]), validate=True)
            domain = strip_fws(tags["d"]).decode("ascii").lower()
            selector = strip_fws(tags["s"]).decode("ascii")
        except ValueError:
            raise _Broken(f"{what}: bad a=, b=, d= or s=") from None
        if algorithm is Algorithm.RSA_SHA1:
            raise _Broken(f"{what}: rsa-sha1 is not accepted (RFC 8301)")
        name = f"{selector}._domainkey.{domain}"
        try:
            texts = await resolver.txt(name)
        except DnsTemporaryError as exc:
            raise _Broken(f"{what}: key lookup failed ({exc.reason})") from None
        except DnsNameError:
            raise _Broken(f"{what}: d= or s= is not a DNS name") from None
        if not texts:
            raise _Broken(f"{what}: no key at {name}")
        try:
            record = parse_key_record(texts[0])
        except KeyRecordError as exc:
            raise _Broken(f"{what}: {exc}") from None
        if record.key_type != algorithm.key_type:
            raise _Broken(f"{what}: key type does not match a=")
        if record.key_type == "rsa" and record.bits < 1024:
            raise _Broken(f"{what}: RSA key shorter than 1024 bits")
        if not verify_data(record.key, signature, data):
            raise _Broken(f"{what}: signature did not verify")


def _tags(field: HeaderField, required: Sequence[str]) -> dict[str, bytes]:
    try:
        tags = parse_tag_list(field.raw.partition(b":")[2])
    except TagListError as exc:
        raise _Broken(f"{field.name.decode()}: {exc}") from None
    missing = [t for t in required if t not in tags]
    if missing:
        raise _Broken(f"{field.name.decode()} lacks {', '.join(t + '=' for t in missing)}")
    return tags


@dataclass(frozen=True)
class ArcSealer:
    """Adds our ARC Set when we forward a message (aliases to external addresses)."""

    domain: str
    selector: str
    key: PrivateKey
    authserv_id: str
    headers: Sequence[str] = DEFAULT_HEADERS + ("DKIM-Signature",)

    def seal(self, header: bytes, body_hash: bytes, chain: ArcResult,
             auth_results: str, now: float) -> bytes:
        """The three fields of the new set (AS, AMS, AAR, top down), or ``b""`` when
        the chain must not be sealed.  ``body_hash`` is the relaxed body's SHA-256;
        ``auth_results`` the results part of our Authentication-Results."""
        if chain.status is ArcStatus.FAIL or chain.instances >= MAX_INSTANCES:
            return b""
        n = chain.instances + 1
        fields = split_header(header)
        try:
            earlier = _sets(fields)
        except _Broken:
            return b""
        aar = (f"ARC-Authentication-Results: i={n}; {self.authserv_id}"
               + (f";\r\n\t{auth_results}" if auth_results else "; none") + "\r\n").encode()
        signer = Signer(self.domain, self.selector, self.key, headers=self.headers, oversign=())
        sign = signing_function(self.key)
        names, lows = signer.names_to_sign(fields)
        ams = (f"ARC-Message-Signature: i={n}; a={signer.algorithm}; c=relaxed/relaxed;\r\n"
               f"\td={self.domain}; s={self.selector}; t={int(now)};\r\n"
               f"\t{fold_list('h=', names)};\r\n"
               f"\tbh={base64.b64encode(body_hash).decode('ascii')};\r\n\tb=").encode()
        ams += _fold(base64.b64encode(sign(signed_header_data(fields, lows, Canon.RELAXED,
                                                               ams))))
        sets = [*earlier, _Set(HeaderField(AAR, aar), HeaderField(AMS, ams),
                               HeaderField(AS, b""))]
        cv = "none" if n == 1 else "pass"
        unsigned = (f"ARC-Seal: i={n}; a={signer.algorithm}; t={int(now)}; cv={cv};\r\n"
                    f"\td={self.domain}; s={self.selector};\r\n\tb=").encode()
        seal = unsigned + _fold(base64.b64encode(sign(seal_data(sets, unsigned))))
        return seal + ams + aar


def _fold(data: bytes) -> bytes:
    return b"\r\n\t".join(data[i:i + 72] for i in range(0, len(data), 72)) + b"\r\n"


async def validate_message(message: bytes, resolver: Resolver,
                           now: float | None = None) -> ArcResult:
    end = message.find(b"\r\n\r\n")
    header, body = (message, b"") if end < 0 else (message[:end + 2], message[end + 4:])
    validation = ArcValidation(header)
    validation.update(body)
    return await validation.finish(resolver, now)


async def seal_message(message: bytes, sealer: ArcSealer, resolver: Resolver,
                       auth_results: str, now: float | None = None) -> bytes:
    """The new ARC Set's fields for a whole message (validating its chain first)."""
    now = time.time() if now is None else now
    end = message.find(b"\r\n\r\n")
    header, body = (message, b"") if end < 0 else (message[:end + 2], message[end + 4:])
    chain = await validate_message(message, resolver, now)
    hasher = BodyHasher(Canon.RELAXED)
    hasher.update(body)
    return sealer.seal(header, hasher.digest(), chain, auth_results, now)
