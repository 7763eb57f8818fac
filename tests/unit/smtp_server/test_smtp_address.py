"""RFC 5321 4.1.2 path grammar, ESMTP parameters and RFC 3461 xtext."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailyard.proto.smtp.address import (
    AddressError,
    Mailbox,
    ParameterError,
    format_path,
    needs_smtputf8,
    parse_forward_path,
    parse_params,
    parse_reverse_path,
    quote_local_part,
    xtext_decode,
    xtext_encode,
)
from mailyard.proto.smtp.replies import REPLY_BAD_ADDRESS, REPLY_BAD_SENDER_ADDRESS, REPLY_SYNTAX

# --- RFC 5321 4.1.2: Mailbox = Local-part "@" ( Domain / address-literal ) ---------

@pytest.mark.parametrize(
    "text, local, domain",
    [
        ("<user@example.org>", "user", "example.org"),
        ("<first.last+tag@sub.example.org>", "first.last+tag", "sub.example.org"),
        ("<!#$%&'*+-/=?^_`{|}~@example.org>", "!#$%&'*+-/=?^_`{|}~", "example.org"),
        ('<"john doe"@example.org>', "john doe", "example.org"),
        ('<"a\\"b\\\\c"@example.org>', 'a"b\\c', "example.org"),
        ('<"@"@example.org>', "@", "example.org"),
        ("<user@[192.0.2.1]>", "user", "[192.0.2.1]"),
        ("<user@[IPv6:2001:db8::1]>", "user", "[IPv6:2001:db8::1]"),
        ("<user@[x-tag:content]>", "user", "[x-tag:content]"),
        ("<user@a-b.c0.example>", "user", "a-b.c0.example"),
    ],
)
def test_forward_path_parses(text: str, local: str, domain: str) -> None:
    """RFC 5321 4.1.2 Dot-string, Quoted-string and address-literal (4.1.3)."""
    mailbox, rest = parse_forward_path(text)
    assert mailbox == Mailbox(local, domain)
    assert rest == ""


@pytest.mark.parametrize(
    "text",
    [
        "user@example.org",  # no angle brackets
        "<user@example.org",
        "<user>",
        "<@example.org>",
        "<user@>",
        "<.user@example.org>",
        "<user.@example.org>",
        "<us..er@example.org>",
        "<us er@example.org>",
        "<user@-example.org>",
        "<user@example-.org>",
        "<user@example..org>",
        "<user@example.org.>",
        "<user@[300.1.1.1]>",
        "<user@[IPv6:zz::1]>",
        "<user@[1.2.3.4>",
        '<"unterminated@example.org>',
        "<user@example.org>junk",
        "<user@" + "a" * 64 + ".org>",  # RFC 1035 2.3.4 label limit
        "<" + "u" * 250 + "@example.org>",  # RFC 5321 4.5.3.1.3 path limit
        "",
        "<>",  # null path is only a reverse-path
    ],
)
def test_forward_path_rejects(text: str) -> None:
    """RFC 5321 4.1.2: malformed paths get 501 5.1.3 on RCPT."""
    with pytest.raises(AddressError) as info:
        parse_forward_path(text)
    assert info.value.reply.code == 501
    assert info.value.reply.status == REPLY_BAD_ADDRESS.status


def test_reverse_path_errors_are_5_1_7() -> None:
    """RFC 3463 3.2: X.1.7 bad sender's mailbox address syntax."""
    with pytest.raises(AddressError) as info:
        parse_reverse_path("<bad@@example.org>")
    assert info.value.reply.status == REPLY_BAD_SENDER_ADDRESS.status


def test_null_reverse_path() -> None:
    """RFC 5321 4.5.5: MAIL FROM:<> is the null reverse-path."""
    assert parse_reverse_path("<>") == (None, "")
    assert parse_reverse_path("<> SIZE=10") == (None, "SIZE=10")
    with pytest.raises(AddressError):
        parse_reverse_path("<>x")


def test_source_route_is_dropped() -> None:
    """RFC 5321 4.1.1.3 / Appendix C: source routes are accepted and ignored."""
    mailbox, _ = parse_forward_path("<@relay1.example,@relay2.example:user@example.org>")
    assert mailbox == Mailbox("user", "example.org")


def test_postmaster_without_domain() -> None:
    """RFC 5321 4.1.1.3: RCPT TO:<Postmaster> must be accepted."""
    mailbox, rest = parse_forward_path("<Postmaster> NOTIFY=NEVER")
    assert mailbox == Mailbox("Postmaster", "")
    assert rest == "NOTIFY=NEVER"


def test_parameters_follow_path() -> None:
    """RFC 5321 4.1.2: Mail-parameters follow the path after SP."""
    mailbox, rest = parse_reverse_path(" <a@example.org>  SIZE=100 BODY=8BITMIME")
    assert mailbox == Mailbox("a", "example.org")
    assert parse_params(rest) == {"SIZE": "100", "BODY": "8BITMIME"}


def test_utf8_address_and_detection() -> None:
    """RFC 6531 3.3: UTF8-non-ascii in local part and domain."""
    mailbox, _ = parse_forward_path("<用户@例子.广告>")
    assert mailbox.needs_smtputf8
    assert needs_smtputf8(mailbox.address)
    assert not needs_smtputf8("user@example.org")
    assert not Mailbox("user", "example.org").needs_smtputf8


def test_quoting_round_trip() -> None:
    """RFC 5321 4.1.2: quote the local part only when it is not a Dot-string."""
    assert quote_local_part("plain.user") == "plain.user"
    assert quote_local_part("john doe") == '"john doe"'
    assert quote_local_part('a"b') == '"a\\"b"'
    assert Mailbox("john doe", "example.org").address == '"john doe"@example.org'
    mailbox, _ = parse_forward_path('<"plain"@example.org>')
    assert mailbox.address == "plain@example.org"
    assert format_path("") == "<>"
    assert format_path("a@b.example") == "<a@b.example>"


# --- ESMTP parameters (RFC 5321 4.1.2 esmtp-param) --------------------------------

def test_params_case_insensitive_keys_and_flags() -> None:
    assert parse_params("size=10 Smtputf8 ret=HDRS") == {
        "SIZE": "10", "SMTPUTF8": None, "RET": "HDRS"}


@pytest.mark.parametrize("text", ["=x", "SIZE=", "SIZE=1 SIZE=2", "-X=1", "K=a=b", "BAD_KEY=1"])
def test_params_reject(text: str) -> None:
    with pytest.raises(ParameterError) as info:
        parse_params(text)
    assert info.value.reply.code == REPLY_SYNTAX.code


# --- RFC 3461 4: xtext ---------------------------------------------------------------

def test_xtext_decode() -> None:
    assert xtext_decode("rfc822;user+40example.org") == "rfc822;user@example.org"
    assert xtext_decode("a+2Bb+3Dc") == "a+b=c"
    assert xtext_decode("") == ""


@pytest.mark.parametrize("text", ["a+2b", "a+", "a+G0", "a=b", "a b", "é"])
def test_xtext_decode_rejects(text: str) -> None:
    with pytest.raises(ParameterError):
        xtext_decode(text)


def test_xtext_encode() -> None:
    assert xtext_encode("a+b=c d") == "a+2Bb+3Dc+20d"
    assert xtext_encode("é") == "+C3+A9"


@given(st.text())
def test_xtext_round_trip(text: str) -> None:
    """RFC 3461 4: encoding then decoding gives the original text back."""
    encoded = xtext_encode(text)
    assert encoded.isascii() and "=" not in encoded
    assert xtext_decode(encoded) == text
