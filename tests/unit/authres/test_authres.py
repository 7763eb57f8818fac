"""Authentication-Results (RFC 8601): parsing the appendix B examples, the grammar of
2.2 (comments, quoted strings, versions), building our field, and removing fields that
claim our authserv-id (section 5)."""

from __future__ import annotations

import pytest

from mailyard.authres import (
    AuthResults,
    MethodResult,
    ParseError,
    ResultProperty,
    arc_result,
    authserv_id_of,
    claims_authserv_id,
    dkim_results,
    dmarc_result,
    format_field,
    format_value,
    parse_value,
    spf_result,
    strip_claimed,
)


def parsed(value: str) -> AuthResults:
    result = parse_value(value)
    assert isinstance(result, AuthResults), result
    return result


def test_appendix_b_2_no_authentication_done_with_version():
    assert parsed(" example.org 1; none") == AuthResults("example.org", (), "1")


def test_appendix_b_3_spf():
    ar = parsed(" example.com;\r\n          spf=pass smtp.mailfrom=example.net")
    assert ar.authserv_id == "example.com" and ar.version == ""
    assert ar.results == (MethodResult(
        "spf", "pass", (ResultProperty("smtp", "mailfrom", "example.net"),)),)


def test_appendix_b_4_several_authentications_single_mta():
    ar = parsed(" example.com;\r\n    auth=pass (cram-md5) smtp.auth=sender@example.net;\r\n"
                "    spf=pass smtp.mailfrom=example.net")
    auth, spf = ar.results
    assert (auth.method, auth.result, auth.comment) == ("auth", "pass", "cram-md5")
    assert auth.prop("smtp", "auth") == "sender@example.net"
    assert spf.prop("SMTP", "MailFrom") == "example.net"
    iprev = parsed(" example.com; iprev=pass\r\n    policy.iprev=192.0.2.200").results[0]
    assert iprev.prop("policy", "iprev") == "192.0.2.200"


def test_appendix_b_5_several_authentications_different_mtas():
    ar = parsed(" example.com;\r\n    dkim=pass (good signature) header.d=example.com")
    assert ar.results[0].comment == "good signature"
    assert ar.results[0].prop("header", "d") == "example.com"
    ar = parsed(" example.com;\r\n    auth=pass (cram-md5) smtp.auth=sender@example.com;\r\n"
                "    spf=fail smtp.mailfrom=example.com")
    assert [r.result for r in ar.results] == ["pass", "fail"]


def test_appendix_b_6_multi_tiered_with_reasons_and_local_part_less_identities():
    ar = parsed(' example.com;\r\n    dkim=pass reason="good signature"\r\n'
                '      header.i=@mail-router.example.net;\r\n'
                '    dkim=fail reason="bad signature"\r\n'
                '      header.i=@newyork.example.com')
    first, second = ar.results
    assert first.reason == "good signature"
    assert first.prop("header", "i") == "@mail-router.example.net"
    assert (second.result, second.reason) == ("fail", "bad signature")
    assert second.prop("header", "i") == "@newyork.example.com"


def test_appendix_b_7_comment_heavy_example():
    ar = parsed(" foo.example.net (foobar) 1 (baz);\r\n"
                "    dkim (Because I like it) / 1 (One yay) = (wait for it) fail\r\n"
                "      policy (A dot can go here) . (like that) expired\r\n"
                "      (this surprised me) = (as I wasn't expecting it) 1362471462")
    assert (ar.authserv_id, ar.version) == ("foo.example.net", "1")
    (dkim,) = ar.results
    assert (dkim.method, dkim.version, dkim.result) == ("dkim", "1", "fail")
    assert dkim.properties == (ResultProperty("policy", "expired", "1362471462"),)


def test_2_2_quoted_strings_with_escapes_and_nested_comments():
    ar = parsed(' "mx (1).example.net"; spf=pass (nested (deeper \\) still) comment) '
                'smtp.mailfrom="odd \\"user\\""@example.net')
    assert ar.authserv_id == "mx (1).example.net"
    assert ar.results[0].comment == "nested (deeper \\) still) comment"
    assert ar.results[0].prop("smtp", "mailfrom") == 'odd "user"@example.net'


def test_2_2_trailing_semicolon_is_tolerated():
    assert len(parsed(" example.com; spf=pass smtp.mailfrom=example.net;").results) == 1


@pytest.mark.parametrize("value", [
    "", " ", ";", " example.com", " example.com;", " example.com; spf", " example.com; spf=",
    " example.com; spf=pass smtp", " example.com; spf=pass smtp.mailfrom",
    " example.com; spf=pass (unterminated", ' "unterminated; spf=pass',
    " example.com; dkim/x=pass", " example.com; spf=pass smtp.mailfrom=",
    " example.com; " + "(" * 100 + ")" * 100 + " spf=pass",
])
def test_2_2_malformed_fields_are_a_value_not_an_exception(value):
    assert isinstance(parse_value(value), ParseError)


