"""The two signing algorithms over ``cryptography`` (OpenSSL): rsa-sha256 (RFC 6376
3.3.1, PKCS#1 v1.5) and ed25519-sha256 (RFC 8463 3: Ed25519 over the SHA-256 digest
of the data, so the signed message is the 32-byte hash)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

__all__ = ["PrivateKey", "sign_data", "signing_function", "verify_data"]

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
_PKCS1 = padding.PKCS1v15()


def sign_data(key: PrivateKey, data: bytes) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(hashlib.sha256(data).digest())
    return key.sign(data, _PKCS1, hashes.SHA256())


def signing_function(key: PrivateKey) -> Callable[[bytes], bytes]:
    """``sign_data`` with the key type decided once (a signer signs many messages)."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        ed = key
        return lambda data: ed.sign(hashlib.sha256(data).digest())
    sha256 = hashes.SHA256()
    return lambda data: key.sign(data, _PKCS1, sha256)


def verify_data(key: rsa.RSAPublicKey | ed25519.Ed25519PublicKey, signature: bytes,
                data: bytes) -> bool:
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, hashlib.sha256(data).digest())
        else:
            key.verify(signature, data, _PKCS1, hashes.SHA256())
    except InvalidSignature:
        return False
    return True
