"""Alias expansion rules over an in-memory directory (no SQLite)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from mailyard.directory.addresses import address_key
from mailyard.directory.expand import MAX_DEPTH, MAX_TARGETS, expand


@dataclass
class MemorySource:
    domains: set[str] = field(default_factory=lambda: {"example.test", "other.test"})
    users: set[str] = field(default_factory=set)
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def is_local_domain(self, domain: str) -> bool:
        return domain in self.domains

    def alias_targets(self, key: str) -> tuple[str, ...] | None:
        return self.aliases.get(key)

    def is_user(self, key: str) -> bool:
        return key in self.users


def test_user_is_a_mailbox_case_insensitively() -> None:
    src = MemorySource(users={"alice@example.test"})
    res = expand("Alice@EXAMPLE.Test", src)
    assert res.mailboxes == ("alice@example.test",)
    assert res.external == () and res.exists


def test_unknown_address() -> None:
    res = expand("nobody@example.test", MemorySource())
    assert res.unknown and not res.exists
    assert res.mailboxes == () and res.external == ()


def test_subaddress_reaches_the_user() -> None:
    """RFC 5233: user+detail@domain is delivered to user@domain."""
    src = MemorySource(users={"alice@example.test"})
    assert expand("alice+lists@example.test", src).mailboxes == ("alice@example.test",)
    assert expand("alice+a+b@example.test", src).mailboxes == ("alice@example.test",)
    assert expand("bob+x@example.test", src).unknown


def test_exact_entry_wins_over_subaddress() -> None:
    src = MemorySource(users={"alice@example.test"},
                       aliases={"alice+sales@example.test": ("bob@remote.org",)})
    assert expand("alice+sales@example.test", src).external == ("bob@remote.org",)


def test_subaddress_of_an_alias() -> None:
    src = MemorySource(users={"alice@example.test"},
                       aliases={"team@example.test": ("alice@example.test",)})
    assert expand("team+x@example.test", src).mailboxes == ("alice@example.test",)


def test_alias_chain_to_mailboxes_and_external() -> None:
    src = MemorySource(
        users={"alice@example.test", "bob@other.test"},
        aliases={
            "all@example.test": ("team@example.test", "Carol@Remote.ORG"),
            "team@example.test": ("alice@example.test", "bob@other.test"),
        })
    res = expand("all@example.test", src)
    assert res.mailboxes == ("alice@example.test", "bob@other.test")
    assert res.external == ("Carol@remote.org",)  # local part case kept, domain folded


def test_duplicates_collapse() -> None:
    src = MemorySource(users={"alice@example.test"},
                       aliases={"a@example.test": ("alice@example.test", "b@example.test"),
                                "b@example.test": ("alice@example.test",)})
    assert expand("a@example.test", src).mailboxes == ("alice@example.test",)


def test_alias_loop_without_mailbox_is_unknown() -> None:
    src = MemorySource(aliases={"a@example.test": ("b@example.test",),
                                "b@example.test": ("a@example.test",)})
    assert expand("a@example.test", src).unknown


def test_alias_loop_keeps_what_it_reaches() -> None:
    src = MemorySource(users={"alice@example.test"},
                       aliases={"a@example.test": ("b@example.test", "alice@example.test"),
                                "b@example.test": ("a@example.test", "x@remote.org")})
    res = expand("a@example.test", src)
    assert res.mailboxes == ("alice@example.test",)
    assert res.external == ("x@remote.org",)


def test_alias_to_itself_keeps_a_copy_and_forwards() -> None:
    src = MemorySource(users={"alice@example.test"},
                       aliases={"alice@example.test": ("alice@example.test", "me@remote.org")})
    res = expand("alice@example.test", src)
    assert res.mailboxes == ("alice@example.test",)
    assert res.external == ("me@remote.org",)


def _chain(length: int) -> MemorySource:
    aliases = {f"a{i}@example.test": (f"a{i + 1}@example.test",) for i in range(length)}
    return MemorySource(users={f"a{length}@example.test"}, aliases=aliases)


def test_depth_limit_stops_long_chains() -> None:
    assert expand("a0@example.test", _chain(MAX_DEPTH)).mailboxes == (
        f"a{MAX_DEPTH}@example.test",)
    assert expand("a0@example.test", _chain(MAX_DEPTH + 1)).unknown


def test_fan_out_is_bounded() -> None:
    targets = tuple(f"u{i}@remote.org" for i in range(MAX_TARGETS * 2))
    src = MemorySource(aliases={"big@example.test": targets})
    res = expand("big@example.test", src)
    assert len(res.external) == MAX_TARGETS


@pytest.mark.parametrize("domain", ["example.test", "other.test"])
def test_postmaster_always_exists(domain: str) -> None:
    """RFC 5321 4.5.1: every domain accepts mail for postmaster (any case)."""
    res = expand(f"PostMaster@{domain}", MemorySource())
    assert res.mailboxes == (f"postmaster@{domain}",)


def test_abuse_goes_where_postmaster_goes() -> None:
    """RFC 2142 2: abuse@ is a role mailbox; by default it reaches postmaster."""
    assert expand("abuse@example.test", MemorySource()).mailboxes == ("postmaster@example.test",)
    src = MemorySource(users={"admin@example.test"},
                       aliases={"postmaster@example.test": ("admin@example.test",)})
    assert expand("abuse@example.test", src).mailboxes == ("admin@example.test",)
    assert expand("postmaster@example.test", src).mailboxes == ("admin@example.test",)


def test_role_addresses_can_be_overridden() -> None:
    src = MemorySource(users={"abuse@example.test"},
                       aliases={"postmaster@example.test": ("postmaster@example.test",
                                                            "ops@remote.org")})
    assert expand("abuse@example.test", src).mailboxes == ("abuse@example.test",)
    res = expand("postmaster@example.test", src)
    assert res.mailboxes == ("postmaster@example.test",)
    assert res.external == ("ops@remote.org",)


def test_catch_all() -> None:
    src = MemorySource(users={"alice@example.test"},
                       aliases={"@example.test": ("alice@example.test",)})
    assert expand("whatever@example.test", src).mailboxes == ("alice@example.test",)
    assert expand("alice@example.test", src).mailboxes == ("alice@example.test",)
    # Built-in role addresses are not swallowed by the catch-all.
    assert expand("postmaster@example.test", src).mailboxes == ("postmaster@example.test",)


def test_catch_all_domain_rewrite_and_loop() -> None:
    src = MemorySource(users={"bob@other.test"},
                       aliases={"@example.test": ("@other.test",),
                                "@other.test": ("@example.test",)})
    assert expand("Bob+x@example.test", src).mailboxes == ("bob@other.test",)
    assert expand("nobody@example.test", src).unknown


def test_address_outside_local_domains_is_external() -> None:
    res = expand("Someone@Elsewhere.ORG", MemorySource())
    assert res.external == ("Someone@elsewhere.org",)


def test_address_key() -> None:
    assert address_key(" Alice@Example.TEST. ") == "alice@example.test"
