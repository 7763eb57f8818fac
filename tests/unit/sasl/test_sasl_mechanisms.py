"""The SASL mechanisms on their own, with no SMTP around them (RFC 4422, RFC 4616,
RFC 5802, RFC 7677, RFC 4013)."""

from __future__ import annotations

import base64

import pytest

from mailyard.proto.errors import LocalProtocolError
from mailyard.sasl.mechanisms import LoginMechanism, PlainMechanism, new_mechanism
from mailyard.sasl.scram import (
    SaslprepError,
    ScramSha256Mechanism,
    derive_credentials,
    saslprep,
    scram_client_final,
)
from mailyard.sasl.steps import (
    Challenge,
    Credentials,
    Failure,
    FailureReason,
    NeedScramCredentials,
    Success,
)

MALFORMED = FailureReason.MALFORMED
REJECTED = FailureReason.REJECTED

# --- PLAIN (RFC 4616) ---------------------------------------------------------------


def test_plain_rfc4616_example() -> None:
    """RFC 4616 4: "\\0tim\\0tanstaaftanstaaf" authenticates tim."""
    assert PlainMechanism().start(b"\0tim\0tanstaaftanstaaf") == \
        Credentials("tim", "tanstaaftanstaaf")


def test_plain_acting_for_another_user_is_refused() -> None:
    """RFC 4616 4, "Ursel\\0Kurt\\0xipj3plmq": Kurt asks to act as Ursel; Mailyard
    allows no authorization identity other than the authentication identity."""
    assert PlainMechanism().start(b"Ursel\0Kurt\0xipj3plmq") == Failure(REJECTED, "Kurt")
    assert PlainMechanism().start(b"tim\0tim\0pw") == Credentials("tim", "pw")


def test_plain_without_initial_response_asks_with_an_empty_challenge() -> None:
    """RFC 4422 3.3: no initial response, so the server sends an empty challenge."""
    mech = PlainMechanism()
    assert mech.start(None) == Challenge(b"")
    assert mech.respond(b"\0u\0p") == Credentials("u", "p")


@pytest.mark.parametrize("data", [b"", b"\0user", b"a\0b\0c\0d", b"\0\0pw", b"\0us\xffer\0pw"])
def test_plain_malformed(data: bytes) -> None:
    """RFC 4616 2: three fields, a non-empty authcid, UTF-8 throughout."""
    step = PlainMechanism().start(data)
    assert isinstance(step, Failure) and step.reason is MALFORMED


# --- LOGIN ----------------------------------------------------------------------------


def test_login_asks_user_then_password() -> None:
    mech = LoginMechanism()
    assert mech.start(None) == Challenge(b"Username:")
    assert mech.respond(b"user") == Challenge(b"Password:")
    assert mech.respond(b"secret") == Credentials("user", "secret")


def test_login_initial_response_is_the_user_name() -> None:
    mech = LoginMechanism()
    assert mech.start(b"user") == Challenge(b"Password:")
    assert mech.respond(b"pw") == Credentials("user", "pw")


def test_login_malformed() -> None:
    assert LoginMechanism().start(b"\xff") == Failure(MALFORMED)


# --- SCRAM-SHA-256 (RFC 5802, RFC 7677) -------------------------------------------------