def test_huge_hostile_field_is_read_in_linear_time():
    value = " example.com; " + "; ".join(f"x{i}=pass a.b=c" for i in range(20000))
    assert len(parsed(value).results) == 20000


# --- building our field ---


def test_build_none_form_2_2():
    assert format_value(AuthResults("mx.example.org")) == " mx.example.org; none"


def test_build_every_method_one_result_per_line():
    sigs = dkim_results([("pass", "example.com", "sel1", "oINEO8hgAAAA/+=="),
                         ("fail", "example.net", "sel2", "")])
    ar = AuthResults("mx.example.org", (
        spf_result("pass", mail_from="sender@example.com", helo="mail.example.com"),
        *sigs,
        dmarc_result("pass", "example.com", policy="reject", disposition="none"),
        arc_result("pass", oldest_pass=1, remote_ip="192.0.2.7"),
    ))
    assert format_field(ar) == (
        b"Authentication-Results: mx.example.org;\r\n"
        b"\tspf=pass smtp.mailfrom=sender@example.com smtp.helo=mail.example.com;\r\n"
        b"\tdkim=pass header.d=example.com header.s=sel1 header.b=oINEO8hg;\r\n"
        b"\tdkim=fail header.d=example.net header.s=sel2;\r\n"
        b"\tdmarc=pass (p=reject dis=none) header.from=example.com;\r\n"
        b"\tarc=pass header.oldest-pass=1 smtp.remote-ip=192.0.2.7\r\n")
    # What we write, we read back the same (2.2).
    assert parsed(format_value(ar)) == ar


def test_rfc6008_header_b_is_the_shortest_unique_prefix_of_at_least_8():
    sigs = dkim_results([("pass", "a.example", "s", "abcdefgh12345"),
                         ("pass", "b.example", "s", "abcdefgh1299"),
                         ("pass", "c.example", "s", "zz/ab+c d")])
    assert [s.prop("header", "b") for s in sigs] == ["abcdefgh123", "abcdefgh129", "zz/ab+cd"]
    # "/" is a tspecial: the value is quoted so the field stays parseable.
    assert 'header.b="zz/ab+cd"' in format_value(AuthResults("mx", tuple(sigs)))


def test_build_quotes_or_cleans_what_would_break_the_field():
    hostile = spf_result("pass;x", mail_from='evil"; dkim=pass\r\n', comment="a) (b")
    value = format_value(AuthResults("mx.example.org", (hostile,)))
    assert "\r\n" not in value.split(";", 1)[1].lstrip("\r\n\t")
    (result,) = parsed(value).results
    assert result.result == "passx" and result.prop("smtp", "mailfrom") == 'evil"; dkim=pass'


# --- section 5: removing fields that claim our authserv-id ---


@pytest.mark.parametrize("value, ours", [
    (" mx.example.org; spf=pass smtp.mailfrom=x", True),
    (" MX.Example.ORG.; none", True),
    (" (forged) mx.example.org 1; dkim=pass", True),
    (' "mx.example.org"; dmarc=pass', True),
    (" mx.example.org; this is not valid at all ((", True),  # still claims our id
    (" mx.example.org.evil; spf=pass", False),
    (" example.org; spf=pass", False),
    (" ; none", False),
])
def test_5_fields_claiming_our_authserv_id(value, ours):
    assert claims_authserv_id(value, ["mx.example.org"]) is ours


def test_authserv_id_of_unreadable_field_is_none():
    assert authserv_id_of("  (comment only") is None


def test_5_strip_removes_only_our_fields_and_keeps_the_rest_byte_for_byte():
    block = (b"Received: from a by b;\r\n\tTue, 1 Dec 2026 10:00:00 +0000\r\n"
             b"Authentication-Results: mx.example.org;\r\n\tspf=pass smtp.mailfrom=evil\r\n"
             b"authentication-results : other.example; dkim=pass header.d=a.example\r\n"
             b"AUTHENTICATION-RESULTS:mx.example.org; none\r\n"
             b"Subject: Authentication-Results: mx.example.org; none\r\n"
             b"\r\n")
    stripped, removed = strip_claimed(block, ["mx.example.org"])
    assert removed == 2
    assert stripped == (b"Received: from a by b;\r\n\tTue, 1 Dec 2026 10:00:00 +0000\r\n"
                        b"authentication-results : other.example; dkim=pass header.d=a.example\r\n"
                        b"Subject: Authentication-Results: mx.example.org; none\r\n"
                        b"\r\n")


def test_2_2_unquoted_local_parts_and_base64_are_read_whole():
    """pvalue's [local-part]@domain form admits "/", "=" and "?" in a dot-atom; some
    writers also leave header.b's base64 unquoted."""
    ar = parsed(" mx.example; spf=pass smtp.mailfrom=a/b=c?d@example.net;"
                " dkim=pass header.b=ab+/cd== header.d=example.net")
    assert ar.results[0].prop("smtp", "mailfrom") == "a/b=c?d@example.net"
    assert ar.results[1].prop("header", "b") == "ab+/cd=="
    assert ar.results[1].prop("header", "d") == "example.net"
