"""Test certificate authorities and server certificates, made with ``cryptography``.

:func:`make_ca` writes a CA certificate (a private CA, as ``tls_ca_file`` would name);
:meth:`TestCa.issue` writes a server certificate and key signed by it for the given DNS
names and IP addresses; :func:`self_signed` writes a lone self-signed one (the kind a
man-in-the-middle would present).  Every function returns file paths, and
:func:`fingerprint` gives the ``sha256:...`` pin of a certificate file.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _san(names: tuple[str, ...]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _validity(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return builder.not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(
        now + datetime.timedelta(days=30))


@dataclass
class TestCa:
    __test__ = False  # not a pytest test class
    cert_file: Path
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    def issue(self, directory: Path, *names: str) -> tuple[str, str]:
        """A server certificate for ``names`` (the first is the CN); (cert, key) paths."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _validity(x509.CertificateBuilder()
                         .subject_name(_name(names[0]))
                         .issuer_name(self.cert.subject)
                         .public_key(key.public_key())
                         .serial_number(x509.random_serial_number())) \
            .add_extension(_san(names), critical=False) \
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True) \
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False) \
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.key.public_key()), critical=False) \
            .sign(self.key, hashes.SHA256())
        stem = names[0].replace("*", "star")
        cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key, key_path)
        return str(cert_path), str(key_path)


def make_ca(directory: Path, common_name: str = "Mailyard Test CA") -> TestCa:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _validity(x509.CertificateBuilder()
                     .subject_name(_name(common_name))
                     .issuer_name(_name(common_name))
                     .public_key(key.public_key())
                     .serial_number(x509.random_serial_number())) \
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True) \
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True) \
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False) \
        .sign(key, hashes.SHA256())
    path = directory / f"{common_name.replace(' ', '-')}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return TestCa(path, key, cert)


def self_signed(directory: Path, *names: str) -> tuple[str, str]:
    """A self-signed server certificate for ``names`` (as a man-in-the-middle would
    present); (cert, key) paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _validity(x509.CertificateBuilder()
                     .subject_name(_name(names[0]))
                     .issuer_name(_name(names[0]))
                     .public_key(key.public_key())
                     .serial_number(x509.random_serial_number())) \
        .add_extension(_san(names), critical=False) \
        .sign(key, hashes.SHA256())
    cert_path, key_path = directory / f"self-{names[0]}.crt", directory / f"self-{names[0]}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, key_path)
    return str(cert_path), str(key_path)


def fingerprint(cert_file: str) -> str:
    der = ssl.PEM_cert_to_DER_cert(Path(cert_file).read_text())
    return "sha256:" + hashlib.sha256(der).hexdigest()


def unverified_tls() -> ssl.SSLContext:
    """A client context that accepts any certificate: for tests whose server presents a
    self-signed one and whose subject is not certificate checking."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx
