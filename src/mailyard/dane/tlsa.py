"""DANE for SMTP (RFC 7672): which TLSA records count, and whether a server's
certificate chain matches them.  Pure functions over DER bytes and record text.

* Only DANE-TA(2) and DANE-EE(3) records are usable (RFC 7672 3.1.3: PKIX-TA(0) and
  PKIX-EE(1) are not used for SMTP); selectors Cert(0) and SPKI(1), matching types
  Full(0), SHA2-256(1), SHA2-512(2); anything else is ignored (RFC 6698 4.1).
* DANE-EE(3): the leaf certificate (or its public key) matches; its names and
  validity dates are not looked at (RFC 7672 3.1.1).
* DANE-TA(2): a certificate of the chain the server sent (not the leaf) matches, the
  chain from the leaf up to it verifies signature by signature, the leaf is within its
  validity dates, and the leaf names the MX host (RFC 7672 3.2.2: the TLSA base domain
  and the MX host name as given, plus the next-hop domain when asked).
"""

from __future__ import annotations

import datetime
import enum
import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

__all__ = ["DaneCheck", "Tlsa", "Usage", "check_chain", "name_matches", "parse_tlsa",
           "usable_records"]


class Usage(enum.IntEnum):
    PKIX_TA = 0
    PKIX_EE = 1
    DANE_TA = 2
    DANE_EE = 3


@dataclass(frozen=True)
class Tlsa:
    usage: int
    selector: int  # 0: whole certificate, 1: SubjectPublicKeyInfo
    mtype: int  # 0: exact, 1: SHA-256, 2: SHA-512
    data: bytes


@dataclass(frozen=True)
class DaneCheck:
    """The verdict on one chain; ``failure`` is the TLS-RPT result type when not ok."""

    ok: bool
    reason: str
    failure: str = ""


def parse_tlsa(text: str) -> Tlsa | None:
    """``"3 1 1 ab12..."`` (the resolver's form) -> Tlsa; None if malformed."""
    parts = text.split()
    if len(parts) < 4 or not all(p.isdigit() for p in parts[:3]):
        return None
    try:
        data = bytes.fromhex("".join(parts[3:]))
    except ValueError:
        return None
    return Tlsa(int(parts[0]), int(parts[1]), int(parts[2]), data)


_DIGEST_SIZES = {0: None, 1: 32, 2: 64}


def usable_records(texts: Iterable[str]) -> tuple[Tlsa, ...]:
    """RFC 7672 3.1.3 / RFC 6698 4.1: DANE-TA and DANE-EE records with known selector
    and matching type (and a digest of the right length); the rest is ignored."""
    out = []
    for text in texts:
        record = parse_tlsa(text)
        if record is None or record.usage not in (Usage.DANE_TA, Usage.DANE_EE):
            continue
        if record.selector not in (0, 1) or record.mtype not in _DIGEST_SIZES:
            continue
        size = _DIGEST_SIZES[record.mtype]
        if (size is not None and len(record.data) != size) or not record.data:
            continue
        out.append(record)
    return tuple(out)


def _selected(cert: x509.Certificate, der: bytes, selector: int) -> bytes:
    if selector == 0:
        return der
    return cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)


def _matches(record: Tlsa, cert: x509.Certificate, der: bytes) -> bool:
    data = _selected(cert, der, record.selector)
    if record.mtype == 1:
        data = hashlib.sha256(data).digest()
    elif record.mtype == 2:
        data = hashlib.sha512(data).digest()
    return hmac.compare_digest(data, record.data)


def name_matches(names: Iterable[str], reference: str) -> bool:
    """A certificate DNS name matches ``reference``: equal, or ``*.`` standing for the
    whole leftmost label (RFC 6125 6.4.3, the form RFC 7672 3.2.3 allows)."""
    reference = reference.lower().rstrip(".")
    for name in names:
        name = name.lower().rstrip(".")
        if name == reference:
            return True
        if name.startswith("*.") and "." in reference:
            first, _, rest = reference.partition(".")
            if first and rest == name[2:]:
                return True
    return False


def _dns_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = san.get_values_for_type(x509.DNSName)
        if names:
            return names
    except x509.ExtensionNotFound:
        pass
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(
        x509.oid.NameOID.COMMON_NAME)]


def check_chain(records: Sequence[Tlsa], chain: Sequence[bytes], names: Sequence[str],
                now: datetime.datetime | None = None) -> DaneCheck:
    """Does the server's ``chain`` (DER, leaf first, as sent) satisfy one of the usable
    ``records``?  ``names``: the reference identifiers for DANE-TA name checks."""
    if not records:
        return DaneCheck(False, "no usable TLSA records", "tlsa-invalid")
    if not chain:
        return DaneCheck(False, "the server sent no certificate", "validation-failure")
    try:
        certs = [x509.load_der_x509_certificate(der) for der in chain]
    except ValueError as exc:
        return DaneCheck(False, f"unreadable certificate: {exc}", "validation-failure")
    for record in records:
        if record.usage == Usage.DANE_EE and _matches(record, certs[0], chain[0]):
            return DaneCheck(True, "DANE-EE TLSA record matches the server certificate")
    anchored = _trust_anchor(records, certs, chain)
    if anchored is None:
        return DaneCheck(False, "no TLSA record matches the server certificate chain",
                         "validation-failure")
    for i in range(anchored):
        try:
            certs[i].verify_directly_issued_by(certs[i + 1])
        except (ValueError, TypeError, InvalidSignature):
            return DaneCheck(False, f"certificate {i} of the chain is not issued by the "
                             "next one", "validation-failure")
    now = now or datetime.datetime.now(datetime.UTC)
    leaf = certs[0]
    if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        return DaneCheck(False, "the server certificate is expired or not yet valid",
                         "certificate-expired")
    seen = _dns_names(leaf)
    if not any(name_matches(seen, name) for name in names):
        return DaneCheck(False, f"the server certificate names {', '.join(seen[:5])}, not "
                         f"{' or '.join(names)}", "certificate-host-mismatch")
    return DaneCheck(True, "DANE-TA TLSA record matches a trust anchor of the chain")


def _trust_anchor(records: Sequence[Tlsa], certs: list[x509.Certificate],
                  chain: Sequence[bytes]) -> int | None:
    """The index (1 and up) of the first chain certificate a DANE-TA record matches."""
    for i in range(1, len(certs)):
        if any(r.usage == Usage.DANE_TA and _matches(r, certs[i], chain[i]) for r in records):
            return i
    return None
