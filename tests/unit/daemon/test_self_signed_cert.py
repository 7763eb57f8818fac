"""The self-signed certificate made when none is configured: an end-entity
certificate for a TLS server, not a CA (trusting it trusts only this server)."""

from __future__ import annotations

import datetime
import ipaddress
import os
import stat
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mailyard.tls import ensure_certificate, server_context


def load(path: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(Path(path).read_bytes())


def test_extensions_of_a_server_certificate(tmp_path: Path):
    cert_path, key_path = ensure_certificate(tmp_path, "mx.example.test")
    cert = load(cert_path)
    ext = cert.extensions
    basic = ext.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca is False
    usage = ext.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature
    assert not usage.value.key_cert_sign and not usage.value.crl_sign
    # An ECDSA key signs; keyEncipherment does not apply to it (RFC 5480 section 3).
    assert not usage.value.key_encipherment
    assert list(ext.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH]
    san = ext.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "mx.example.test" in san.get_values_for_type(x509.DNSName)
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime <= datetime.timedelta(days=366)
    for path in (cert_path, key_path):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    server_context(cert_path, key_path)  # loads


def test_kept_while_valid(tmp_path: Path):
    first = load(ensure_certificate(tmp_path, "mx.example.test")[0])
    again = load(ensure_certificate(tmp_path, "mx.example.test")[0])
    assert again.serial_number == first.serial_number


def _write_old_style(tmp_path: Path, days: int, ca: bool) -> int:
    """A certificate as older versions made them (a CA), or one about to expire."""
    cert_path, _ = ensure_certificate(tmp_path, "mx.example.test")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mx.example.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("mx.example.test")]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    from cryptography.hazmat.primitives.serialization import Encoding

    Path(cert_path).write_bytes(cert.public_bytes(Encoding.PEM))
    return cert.serial_number


def test_an_old_ca_certificate_is_replaced(tmp_path: Path):
    old = _write_old_style(tmp_path, days=3650, ca=True)
    new = load(ensure_certificate(tmp_path, "mx.example.test")[0])
    assert new.serial_number != old
    assert new.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


def test_renewed_when_it_expires_soon_or_names_another_host(tmp_path: Path):
    old = _write_old_style(tmp_path, days=10, ca=False)
    renewed = load(ensure_certificate(tmp_path, "mx.example.test")[0])
    assert renewed.serial_number != old
    other = load(ensure_certificate(tmp_path, "mail.example.org")[0])
    assert "mail.example.org" in other.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)


def test_listeners_offer_only_forward_secret_suites_whatever_python_was_built_with(
        tmp_path: Path):
    # Debian's Python takes OpenSSL's default list (static RSA, SHA-1 MACs); the
    # listener context must not depend on that.
    cert_path, key_path = ensure_certificate(tmp_path, "mx.example.test")
    names = [c["name"] for c in server_context(cert_path, key_path).get_ciphers()]
    tls12 = [n for n in names if not n.startswith("TLS_")]
    assert tls12 and all(n.startswith(("ECDHE-", "DHE-")) for n in tls12), tls12
    assert not [n for n in tls12 if n.endswith("-SHA") or "CBC3" in n or "RC4" in n]
