"""SCRAM-SHA-256 stored credentials (RFC 5802 3, RFC 7677 3) and SASLprep (RFC 4013)."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from mailyard.directory.scram import SaslprepError, derive_credentials, new_credentials, saslprep

# RFC 7677 3: the example exchange for user "user", password "pencil".
RFC7677_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC7677_ITERATIONS = 4096
RFC7677_AUTH_MESSAGE = (
    b"n=user,r=rOprNGfwEbeRWgbNEkqO,"
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,"
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0")
RFC7677_CLIENT_PROOF = base64.b64decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
RFC7677_SERVER_SIGNATURE = base64.b64decode("6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")


def test_rfc7677_example_server_signature() -> None:
    """RFC 7677 3: ServerSignature := HMAC(ServerKey, AuthMessage) gives the v= value."""
    creds = derive_credentials("pencil", RFC7677_SALT, RFC7677_ITERATIONS)
    signature = hmac.new(creds.server_key, RFC7677_AUTH_MESSAGE, hashlib.sha256).digest()
    assert signature == RFC7677_SERVER_SIGNATURE


def test_rfc7677_example_client_proof_verifies_against_stored_key() -> None:
    """RFC 5802 3: the server recovers ClientKey = ClientProof XOR ClientSignature and
    checks H(ClientKey) == StoredKey."""
    creds = derive_credentials("pencil", RFC7677_SALT, RFC7677_ITERATIONS)
    client_signature = hmac.new(creds.stored_key, RFC7677_AUTH_MESSAGE, hashlib.sha256).digest()
    client_key = bytes(a ^ b for a, b in zip(RFC7677_CLIENT_PROOF, client_signature, strict=True))
    assert hashlib.sha256(client_key).digest() == creds.stored_key
    wrong = derive_credentials("pencil2", RFC7677_SALT, RFC7677_ITERATIONS)
    assert wrong.stored_key != creds.stored_key


def test_new_credentials_use_fresh_salt_and_minimum_iterations() -> None:
    """RFC 7677 4: iteration count at least 4096."""
    a, b = new_credentials("secret"), new_credentials("secret")
    assert a.iterations >= 4096
    assert len(a.salt) >= 16 and a.salt != b.salt
    assert a.stored_key != b.stored_key


@pytest.mark.parametrize(("given", "prepared"), [
    ("I\u00adX", "IX"),  # RFC 4013 3 #1: SOFT HYPHEN mapped to nothing
    ("user", "user"),  # #2: no transformation
    ("USER", "USER"),  # #3: case preserved
    ("\u00aa", "a"),  # #4: NFKC
    ("\u2168", "IX"),  # #5: NFKC
    ("a\u00a0b", "a b"),  # 2.1: non-ASCII space mapped to SPACE
])
def test_saslprep_rfc4013_examples(given: str, prepared: str) -> None:
    assert saslprep(given) == prepared


@pytest.mark.parametrize("bad", [
    "\u0007",  # RFC 4013 3 #6: prohibited control character
    "\u0627\u0031",  # #7: bidi, RandALCat string not ending with RandALCat
    "a\ue000",  # 2.3: private use
])
def test_saslprep_rfc4013_errors(bad: str) -> None:
    with pytest.raises(SaslprepError):
        saslprep(bad)


def test_saslprep_unassigned_only_allowed_for_queries() -> None:
    """RFC 4013 2.5 / RFC 3454 7: stored strings must not contain unassigned code points."""
    unassigned = "\u0221"  # unassigned in Unicode 3.2
    with pytest.raises(SaslprepError):
        saslprep(unassigned)
    assert saslprep(unassigned, allow_unassigned=True) == unassigned
