"""TLS contexts, and the self-signed certificate made on first start when no
certificate is configured."""

from __future__ import annotations

import _ssl
import datetime
import functools
import hashlib
import hmac
import ipaddress
import os
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mailyard.dane.tlsa import DaneCheck, check_chain, usable_records

SELF_SIGNED_DAYS = 365
RENEW_BEFORE = datetime.timedelta(days=30)


def _self_signed_usable(cert_path: Path, hostname: str) -> bool:
    """A certificate made earlier is kept while it names ``hostname``, is no CA (older
    versions made one) and has more than :data:`RENEW_BEFORE` left."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    now = datetime.datetime.now(datetime.UTC)
    return (not ca and hostname in names.get_values_for_type(x509.DNSName)
            and cert.not_valid_after_utc - now > RENEW_BEFORE)


def ensure_certificate(directory: str | os.PathLike[str], hostname: str) -> tuple[str, str]:
    """Return (cert, key) paths under ``directory``/tls, creating a self-signed pair for
    ``hostname`` the first time, and again when the one there expires within
    :data:`RENEW_BEFORE` (checked at each start) or does not fit (see
    :func:`_self_signed_usable`).  The key file is written 0600.

    The certificate is an end-entity certificate for a TLS server, valid
    :data:`SELF_SIGNED_DAYS` days: not a CA (trusting it in a mail program trusts this
    one server, not every certificate its key could sign), key usage digitalSignature
    only (an ECDSA key signs; keyEncipherment does not apply to EC keys, RFC 5480
    section 3), extended key usage serverAuth."""
    tls_dir = Path(directory) / "tls"
    cert_path, key_path = tls_dir / "selfsigned.crt", tls_dir / "selfsigned.key"
    if key_path.is_file() and _self_signed_usable(cert_path, hostname):
        return str(cert_path), str(key_path)
    tls_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    alt: list[x509.GeneralName] = [x509.DNSName(hostname), x509.DNSName("localhost")]
    alt.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    usage = x509.KeyUsage(digital_signature=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False,
                          key_agreement=False, key_cert_sign=False, crl_sign=False,
                          encipher_only=False, decipher_only=False)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=SELF_SIGNED_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    tmp_key = key_path.with_suffix(".tmp")
    fd = os.open(tmp_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    os.replace(tmp_key, key_path)
    tmp_cert = cert_path.with_suffix(".tmp")
    fd = os.open(tmp_cert, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    os.replace(tmp_cert, cert_path)
    return str(cert_path), str(key_path)


# TLS 1.2 suites a listener offers: forward secret (ECDHE, DHE), AES or ChaCha20, no
# SHA-1 MACs; TLS 1.3 suites are all of that already.  Set explicitly because the
# default depends on how Python was built (Debian's takes OpenSSL's, which also offers
# static-RSA and SHA-1 suites); this is CPython's own default list since 3.10.
SERVER_CIPHERS = ("@SECLEVEL=2:ECDH+AESGCM:ECDH+CHACHA20:ECDH+AES:DHE+AES"
                  ":!aNULL:!eNULL:!aDSS:!SHA1:!AESCCM")


def server_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(SERVER_CIPHERS)
    ctx.load_cert_chain(cert, key)
    ctx.options |= ssl.OP_NO_COMPRESSION
    return ctx


def client_context(verify: bool = False, ca_file: str = "") -> ssl.SSLContext:
    """For outbound SMTP.  Opportunistic TLS does not verify (RFC 7435).  ``verify``
    checks the chain (against ``ca_file`` if given, else the system CA store) and the
    host name passed as ``server_hostname``."""
    if verify and ca_file:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    else:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


# --- outbound certificate checks (levels: mailyard.proto.smtp.client.TLS_LEVELS) -------
VERIFYING_LEVELS = ("verify", "secure")


def parse_fingerprint(text: str) -> str:
    """``sha256:AB:CD...`` or ``sha256:abcd...`` -> ``sha256:abcd...``; ValueError if it
    is not a SHA-256 digest."""
    algo, sep, digest = text.strip().partition(":")
    digest = digest.replace(":", "").lower()
    if not sep or algo.lower() != "sha256" or len(digest) != 64 or any(
            c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"expected 'sha256:' and 64 hex digits, got {text!r}")
    return "sha256:" + digest


def certificate_fingerprint(der: bytes) -> str:
    """The ``sha256:...`` fingerprint of a DER certificate (what ``tls_fingerprints`` pins)."""
    return "sha256:" + hashlib.sha256(der).hexdigest()


@dataclass(frozen=True)
class PeerCheck:
    """What the SMTP client checks of the server after STARTTLS, for one next hop.

    ``none``/``may``/``encrypt``: nothing (the session is encrypted, not authenticated).
    ``verify``/``secure``: the certificate chain against ``ca_file`` (or the system CA
    store) and the host name; or, when ``fingerprints`` are given, only that the leaf
    certificate is one of them (then the chain need not validate).  With ``tlsa``
    (DNSSEC-validated TLSA records, RFC 7672) the chain the server sent is checked
    against them instead (:func:`mailyard.dane.tlsa.check_chain`, with ``names`` as the
    reference identifiers for DANE-TA)."""

    level: str = "may"
    ca_file: str = ""
    fingerprints: tuple[str, ...] = ()
    tlsa: tuple[str, ...] = ()
    names: tuple[str, ...] = ()

    @property
    def verifies(self) -> bool:
        return self.level in VERIFYING_LEVELS or bool(self.tlsa)

    @property
    def pinned(self) -> bool:
        return self.verifies and bool(self.fingerprints) and not self.tlsa

    @property
    def dane(self) -> bool:
        return bool(self.tlsa)

    def context(self) -> ssl.SSLContext:
        chain = self.verifies and not self.fingerprints and not self.tlsa
        return _cached_client_context(chain, self.ca_file if chain else "")

    def dane_check(self, chain: list[bytes]) -> DaneCheck:
        return check_chain(usable_records(self.tlsa), chain, self.names)

    def fingerprint_matches(self, der: bytes | None) -> bool:
        if der is None:
            return False
        seen = certificate_fingerprint(der)
        return any(hmac.compare_digest(seen, parse_fingerprint(pin)) for pin in self.fingerprints)


def peer_chain(ssl_object: ssl.SSLObject | None) -> list[bytes]:
    """The certificates the server sent, leaf first, DER (not verified: DANE checks
    them itself).  Python 3.13 has this as a public method; 3.11 and 3.12 have it on
    the underlying ``_ssl`` object."""
    if ssl_object is None:
        return []
    if sys.version_info >= (3, 13):
        return list(ssl_object.get_unverified_chain())  # type: ignore[attr-defined,unused-ignore]
    chain = ssl_object._sslobj.get_unverified_chain()  # type: ignore[attr-defined]
    return [cert.public_bytes(_ssl.ENCODING_DER) for cert in chain or ()]


@functools.lru_cache(maxsize=32)
def _cached_client_context(verify: bool, ca_file: str) -> ssl.SSLContext:
    """Building a context (loading the CA store) is costly; one per kind per process."""
    return client_context(verify, ca_file)
