"""SASL mechanisms for SMTP AUTH, server side, sans-IO (RFC 4954, RFC 4422).

Each mechanism is a small state machine: the core feeds it the client's decoded
responses and gets back one :data:`Step`: a challenge to send (334), credentials for
policy to verify (PLAIN, LOGIN), a request for stored SCRAM credentials, success, or
failure with its reply.

PLAIN is RFC 4616, LOGIN the de-facto mechanism (draft-murchison-sasl-login), and
SCRAM-SHA-256 is RFC 5802 with RFC 7677's hash, written out here because the standard
library has no SCRAM and the mechanism is a few HMACs.  Channel binding
(SCRAM-SHA-256-PLUS) is not offered, so a client asking for it (``p=``) is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from mailyard.directory.api import ScramCredentials
from mailyard.directory.scram import derive_credentials as derive_scram_credentials
from mailyard.directory.scram import salted_password
from mailyard.proto.smtp.replies import REPLY_AUTH_FAILED, REPLY_SYNTAX, Reply

__all__ = [
    "Challenge",
    "Credentials",
    "Failure",
    "LoginMechanism",
    "MECHANISMS",
    "NeedScramCredentials",
    "PlainMechanism",
    "ScramSha256Mechanism",
    "Step",
    "Success",
    "derive_scram_credentials",
    "scram_client_final",
]


@dataclass(frozen=True, slots=True)
class Challenge:
    data: bytes


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str


@dataclass(frozen=True, slots=True)
class NeedScramCredentials:
    username: str


@dataclass(frozen=True, slots=True)
class Success:
    username: str


@dataclass(frozen=True, slots=True)
class Failure:
    reply: Reply
    username: str = ""


Step = Challenge | Credentials | NeedScramCredentials | Success | Failure

_BAD_ESCAPE = re.compile(r"=(?!2C|3D)")
_MALFORMED = REPLY_SYNTAX.with_text("Malformed authentication response")


def _text(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


class PlainMechanism:
    """RFC 4616: ``[authzid] NUL authcid NUL passwd``; an authzid other than the
    authcid (acting for another user) is refused."""

    name = "PLAIN"

    def start(self, initial: bytes | None) -> Step:
        return Challenge(b"") if initial is None else self.respond(initial)

    def respond(self, data: bytes) -> Step:
        parts = data.split(b"\x00")
        if len(parts) != 3:
            return Failure(_MALFORMED)
        authzid, authcid, passwd = (_text(p) for p in parts)
        if authzid is None or authcid is None or passwd is None or not authcid:
            return Failure(_MALFORMED)
        if authzid and authzid != authcid:
            return Failure(REPLY_AUTH_FAILED, authcid)
        return Credentials(authcid, passwd)

    def set_credentials(self, credentials: ScramCredentials | None) -> Step:
        raise TypeError("PLAIN has no stored-credential step")


class LoginMechanism:
    """LOGIN: ``Username:`` then ``Password:`` challenges; an initial response is
    the user name."""

    name = "LOGIN"

    def __init__(self) -> None:
        self._username: str | None = None

    def start(self, initial: bytes | None) -> Step:
        if initial is None:
            return Challenge(b"Username:")
        return self.respond(initial)

    def respond(self, data: bytes) -> Step:
        text = _text(data)
        if text is None:
            return Failure(_MALFORMED)
        if self._username is None:
            self._username = text
            return Challenge(b"Password:")
        return Credentials(self._username, text)

    def set_credentials(self, credentials: ScramCredentials | None) -> Step:
        raise TypeError("LOGIN has no stored-credential step")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


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
DECOY_ITERATIONS = 4096


def _decoy_credentials(key: bytes, username: str, iterations: int) -> ScramCredentials:
    """Stable, unguessable credentials for an unknown user, so the exchange looks the
    same whether or not the account exists (RFC 5802 9)."""
    seed = _hmac(key, username.encode("utf-8"))
    return ScramCredentials(salt=seed[:16], iterations=iterations,
                            stored_key=_hmac(seed, b"stored"), server_key=_hmac(seed, b"server"))


class ScramSha256Mechanism:
    """RFC 5802 / RFC 7677 server: client-first, server-first, client-final,
    server-final (sent as a 334 challenge; the client answers with an empty line)."""

    name = "SCRAM-SHA-256"

    def __init__(self, nonce: str | None = None, *, decoy_key: bytes = b"",
                 decoy_iterations: int = DECOY_ITERATIONS) -> None:
        """``decoy_key`` and ``decoy_iterations``: the salt and count shown for an
        unknown user are derived from the key and the user name; give the same key in
        every process, and the iteration count new passwords get."""
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
        text = _text(data)
        if text is None:
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
            raise RuntimeError("SCRAM credentials set out of order")
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
            return Failure(REPLY_AUTH_FAILED, self._username)
        try:
            proof = base64.b64decode(proof_attr, validate=True)
        except ValueError:
            return Failure(_MALFORMED, self._username)
        creds = self._credentials
        assert creds is not None
        auth_message = ",".join((self._client_first_bare, self._server_first, without_proof))
        signature = _hmac(creds.stored_key, auth_message.encode("utf-8"))
        if len(proof) != len(signature):
            return Failure(REPLY_AUTH_FAILED, self._username)
        client_key = bytes(a ^ b for a, b in zip(proof, signature))
        valid = hmac.compare_digest(hashlib.sha256(client_key).digest(), creds.stored_key)
        if not (valid and self._known):
            return Failure(REPLY_AUTH_FAILED, self._username)
        self._stage = "server-final"
        server_signature = _hmac(creds.server_key, auth_message.encode("utf-8"))
        return Challenge(f"v={_b64(server_signature)}".encode("ascii"))


def scram_client_final(password: str, client_first_bare: str, server_first: str,
                       gs2_header: str = "n,,") -> tuple[str, str]:
    """The client side of the proof: (client-final message, expected server-final).
    Used by tests and by the delivery client for SCRAM relays."""
    attrs = dict(_attributes(server_first) or [])
    salt = base64.b64decode(attrs["s"])
    salted = salted_password(password, salt, int(attrs["i"]))
    client_key = _hmac(salted, b"Client Key")
    without_proof = f"c={_b64(gs2_header.encode('utf-8'))},r={attrs['r']}"
    auth_message = ",".join((client_first_bare, server_first, without_proof)).encode("utf-8")
    signature = _hmac(hashlib.sha256(client_key).digest(), auth_message)
    proof = bytes(a ^ b for a, b in zip(client_key, signature))
    server_signature = _hmac(_hmac(salted, b"Server Key"), auth_message)
    return f"{without_proof},p={_b64(proof)}", f"v={_b64(server_signature)}"


MECHANISMS = {"PLAIN": PlainMechanism, "LOGIN": LoginMechanism,
              "SCRAM-SHA-256": ScramSha256Mechanism}
