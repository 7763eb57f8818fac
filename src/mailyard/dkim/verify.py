"""DKIM verification (RFC 6376 6.1, RFC 8463, RFC 8301).

Every DKIM-Signature field, top down and up to ``max_signatures`` of them (the rest
are not looked at: a message carrying hundreds of signatures must not cost hundreds
of DNS lookups and RSA operations), gets one :class:`DkimResult`.  Outcomes are
values: a broken signature, a missing or revoked key, a DNS failure are results, not
exceptions.

The body is streamed: :class:`Verification` is made from the header section, fed the
body in pieces, and hashes it once per distinct (canonicalization, ``l=``, hash)
among the signatures; :meth:`Verification.finish` fetches the keys through the
injected resolver and checks each signature.

Rules that are policy, not syntax (reported as ``fail`` with the reason):

* ``rsa-sha1`` is refused (RFC 8301 3.1: verifiers MUST NOT consider it valid);
* RSA keys under ``min_rsa_bits`` (1024, RFC 8301 3.2) are refused;
* an expired signature (``x=`` in the past, 3.5) fails; a ``t=`` more than
  ``clock_skew`` in the future is a permerror;
* ``l=`` (3.5, 8.2): the signature covers only the first ``l`` octets of the
  canonical body, so whatever follows could have been added by anyone.  The result
  carries ``unsigned_body``; with ``accept_partial_body = False`` such a signature is
  ``policy`` instead of ``pass``.  ``l=`` larger than the body fails.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mailyard.dkim.canon import (
    BodyHasher,
    Canon,
    HeaderField,
    canon_header,
    relaxed_fields,
    split_header,
)
from mailyard.dkim.crypto import verify_data
from mailyard.dkim.record import KeyRecord, KeyRecordError, parse_key_record
from mailyard.dkim.result import DkimResult, DkimStatus
from mailyard.dkim.signature import (
    Algorithm,
    Signature,
    SignatureError,
    signature_from_tags,
    without_b_value,
)
from mailyard.dkim.tags import TagListError, parse_tag_list
from mailyard.dns.api import DnsNameError, DnsTemporaryError, Resolver

__all__ = ["VerifyPolicy", "Verification", "header_picks", "picked_header_data",
           "signed_header_data", "verify_message"]

SIGNATURE_FIELD = b"dkim-signature"
CRLF = b"\r\n"
MAX_KEY_RECORDS = 5  # TXT records tried at one selector name


@dataclass(frozen=True)
class VerifyPolicy:
    max_signatures: int = 5
    min_rsa_bits: int = 1024
    clock_skew: int = 300
    accept_partial_body: bool = True


@dataclass
class _Candidate:
    field: HeaderField
    signature: Signature | None
    error: str  # why the signature did not parse (with signature None)
    hasher: BodyHasher | None = None
    tags: dict[str, bytes] | None = None  # the field's tag list (None: unreadable)


class Verification:
    """The DKIM signatures of one message, checked as its body streams by."""

    def __init__(self, header: bytes, policy: VerifyPolicy = VerifyPolicy(), *,
                 fields: list[HeaderField] | None = None) -> None:
        """``fields``: the header section already split (``header`` is then unused)."""
        self.policy = policy
        self.fields = split_header(header) if fields is None else fields
        self._candidates: list[_Candidate] = []
        hashers: dict[tuple[Canon, int | None, str], BodyHasher] = {}
        found = [f for f in self.fields if f.name == SIGNATURE_FIELD]
        for field in found[:max(policy.max_signatures, 0)]:
            try:
                tags = parse_tag_list(field.raw.partition(b":")[2])
            except TagListError as exc:
                self._candidates.append(_Candidate(field, None, f"signature syntax: {exc}"))
                continue
            try:
                sig = signature_from_tags(tags)
            except SignatureError as exc:
                self._candidates.append(_Candidate(field, None, str(exc), tags=tags))
                continue
            key = (sig.body_canon, sig.length, sig.algorithm.hash_name)
            hasher = hashers.get(key)
            if hasher is None and sig.algorithm is not Algorithm.RSA_SHA1:
                hasher = hashers[key] = BodyHasher(sig.body_canon, sig.length)
            self._candidates.append(_Candidate(field, sig, "", hasher, tags))
        self._hashers = tuple(hashers.values())

    @property
    def candidate_tags(self) -> list[dict[str, bytes] | None]:
        """Each signature looked at: its tag list, None where it did not parse."""
        return [c.tags for c in self._candidates]

    @property
    def signed(self) -> bool:
        return bool(self._candidates)

    def update(self, body: bytes) -> None:
        for hasher in self._hashers:
            hasher.update(body)

    async def finish(self, resolver: Resolver, now: float | None = None) -> list[DkimResult]:
        now = time.time() if now is None else now
        results = []
        for cand in self._candidates:
            results.append(await self._check(cand, resolver, now))
        return results

    async def _check(self, cand: _Candidate, resolver: Resolver, now: float) -> DkimResult:
        sig = cand.signature
        if sig is None:
            return DkimResult(DkimStatus.PERMERROR, "", "", cand.error)

        def result(status: DkimStatus, reason: str = "", testing: bool = False,
                   unsigned_body: int = 0) -> DkimResult:
            return DkimResult(status, sig.domain, sig.selector, reason, sig.identity,
                              str(sig.algorithm), testing, unsigned_body)

        if sig.algorithm is Algorithm.RSA_SHA1:
            return result(DkimStatus.FAIL, "rsa-sha1 is not accepted (RFC 8301)")
        if sig.expires is not None and sig.expires < now:
            return result(DkimStatus.FAIL, "signature expired (x=)")
        if sig.timestamp is not None and sig.timestamp > now + self.policy.clock_skew:
            return result(DkimStatus.PERMERROR, "signature timestamp (t=) in the future")
        record = await self._key(sig, resolver)
        if isinstance(record, DkimResult):
            return record
        if record.key_type != sig.algorithm.key_type:
            return result(DkimStatus.PERMERROR, "key type does not match a=")
        if record.hashes and sig.algorithm.hash_name not in record.hashes:
            return result(DkimStatus.PERMERROR, "key record h= excludes the hash")
        services = record.services
        if "*" not in services and "email" not in services:
            return result(DkimStatus.PERMERROR, "key record s= is not for email")
        if record.strict_identity and sig.identity.rpartition("@")[2] != sig.domain:
            return result(DkimStatus.PERMERROR, "key requires i= domain equal to d= (t=s)")
        testing = record.testing
        if record.key_type == "rsa" and record.bits < self.policy.min_rsa_bits:
            return result(DkimStatus.FAIL, f"RSA key of {record.bits} bits is too short",
                          testing=testing)
        hasher = cand.hasher
        assert hasher is not None  # every non-sha1 signature has one
        if hasher.digest() != sig.body_hash:
            return result(DkimStatus.FAIL, "body hash did not verify", testing=testing)
        unsigned = 0
        if sig.length is not None:
            if sig.length > hasher.length:
                return result(DkimStatus.FAIL, "l= is longer than the body", testing=testing)
            unsigned = hasher.length - sig.length
        data = self.signed_data(cand.field, sig)
        if not verify_data(record.key, sig.signature, data):
            return result(DkimStatus.FAIL, "signature did not verify", testing=testing,
                          unsigned_body=unsigned)
        if unsigned and not self.policy.accept_partial_body:
            return result(DkimStatus.POLICY, f"l= leaves {unsigned} body octets unsigned",
                          testing=testing, unsigned_body=unsigned)
        return result(DkimStatus.PASS, testing=testing, unsigned_body=unsigned)

    async def _key(self, sig: Signature, resolver: Resolver) -> KeyRecord | DkimResult:
        def error(status: DkimStatus, reason: str) -> DkimResult:
            return DkimResult(status, sig.domain, sig.selector, reason, sig.identity,
                              str(sig.algorithm))

        name = f"{sig.selector}._domainkey.{sig.domain}"
        try:
            texts = await resolver.txt(name)
        except DnsTemporaryError as exc:
            return error(DkimStatus.TEMPERROR, f"key lookup failed: {exc.reason}")
        except DnsNameError:
            return error(DkimStatus.PERMERROR, "selector or domain is not a DNS name")
        if not texts:
            return error(DkimStatus.PERMERROR, f"no key at {name}")
        reason = ""
        for text in texts[:MAX_KEY_RECORDS]:
            try:
                return parse_key_record(text)
            except KeyRecordError as exc:
                reason = str(exc)
        return error(DkimStatus.PERMERROR, reason)

    def signed_data(self, sig_field: HeaderField, sig: Signature) -> bytes:
        """The octets the signature covers: the h= fields, each the last not yet used
        instance of its name (5.4.2; a name with none left contributes nothing), then
        the signature field itself without its b= value and final CRLF (3.7)."""
        return signed_header_data(self.fields, sig.headers, sig.header_canon, sig_field.raw)


def signed_header_data(fields: Sequence[HeaderField], names: Iterable[bytes], canon: Canon,
                       signature_field: bytes, *, b_empty: bool = False) -> bytes:
    """The h= fields canonicalized, then the signature field without its b= value and
    final CRLF.  ``b_empty``: the field is a signer's, whose b= is still empty."""
    return picked_header_data(fields, header_picks([f.name for f in fields], names), canon,
                              signature_field, b_empty=b_empty)


