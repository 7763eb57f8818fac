"""SCRAM-SHA-256 (RFC 5802 with RFC 7677's hash), its stored credentials, and SASLprep
(RFC 4013).

The server keeps only StoredKey and ServerKey (plus salt and iteration count),
computed once when the password is set (:func:`new_credentials`), so it can run SCRAM
without knowing the password.  The mechanism is written out here because the standard
library has no SCRAM and it is a few HMACs; SASLprep because the standard library ships
the stringprep tables (RFC 3454) but not the profile built from them.

Channel binding (SCRAM-SHA-256-PLUS) is not offered, so a client asking for it
(``p=``) is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import stringprep
import unicodedata
from dataclasses import dataclass

from mailyard.proto.errors import LocalProtocolError
from mailyard.sasl.steps import (
    Challenge,
    Failure,
    FailureReason,
    NeedScramCredentials,
    Step,
    Success,
)

__all__ = [
    "DECOY_ITERATIONS", "SCRAM_ITERATIONS", "SCRAM_SALT_BYTES", "SaslprepError",
    "ScramCredentials", "ScramSha256Mechanism", "derive_credentials", "new_credentials",
    "salted_password", "saslprep", "scram_client_final",
]

SCRAM_ITERATIONS = 4096  # RFC 7677 4: at least 4096 (the server stores [auth] scram_iterations)
SCRAM_SALT_BYTES = 16
DECOY_ITERATIONS = SCRAM_ITERATIONS


@dataclass(frozen=True)
class ScramCredentials:
    """RFC 5802 3 / RFC 7677 stored credentials for SCRAM-SHA-256."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes


# --- SASLprep (RFC 4013) -------------------------------------------------------------

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


# --- stored credentials (RFC 5802 3) ---------------------------------------------------

def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


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
    client_key = _hmac(salted, b"Client Key")
    return ScramCredentials(salt=salt, iterations=iterations,
                            stored_key=hashlib.sha256(client_key).digest(),
                            server_key=_hmac(salted, b"Server Key"))


def new_credentials(password: str, iterations: int = SCRAM_ITERATIONS) -> ScramCredentials:
    return derive_credentials(password, os.urandom(SCRAM_SALT_BYTES), iterations)


# --- the exchange (RFC 5802 5, 7) -------------------------------------------------------

_BAD_ESCAPE = re.compile(r"=(?!2C|3D)")


def _saslname(value: str) -> str | None:
    """RFC 5802 5.1: ``=2C`` is ',' and ``=3D`` is '='; any other '=' is an error."""
    if _BAD_ESCAPE.search(value):
        return None
    return value.replace("=2C", ",").replace("=3D", "=")


def _attributes(message: str) -> list[tuple[str, str]] | None:
    pairs = []
    for part in message.split(","):
        if len(part) < 2 or part[1] != "=":
            return None
        pairs.append((part[0], part[2:]))
    return pairs


# Used only when no decoy key is given (library use, tests): the server passes one
# derived from its persistent secret, the same in every process and across restarts.
_PROCESS_DECOY_KEY = secrets.token_bytes(32)


def _decoy_credentials(key: bytes, username: str, iterations: int) -> ScramCredentials:
    """Stable, unguessable credentials for an unknown user, so the exchange looks the
    same whether or not the account exists (RFC 5802 9)."""
    seed = _hmac(key, username.encode("utf-8"))
    return ScramCredentials(salt=seed[:16], iterations=iterations,
                            stored_key=_hmac(seed, b"stored"), server_key=_hmac(seed, b"server"))


_MALFORMED = FailureReason.MALFORMED
_REJECTED = FailureReason.REJECTED