RFC7677_CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
RFC7677_SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
RFC7677_SERVER_FIRST = (b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                        b"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
RFC7677_CLIENT_FINAL = (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                        b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
RFC7677_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
PENCIL = derive_credentials("pencil", base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ=="), 4096)


def _at_client_final(credentials: object = PENCIL) -> ScramSha256Mechanism:
    mech = ScramSha256Mechanism(RFC7677_SERVER_NONCE)
    assert mech.start(RFC7677_CLIENT_FIRST) == NeedScramCredentials("user")
    assert mech.set_credentials(credentials) == Challenge(RFC7677_SERVER_FIRST)  # type: ignore[arg-type]
    return mech


def test_scram_rfc7677_example_exchange() -> None:
    """RFC 7677 3: the example exchange, message for message (user "user",
    password "pencil")."""
    mech = _at_client_final()
    assert mech.respond(RFC7677_CLIENT_FINAL) == Challenge(RFC7677_SERVER_FINAL)
    assert mech.respond(b"") == Success("user")


def test_scram_client_helper_reproduces_the_rfc7677_client() -> None:
    final, server_final = scram_client_final(
        "pencil", RFC7677_CLIENT_FIRST[3:].decode(), RFC7677_SERVER_FIRST.decode())
    assert final.encode() == RFC7677_CLIENT_FINAL
    assert server_final.encode() == RFC7677_SERVER_FINAL


def test_scram_wrong_password_is_rejected() -> None:
    wrong = derive_credentials("pencil2", PENCIL.salt, 4096)
    mech = _at_client_final(wrong)
    assert mech.respond(RFC7677_CLIENT_FINAL) == Failure(REJECTED, "user")


def test_scram_unknown_user_gets_a_stable_decoy_and_is_rejected() -> None:
    """RFC 5802 9: an unknown user sees a salt and count like a real account's,
    derived from the server key (so the same in every process), never a success."""
    def server_first(key: bytes, user: bytes = b"ghost") -> bytes:
        mech = ScramSha256Mechanism("N", decoy_key=key, decoy_iterations=8192)
        mech.start(b"n,,n=" + user + b",r=c")
        step = mech.set_credentials(None)
        assert isinstance(step, Challenge)
        return step.data

    assert server_first(b"k" * 32) == server_first(b"k" * 32)
    assert server_first(b"k" * 32) != server_first(b"j" * 32)
    assert server_first(b"k" * 32) != server_first(b"k" * 32, b"ghost2")
    assert server_first(b"k" * 32).endswith(b",i=8192")
    mech = ScramSha256Mechanism("N", decoy_key=b"k" * 32)
    mech.start(b"n,,n=ghost,r=c")
    step = mech.set_credentials(None)
    assert isinstance(step, Challenge)
    final, _ = scram_client_final("anything", "n=ghost,r=c", step.data.decode())
    assert mech.respond(final.encode()) == Failure(REJECTED, "ghost")


@pytest.mark.parametrize("client_first", [
    b"p=tls-unique,,n=user,r=abc",  # channel binding is not offered (no -PLUS)
    b"n,,r=abc,n=user",  # attributes out of order
    b"n,,n=user",  # no nonce
    b"n,,n=,r=abc",  # empty user name
    b"n,,n=us=2Xer,r=abc",  # RFC 5802 5.1: '=' only as =2C or =3D
    b"n,a=other,n=user,r=abc",  # authzid other than the user
    b"n=user,r=abc",  # no GS2 header
    b"n,,n=user,r=abc\xff",  # not UTF-8
])
def test_scram_malformed_client_first(client_first: bytes) -> None:
    step = ScramSha256Mechanism("N").start(client_first)
    assert isinstance(step, Failure) and step.reason is MALFORMED


def test_scram_saslname_escapes() -> None:
    """RFC 5802 5.1: =2C and =3D stand for ',' and '=' in the user name."""
    assert ScramSha256Mechanism("N").start(b"n,,n=a=2Cb=3Dc,r=x") == NeedScramCredentials("a,b=c")


@pytest.mark.parametrize("client_final, reason", [
    (b"c=biws,r=wrongnonce,p=AAAA", REJECTED),  # not the combined nonce
    (b"c=eSws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=AAAA", REJECTED),
    (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=!!", MALFORMED),
    (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=AAAA", REJECTED),
    (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0", MALFORMED),
    (b"garbage", MALFORMED),
])
def test_scram_bad_client_final(client_final: bytes, reason: FailureReason) -> None:
    assert _at_client_final().respond(client_final) == Failure(reason, "user")


def test_scram_anything_but_an_empty_response_after_server_final_fails() -> None:
    mech = _at_client_final()
    mech.respond(RFC7677_CLIENT_FINAL)
    assert mech.respond(b"again") == Failure(MALFORMED, "user")


def test_scram_credentials_out_of_order_is_the_callers_bug() -> None:
    with pytest.raises(LocalProtocolError):
        ScramSha256Mechanism("N").set_credentials(PENCIL)


# --- registry and SASLprep --------------------------------------------------------------


def test_new_mechanism_by_name() -> None:
    assert isinstance(new_mechanism("plain"), PlainMechanism)
    assert isinstance(new_mechanism("LOGIN"), LoginMechanism)
    assert isinstance(new_mechanism("Scram-Sha-256"), ScramSha256Mechanism)
    assert new_mechanism("CRAM-MD5") is None
    assert new_mechanism("SCRAM-SHA-256-PLUS") is None


@pytest.mark.parametrize("given, prepared", [
    ("I\u00adX", "IX"),  # RFC 4013 3, example 1: soft hyphen mapped to nothing
    ("user", "user"), ("USER", "USER"),
    ("\u00aa", "a"),  # NFKC
    ("\u2168", "IX"),  # NFKC
    ("a\u00a0b", "a b"),  # non-ASCII space mapped to SPACE
])
def test_saslprep_rfc4013_examples(given: str, prepared: str) -> None:
    assert saslprep(given) == prepared


@pytest.mark.parametrize("given", ["\u0007", "\u0627\u0031"])
def test_saslprep_rfc4013_errors(given: str) -> None:
    """RFC 4013 3: a control character, and mixed-direction text, are errors."""
    with pytest.raises(SaslprepError):
        saslprep(given)


def test_sasl_knows_nothing_of_smtp() -> None:
    """The package is protocol-neutral: it imports nothing of Mailyard but itself and
    the shared LocalProtocolError (not SMTP, not the directory)."""
    import ast
    from pathlib import Path

    import mailyard.sasl
    package = Path(mailyard.sasl.__file__).parent
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            for name in names:
                if name.startswith("mailyard"):
                    assert name.startswith("mailyard.sasl") or name == "mailyard.proto.errors", \
                        (path.name, name)
