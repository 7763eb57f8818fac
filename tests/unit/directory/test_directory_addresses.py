"""Address syntax and lookup keys (RFC 5321 4.5.3.1, RFC 5322 3.2.3, RFC 5233)."""

from __future__ import annotations

import pytest

from mailyard.directory.addresses import base_address, check_address, check_domain, check_target
from mailyard.directory.api import DirectoryError


def test_keys_fold_case_and_trailing_dot() -> None:
    assert check_address("Alice.Smith@Example.TEST.") == "alice.smith@example.test"
    assert check_domain("Example.TEST.") == "example.test"


@pytest.mark.parametrize("address", [
    "o'brien@example.test", "a!#$%&*=?^_`{|}~-@example.test", "jörg@example.test",
])
def test_dot_atom_local_parts(address: str) -> None:
    """RFC 5322 3.2.3 atext; RFC 6531 allows UTF-8."""
    assert check_address(address) == address.lower()


@pytest.mark.parametrize("address", [
    "", "@example.test", "alice@", ".a@example.test", "a.@example.test", "a b@example.test",
    '"quoted"@example.test', "a@exa mple.test", "a@-bad.test", "a@" + "x" * 64 + ".test",
])
def test_bad_addresses(address: str) -> None:
    with pytest.raises(DirectoryError):
        check_address(address)


def test_length_limits() -> None:
    """RFC 5321 4.5.3.1.1: local part at most 64 octets."""
    assert check_address("x" * 64 + "@example.test")
    with pytest.raises(DirectoryError):
        check_address("x" * 65 + "@example.test")
    with pytest.raises(DirectoryError):
        check_address("é" * 33 + "@example.test")  # 66 octets in UTF-8


def test_non_ascii_domain_needs_a_label_form() -> None:
    with pytest.raises(DirectoryError, match="xn--"):
        check_domain("bücher.test")
    assert check_domain("xn--bcher-kva.test") == "xn--bcher-kva.test"


def test_subaddress_base() -> None:
    """RFC 5233: the detail after the first separator is dropped."""
    assert base_address("alice+x@example.test") == "alice@example.test"
    assert base_address("alice+x+y@example.test") == "alice@example.test"
    assert base_address("alice@example.test") == "alice@example.test"
    assert base_address("+x@example.test") == "+x@example.test"


def test_targets_keep_local_case() -> None:
    assert check_target("Bob.Jones@Remote.ORG") == "Bob.Jones@remote.org"
    assert check_target("@Other.TEST") == "@other.test"
    with pytest.raises(DirectoryError):
        check_target("not-an-address")
