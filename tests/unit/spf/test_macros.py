"""RFC 7208 7: macro syntax and expansion, with the examples of 7.4."""

from __future__ import annotations

import ipaddress

import pytest

from mailyard.spf.macro import (
    MacroContext,
    MacroSyntaxError,
    expand,
    expand_domain,
    parse_domain_spec,
    parse_macro_string,
)


def context(ip: str = "192.0.2.3", **changes: object) -> MacroContext:
    values: dict[str, object] = dict(
        sender="strong-bad@email.example.com", local_part="strong-bad",
        sender_domain="email.example.com", domain="email.example.com",
        ip=ipaddress.ip_address(ip), helo="mx.example.org", receiver="mx.example.net",
        timestamp=1700000000, validated_name="mx.example.org")
    values.update(changes)
    return MacroContext(**values)  # type: ignore[arg-type]


def x(text: str, ip: str = "192.0.2.3", *, explanation: bool = False) -> str:
    return expand(parse_macro_string(text, explanation=explanation), context(ip))


# RFC 7208 7.4: "The <sender> is strong-bad@email.example.com. The IPv4 SMTP client
# IP is 192.0.2.3. The IPv6 SMTP client IP is 2001:db8::cb01. The PTR domain name of
# the client IP is mx.example.org."
RFC_7_4_IPV4 = [
    ("%{s}", "strong-bad@email.example.com"),
    ("%{o}", "email.example.com"),
    ("%{d}", "email.example.com"),
    ("%{d4}", "email.example.com"),
    ("%{d3}", "email.example.com"),
    ("%{d2}", "example.com"),
    ("%{d1}", "com"),
    ("%{dr}", "com.example.email"),
    ("%{d2r}", "example.email"),
    ("%{l}", "strong-bad"),
    ("%{l-}", "strong.bad"),
    ("%{lr}", "strong-bad"),
    ("%{lr-}", "bad.strong"),
    ("%{l1r-}", "strong"),
    ("%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com"),
    ("%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com"),
    ("%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", "bad.strong.lp.3.2.0.192.in-addr._spf.example.com"),
    ("%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", "3.2.0.192.in-addr.strong.lp._spf.example.com"),
    ("%{d2}.trusted-domains.example.net", "example.com.trusted-domains.example.net"),
]


@pytest.mark.parametrize(("macro", "expected"), RFC_7_4_IPV4)
def test_rfc_7_4_examples_ipv4(macro: str, expected: str) -> None:
    """RFC 7208 7.4, the IPv4 examples."""
    assert x(macro) == expected


def test_rfc_7_4_example_ipv6() -> None:
    """RFC 7208 7.4: IPv6 %{i} is dot-separated nibbles."""
    assert x("%{ir}.%{v}._spf.%{d2}", "2001:db8::cb01") == (
        "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com")


def test_escapes_and_url_escaping() -> None:
    """RFC 7208 7.3: %% %_ %-; an upper-case letter URL-escapes (RFC 3986
    unreserved characters stay)."""
    assert x("a%%b%_c%-d", explanation=True) == "a%b c%20d"
    assert expand(parse_macro_string("%{S}"), context(sender="a b/c~d@x.example")) == \
        "a%20b%2Fc~d%40x.example"
    assert x("%{L}") == "strong-bad"
    assert x("%{P}") == "mx.example.org"


def test_explanation_only_letters() -> None:
    """RFC 7208 7.2: c, r and t are allowed only in explanations; c is the readable
    address."""
    assert x("%{c} %{r} %{t}", explanation=True) == "192.0.2.3 mx.example.net 1700000000"
    assert x("%{c}", "2001:db8::cb01", explanation=True) == "2001:db8::cb01"
    for letter in "crt":
        with pytest.raises(MacroSyntaxError):
            parse_macro_string(f"%{{{letter}}}")


def test_delimiters_and_part_counts() -> None:
    """RFC 7208 7.3: any delimiter set, rejoined with "."; more parts asked than
    exist gives all of them."""
    assert expand(parse_macro_string("%{l+-}"), context(local_part="a+b-c")) == "a.b.c"
    assert expand(parse_macro_string("%{l2r+-}"), context(local_part="a+b-c")) == "b.a"
    assert x("%{d99}") == "email.example.com"
    assert x("%{h}%{v}") == "mx.example.orgin-addr"
    assert x("%{v}", "2001:db8::1") == "ip6"


@pytest.mark.parametrize("bad", [
    "%", "a%", "%x", "%{", "%{d", "%{}", "%{q}", "%{d0}", "%{dr0}", "%{d:}", "a b",
    "caf\u00e9", "%{d1x}",
])
def test_syntax_errors(bad: str) -> None:
    """RFC 7208 7.1: "%" must start an escape or a macro; the part count is nonzero."""
    with pytest.raises(MacroSyntaxError):
        parse_macro_string(bad)


@pytest.mark.parametrize("spec", ["example.com", "example.com.", "_spf.%{d}", "%{d}",
                                  "%{ir}.x.example", "a-1.example-2", "x.%%", "ex.c0m"])
def test_domain_spec_ok(spec: str) -> None:
    """RFC 7208 7.1: domain-end is "." toplabel ["."] or a macro."""
    parse_domain_spec(spec)


@pytest.mark.parametrize("spec", ["localhost", "example.123", "example.com-", "example.",
                                  "1.2.3.4", "example.com:8080", "example.com,", ""])
def test_domain_spec_bad(spec: str) -> None:
    with pytest.raises(MacroSyntaxError):
        parse_domain_spec(spec)


def test_long_names_are_cut_from_the_left() -> None:
    """RFC 7208 7.3: an expansion over 253 characters loses left-hand labels until
    it fits; a trailing dot is dropped."""
    local = ".".join(["abcdefghij"] * 30)  # 329 characters
    name = expand_domain(parse_domain_spec("%{l}.example.com."),
                         context(local_part=local))
    assert len(name) <= 253 and name.endswith(".abcdefghij.example.com")
    assert not name.startswith(".")
    assert expand_domain(parse_domain_spec("%{l1}.example."), context()) == "strong-bad.example"
