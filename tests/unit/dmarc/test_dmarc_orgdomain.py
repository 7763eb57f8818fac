"""Organizational Domains (RFC 7489 3.2) over the Public Suffix List."""

from __future__ import annotations

import pytest

from mailyard.dmarc.orgdomain import PublicSuffixes, load_public_suffixes


@pytest.fixture(scope="module")
def psl() -> PublicSuffixes:
    return load_public_suffixes()


@pytest.mark.parametrize("domain, org", [
    ("example.com", "example.com"),
    ("mail.example.com", "example.com"),
    ("a.b.c.example.com", "example.com"),
    ("example.co.uk", "example.co.uk"),  # two-label public suffix
    ("mail.example.co.uk", "example.co.uk"),
    ("co.uk", "co.uk"),  # a public suffix is its own Organizational Domain
    ("MAIL.Example.COM.", "example.com"),
    ("x.y.city.kawasaki.jp", "city.kawasaki.jp"),  # exception rule !city.kawasaki.jp
    ("x.y.other.kawasaki.jp", "y.other.kawasaki.jp"),  # wildcard rule *.kawasaki.jp
    ("host.unlisted-tld", "host.unlisted-tld"),  # unknown TLDs count as suffixes
])
def test_3_2_organizational_domain(psl, domain, org):
    assert psl.organizational_domain(domain) == org


def test_3_2_answers_remembered_and_bounded():
    """Asked again, and after the remembered names were dropped, the answers stay."""
    psl = PublicSuffixes.from_text("com\nco.uk\n")
    psl._remembered = 2
    names = ["Mail.Example.com.", "a.example.co.uk", "x.y.com", "co.uk", "mail.example.com"]
    first = [psl.organizational_domain(n) for n in names]
    assert first == ["example.com", "example.co.uk", "y.com", "co.uk", "example.com"]
    assert [psl.organizational_domain(n) for n in names] == first
    assert len(psl._orgs) <= 2


def test_3_2_list_given_as_text_replaces_the_shipped_one():
    psl = PublicSuffixes.from_text("com\nexample.com\n")
    assert psl.organizational_domain("a.b.example.com") == "b.example.com"
    assert psl.public_suffix("a.b.example.com") == "example.com"


def test_list_from_a_file_is_loaded_once(tmp_path):
    path = tmp_path / "psl.dat"
    path.write_text("// comment\nuk\nco.uk\n", encoding="utf-8")
    first = load_public_suffixes(str(path))
    assert first is load_public_suffixes(str(path))
    assert first.organizational_domain("www.shop.co.uk") == "shop.co.uk"


def test_missing_list_file_is_an_os_error(tmp_path):
    with pytest.raises(OSError):
        load_public_suffixes(str(tmp_path / "absent.dat"))