def header_picks(field_names: Sequence[bytes], names: Iterable[bytes]) -> tuple[int, ...]:
    """For each h= name, the index of the last instance of that name not yet used
    (5.4.2); a name with none left contributes nothing."""
    by_name: dict[bytes, list[int]] = {}
    for i, name in enumerate(field_names):
        by_name.setdefault(name, []).append(i)
    picks = []
    for name in names:
        instances = by_name.get(name)
        if instances:
            picks.append(instances.pop())
    return tuple(picks)


def picked_header_data(fields: Sequence[HeaderField], picks: Iterable[int], canon: Canon,
                       signature_field: bytes, *, b_empty: bool = False) -> bytes:
    """:func:`signed_header_data` with the fields to hash already chosen
    (:func:`header_picks`)."""
    sig = signature_field if b_empty else without_b_value(signature_field)
    if canon is Canon.RELAXED:
        # One run over the picked fields and the signature field (its CRLF left out).
        picked = [fields[i] for i in picks]
        names = [f.name for f in picked]
        names.append(sig.split(b":", 1)[0].rstrip(b" \t").lower())
        raws = [f.raw for f in picked]
        raws.append(sig)
        return relaxed_fields(names, raws)[:-2]
    parts = [canon_header(fields[i].raw, canon) for i in picks]
    last = canon_header(sig, canon)
    parts.append(last[:-2] if last.endswith(CRLF) else last)
    return b"".join(parts)


async def verify_message(message: bytes, resolver: Resolver, *,
                         policy: VerifyPolicy = VerifyPolicy(),
                         now: float | None = None) -> list[DkimResult]:
    """Every signature's result for a whole message (CRLF line ends)."""
    end = message.find(b"\r\n\r\n")
    header, body = (message, b"") if end < 0 else (message[:end + 2], message[end + 4:])
    verification = Verification(header, policy)
    if verification.signed:
        verification.update(body)
    return await verification.finish(resolver, now)
