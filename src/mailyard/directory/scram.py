"""SCRAM-SHA-256 stored credentials (RFC 5802 3, RFC 7677) and SASLprep (RFC 4013).

The server keeps only StoredKey and ServerKey (plus salt and iteration count), computed
once when the password is set, so it can run SCRAM without knowing the password.

SASLprep is written out here because the standard library ships the stringprep tables
(RFC 3454) but not the SASLprep profile built from them, and the one-function profile
does not justify a new dependency.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stringprep
import unicodedata

from mailyard.directory.api import ScramCredentials

SCRAM_ITERATIONS = 4096  # RFC 7677 4: at least 4096 (the server stores [auth] scram_iterations)
SCRAM_SALT_BYTES = 16


class SaslprepError(ValueError):
    """The string contains characters SASLprep prohibits (RFC 4013 2.3, 2.4, 2.5)."""


_PROHIBITED = (
    stringprep.in_table_c12,  # non-ASCII space
    stringprep.in_table_c21_c22,  # control characters
    stringprep.in_table_c3,  # private use
    stringprep.in_table_c4,  # non-character code points
    stringprep.in_table_c5,  # surrogates
    stringprep.in_table_c6,  # inappropriate for plain text
    stringprep.in_table_c7,  # inappropriate for canonical representation
    stringprep.in_table_c8,  # change display properties / deprecated
    stringprep.in_table_c9,  # tagging characters
)


def saslprep(text: str, *, allow_unassigned: bool = False) -> str:
    """RFC 4013 SASLprep.  Stored strings (passwords being set) refuse unassigned code
    points; queries (what a client sends) may pass ``allow_unassigned=True``."""
    # 2.1 Mapping: non-ASCII spaces to SPACE, "commonly mapped to nothing" removed.
    mapped = "".join(
        " " if stringprep.in_table_c12(c) else c
        for c in text if not stringprep.in_table_b1(c))
    # 2.2 Normalization: NFKC.
    prepared = unicodedata.normalize("NFKC", mapped)
    for c in prepared:
        if any(table(c) for table in _PROHIBITED):
            raise SaslprepError(f"prohibited character U+{ord(c):04X}")
        if not allow_unassigned and stringprep.in_table_a1(c):
            raise SaslprepError(f"unassigned code point U+{ord(c):04X}")
    _check_bidi(prepared)
    return prepared


def _check_bidi(text: str) -> None:
    """RFC 3454 6: right-to-left text may not mix with left-to-right text and must
    start and end with a right-to-left character."""
    if not any(stringprep.in_table_d1(c) for c in text):
        return
    if any(stringprep.in_table_d2(c) for c in text):
        raise SaslprepError("mixes right-to-left and left-to-right characters")
    if not (stringprep.in_table_d1(text[0]) and stringprep.in_table_d1(text[-1])):
        raise SaslprepError("right-to-left text must start and end with a right-to-left character")


def salted_password(password: str, salt: bytes, iterations: int) -> bytes:
    """SaltedPassword := Hi(Normalize(password), salt, i) (RFC 5802 3); Hi is PBKDF2."""
    return hashlib.pbkdf2_hmac("sha256", saslprep(password).encode("utf-8"), salt, iterations)


def derive_credentials(password: str, salt: bytes, iterations: int) -> ScramCredentials:
    """StoredKey := H(HMAC(SaltedPassword, "Client Key")),
    ServerKey := HMAC(SaltedPassword, "Server Key") (RFC 5802 3).
    Raises SaslprepError when the password cannot be prepared."""
    if iterations < 1:
        raise ValueError("iterations must be positive")
    salted = salted_password(password, salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return ScramCredentials(salt=salt, iterations=iterations, stored_key=stored_key,
                            server_key=server_key)


def new_credentials(password: str, iterations: int = SCRAM_ITERATIONS) -> ScramCredentials:
    return derive_credentials(password, os.urandom(SCRAM_SALT_BYTES), iterations)