class ScramSha256Mechanism:
    """RFC 5802 / RFC 7677 server: client-first, server-first, client-final,
    server-final.  The server-final message goes out as a last challenge; the client
    answers it with an empty response (RFC 4422 3, protocols without
    additional-data-with-success, such as SMTP AUTH)."""

    name = "SCRAM-SHA-256"

    def __init__(self, nonce: str | None = None, *, decoy_key: bytes = b"",
                 decoy_iterations: int = DECOY_ITERATIONS) -> None:
        """``decoy_key`` and ``decoy_iterations``: the salt and count shown for an
        unknown user are derived from the key and the user name; give the same key in
        every process (a server secret), and the iteration count new passwords get."""
        self._decoy_key = decoy_key or _PROCESS_DECOY_KEY
        self._decoy_iterations = decoy_iterations
        self._server_nonce = nonce or secrets.token_urlsafe(18)
        self._stage = "client-first"
        self._gs2_header = ""
        self._client_first_bare = ""
        self._server_first = ""
        self._nonce = ""
        self._username = ""
        self._credentials: ScramCredentials | None = None
        self._known = False

    def start(self, initial: bytes | None) -> Step:
        return Challenge(b"") if initial is None else self.respond(initial)

    def respond(self, data: bytes) -> Step:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return Failure(_MALFORMED, self._username)
        if self._stage == "client-first":
            return self._client_first(text)
        if self._stage == "client-final":
            return self._client_final(text)
        if self._stage == "server-final" and text == "":
            return Success(self._username)
        return Failure(_MALFORMED, self._username)

    def _client_first(self, text: str) -> Step:
        cbind, comma1, rest = text.partition(",")
        authzid, comma2, bare = rest.partition(",")
        if not (comma1 and comma2) or cbind not in ("n", "y"):
            return Failure(_MALFORMED)  # "p=...": channel binding is not offered
        attrs = _attributes(bare)
        if attrs is None or len(attrs) < 2 or attrs[0][0] != "n" or attrs[1][0] != "r":
            return Failure(_MALFORMED)
        username = _saslname(attrs[0][1])
        if not username or not attrs[1][1] or (authzid and authzid != f"a={attrs[0][1]}"):
            return Failure(_MALFORMED)
        self._gs2_header = f"{cbind},{authzid},"
        self._client_first_bare = bare
        self._nonce = attrs[1][1] + self._server_nonce
        self._username = username
        self._stage = "lookup"
        return NeedScramCredentials(username)

    def set_credentials(self, credentials: ScramCredentials | None) -> Step:
        """Continue with the stored credentials, or ``None`` for an unknown user."""
        if self._stage != "lookup":
            raise LocalProtocolError("SCRAM credentials set out of order")
        self._known = credentials is not None
        self._credentials = credentials or _decoy_credentials(
            self._decoy_key, self._username, self._decoy_iterations)
        creds = self._credentials
        self._server_first = f"r={self._nonce},s={_b64(creds.salt)},i={creds.iterations}"
        self._stage = "client-final"
        return Challenge(self._server_first.encode("ascii"))

    def _client_final(self, text: str) -> Step:
        without_proof, sep, proof_attr = text.rpartition(",p=")
        attrs = _attributes(without_proof) if sep else None
        if attrs is None or len(attrs) < 2 or attrs[0][0] != "c" or attrs[1][0] != "r":
            return Failure(_MALFORMED, self._username)
        expected_cbind = _b64(self._gs2_header.encode("utf-8"))
        if attrs[0][1] != expected_cbind or attrs[1][1] != self._nonce:
            return Failure(_REJECTED, self._username)
        try:
            proof = base64.b64decode(proof_attr, validate=True)
        except ValueError:
            return Failure(_MALFORMED, self._username)
        creds = self._credentials
        assert creds is not None
        auth_message = ",".join((self._client_first_bare, self._server_first, without_proof))
        signature = _hmac(creds.stored_key, auth_message.encode("utf-8"))
        if len(proof) != len(signature):
            return Failure(_REJECTED, self._username)
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        valid = hmac.compare_digest(hashlib.sha256(client_key).digest(), creds.stored_key)
        if not (valid and self._known):
            return Failure(_REJECTED, self._username)
        self._stage = "server-final"
        server_signature = _hmac(creds.server_key, auth_message.encode("utf-8"))
        return Challenge(f"v={_b64(server_signature)}".encode("ascii"))


def scram_client_final(password: str, client_first_bare: str, server_first: str,
                       gs2_header: str = "n,,") -> tuple[str, str]:
    """The client side of the proof: (client-final message, expected server-final).
    Only tests use it (the server side is what Mailyard runs; the delivery client
    authenticates to smarthosts with PLAIN or LOGIN)."""
    attrs = dict(_attributes(server_first) or [])
    salt = base64.b64decode(attrs["s"])
    salted = salted_password(password, salt, int(attrs["i"]))
    client_key = _hmac(salted, b"Client Key")
    without_proof = f"c={_b64(gs2_header.encode('utf-8'))},r={attrs['r']}"
    auth_message = ",".join((client_first_bare, server_first, without_proof)).encode("utf-8")
    signature = _hmac(hashlib.sha256(client_key).digest(), auth_message)
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    server_signature = _hmac(_hmac(salted, b"Server Key"), auth_message)
    return f"{without_proof},p={_b64(proof)}", f"v={_b64(server_signature)}"
