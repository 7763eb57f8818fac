"""DKIM keys of the local domains: what to publish, and rotation with two selectors.

Rotation never leaves mail unsigned or signed with an unpublished key:

1. ``rotate(domain)`` makes a new *pending* key (the old one keeps signing) and
   returns the TXT record to publish at its selector;
2. once that record is in the DNS (and its TTL has passed), ``switch(domain)`` makes
   the pending key sign; the old one is *retired* (its record should stay published
   for a few days, for mail still on its way).

A domain without a key of the algorithm gets one that signs at once (its record must
be published for receivers to verify it; until then they report ``permerror``, which
DMARC treats like no signature).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from mailyard.config import Config
from mailyard.dkim.keys import DkimKey, KeyAlgorithm, KeyStore, KeyStoreError
from mailyard.services.errors import error

__all__ = ["DkimDomain", "DkimKeys", "DkimSelector"]

_ALGORITHMS = {"rsa-sha256": KeyAlgorithm.RSA, "ed25519-sha256": KeyAlgorithm.ED25519,
               "rsa": KeyAlgorithm.RSA, "ed25519": KeyAlgorithm.ED25519}


@dataclass(frozen=True)
class DkimSelector:
    domain: str
    selector: str
    state: str  # active, pending, retired
    algorithm: str  # rsa-sha256, ed25519-sha256
    record_name: str
    record: str

    @classmethod
    def of(cls, key: DkimKey, state: str) -> DkimSelector:
        algorithm = "ed25519-sha256" if key.algorithm is KeyAlgorithm.ED25519 else "rsa-sha256"
        return cls(key.domain, key.selector, state, algorithm, key.record_name, key.record)

    def to_dict(self) -> dict[str, object]:
        return {"domain": self.domain, "selector": self.selector, "state": self.state,
                "algorithm": self.algorithm, "name": self.record_name, "type": "TXT",
                "value": self.record}


@dataclass(frozen=True)
class DkimDomain:
    domain: str
    selectors: tuple[DkimSelector, ...]

    def to_dict(self) -> dict[str, object]:
        return {"domain": self.domain, "selectors": [s.to_dict() for s in self.selectors]}


class DkimKeys:
    def __init__(self, store: KeyStore, local_domains: Callable[[], Iterable[str]], *,
                 selector: str = "mailyard", rsa_bits: int = 2048,
                 algorithms: Sequence[str] = ("rsa-sha256",)) -> None:
        self.store = store
        self._local_domains = local_domains
        self.selector = selector
        self.rsa_bits = rsa_bits
        self.algorithms = tuple(algorithms)

    @classmethod
    def for_config(cls, config: Config, local_domains: Callable[[], Iterable[str]]) -> DkimKeys:
        return cls(KeyStore(config.data_dir), local_domains, selector=config.dkim.selector,
                   rsa_bits=config.dkim.rsa_bits, algorithms=config.dkim.algorithms)

    def ensure(self, domain: str) -> list[DkimSelector]:
        """The first key of each configured algorithm (``[dkim] algorithms``) the domain
        has no active key of, signing at once (for ``domain add``); the new ones."""
        active = {s.algorithm for s in self.show(domain).selectors if s.state == "active"}
        return [self.rotate(domain, a) for a in self.algorithms if a not in active]

    def show(self, domain: str) -> DkimDomain:
        domain = self._local(domain)
        try:
            state = self.store.state(domain)
            selectors = [DkimSelector.of(self.store.load(domain, s), name)
                         for name, names in (("active", state.active),
                                             ("pending", state.pending),
                                             ("retired", state.retired))
                         for s in names]
        except KeyStoreError as exc:
            raise error("dkim_key_error", str(exc)) from None
        return DkimDomain(domain, tuple(selectors))

    def rotate(self, domain: str, algorithm: str = "rsa-sha256") -> DkimSelector:
        """Step one: a new pending key (or, for a domain without a key of this
        algorithm, its first key, signing at once)."""
        domain = self._local(domain)
        kind = _ALGORITHMS.get(algorithm.lower())
        if kind is None:
            raise error("invalid_algorithm", f"unknown algorithm {algorithm!r}: "
                        "use rsa-sha256 or ed25519-sha256")
        try:
            current = self.show(domain).selectors
            if not any(s.state == "active" and _ALGORITHMS[s.algorithm] is kind
                       for s in current):
                taken = {s.selector for s in current}
                selector = self.selector if kind is KeyAlgorithm.RSA else f"{self.selector}-ed"
                if selector not in taken:
                    key = self.store.create(domain, selector, kind, rsa_bits=self.rsa_bits)
                    return DkimSelector.of(key, "active")
            key = self.store.rotate(domain, kind, rsa_bits=self.rsa_bits)
        except KeyStoreError as exc:
            raise error("dkim_key_error", str(exc)) from None
        return DkimSelector.of(key, "pending")

    def switch(self, domain: str) -> DkimDomain:
        """Step two: every pending key signs from now on; the keys it replaces retire."""
        domain = self._local(domain)
        try:
            pending = list(self.store.state(domain).pending)
            if not pending:
                raise error("no_pending_key", f"{domain} has no pending DKIM key: run "
                            f"`mailyard domain dkim rotate {domain}` first")
            for selector in pending:
                self.store.activate(domain, selector)
        except KeyStoreError as exc:
            raise error("dkim_key_error", str(exc)) from None
        return self.show(domain)

    def _local(self, domain: str) -> str:
        name = domain.strip().lower().rstrip(".")
        if name not in {d.lower() for d in self._local_domains()}:
            raise error("domain_not_local", f"{name} is not a local domain "
                        "(add it with `mailyard domain add`)")
        return name
