"""Where an address goes: alias expansion over any directory storage.

The rules, in the order they are tried for one local address (its key):

1. an alias for the full address expands to its targets (recursively);
2. a user with that address is a mailbox;
3. for ``user+tag@domain`` (RFC 5233), steps 1 and 2 for ``user@domain``;
4. ``postmaster@`` (RFC 5321 4.5.1) is the mailbox ``postmaster@<domain>``, and
   ``abuse@`` (RFC 2142 2) goes where ``postmaster@<domain>`` goes;
5. a catch-all alias ``@domain`` expands to its targets; a target ``@other`` rewrites
   the domain (``x@domain`` -> ``x@other``);
6. otherwise the address does not exist.

An alias that reaches itself again (``a -> a, b@remote``: keep a copy and forward) stops
there: the second visit can only be a mailbox (rule 2 or 4).  Expansion also stops at
:data:`MAX_DEPTH` levels and :data:`MAX_TARGETS` results, so a bad alias table cannot
make a lookup run away.  Targets in other domains are returned as external addresses,
with the case of their local part kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from mailyard.directory.addresses import address_key, base_address, split_key
from mailyard.directory.api import Resolution

MAX_DEPTH = 10
MAX_TARGETS = 1000
ROLE_POSTMASTER = "postmaster"
ROLE_ABUSE = "abuse"


class AliasSource(Protocol):
    """The three lookups expansion needs (keys are lower-case addresses)."""

    def is_local_domain(self, domain: str) -> bool: ...

    def alias_targets(self, key: str) -> tuple[str, ...] | None:
        """The targets of the alias ``key`` ("name@domain" or "@domain"), None if none."""
        ...

    def is_user(self, key: str) -> bool: ...


@dataclass
class _Expansion:
    source: AliasSource
    max_depth: int
    mailboxes: dict[str, None] = field(default_factory=dict)  # ordered sets
    external: dict[str, None] = field(default_factory=dict)

    def full(self) -> bool:
        return len(self.mailboxes) + len(self.external) >= MAX_TARGETS

    def visit(self, address: str, path: frozenset[str], depth: int) -> None:
        key = address_key(address)
        local, domain = split_key(key)
        if self.full():
            return
        if not self.source.is_local_domain(domain):
            self.external.setdefault(_external_form(address), None)
            return
        if depth > self.max_depth:
            return
        if key in path:
            self.mailbox_only(key)
            return
        inner = path | {key}
        if self.alias(key, inner, depth) or self.user(key):
            return
        base = base_address(key)
        if base != key and (self.alias(base, inner | {base}, depth) or self.user(base)):
            return
        if self.role(local, domain, inner, depth):
            return
        self.catch_all(address, local, domain, inner, depth)

    def alias(self, key: str, path: frozenset[str], depth: int) -> bool:
        targets = self.source.alias_targets(key)
        if targets is None:
            return False
        for target in targets:
            self.visit(target, path, depth + 1)
        return True

    def user(self, key: str) -> bool:
        if self.source.is_user(key):
            self.mailboxes.setdefault(key, None)
            return True
        return False

    def mailbox_only(self, key: str) -> None:
        if self.user(key):
            return
        local, domain = split_key(key)
        if local == ROLE_POSTMASTER:
            self.mailboxes.setdefault(key, None)

    def role(self, local: str, domain: str, path: frozenset[str], depth: int) -> bool:
        base_local = split_key(base_address(f"{local}@{domain}"))[0]
        if base_local == ROLE_POSTMASTER:
            self.mailboxes.setdefault(f"{ROLE_POSTMASTER}@{domain}", None)
            return True
        if base_local == ROLE_ABUSE:
            self.visit(f"{ROLE_POSTMASTER}@{domain}", path, depth + 1)
            return True
        return False

    def catch_all(self, address: str, local: str, domain: str, path: frozenset[str],
                  depth: int) -> None:
        key = f"@{domain}"
        if key in path:
            return
        targets = self.source.alias_targets(key)
        if targets is None:
            return
        original_local = address.strip().rpartition("@")[0] or local
        for target in targets:
            if target.startswith("@"):
                target = f"{original_local}{target}"
            self.visit(target, path | {key}, depth + 1)


def _external_form(address: str) -> str:
    local, sep, domain = address.strip().rpartition("@")
    return f"{local}@{domain.lower().rstrip('.')}" if sep else address.strip()


def expand(address: str, source: AliasSource, max_depth: int = MAX_DEPTH) -> Resolution:
    """Resolve ``address`` (any case) to local mailboxes and external addresses."""
    run = _Expansion(source, max_depth)
    run.visit(address, frozenset(), 0)
    if not run.mailboxes and not run.external:
        return Resolution(unknown=True)
    return Resolution(mailboxes=tuple(run.mailboxes), external=tuple(run.external))
