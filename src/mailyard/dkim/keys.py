"""DKIM private keys in the data dir, per domain and selector, and their rotation.

Layout (the directories 0700, the key files 0600, written atomically)::

    data_dir/dkim/<domain>/<selector>.pem     PKCS#8 private key (RSA or Ed25519)
    data_dir/dkim/<domain>/selectors.json     {"active": [...], "pending": [...],
                                               "retired": [...]}

``active`` selectors sign (one per algorithm: RSA, and Ed25519 as an optional second
signature).  Rotation without downtime uses two selectors: :meth:`KeyStore.rotate`
makes a new key *pending* and returns the TXT record to publish; mail is still signed
with the old key.  Once the record is in DNS, :meth:`KeyStore.activate` switches: the
pending selector signs and the old one is *retired* (its record should stay published
for a few days, for mail still in transit).

Loaded keys are cached by (path, mtime), so signing costs no file read or PEM parse; a
change to a domain's keys is seen within ``RECHECK`` seconds.
"""

from __future__ import annotations

import enum
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mailyard.dkim.crypto import PrivateKey
from mailyard.dkim.record import public_key_text

__all__ = ["DkimKey", "KeyAlgorithm", "KeyStore", "KeyStoreError", "dns_record"]

_SELECTOR = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
_DOMAIN = re.compile(r"[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?\Z")
STATE_FILE = "selectors.json"
RECHECK = 0.2  # seconds a domain's signing keys are used before their files are looked at


class KeyAlgorithm(enum.StrEnum):
    RSA = "rsa"
    ED25519 = "ed25519"


class KeyStoreError(Exception):
    """A key or the selector state cannot be read or written; the message says why."""


@dataclass(frozen=True)
class DkimKey:
    domain: str
    selector: str
    key: PrivateKey

    @property
    def algorithm(self) -> KeyAlgorithm:
        if isinstance(self.key, ed25519.Ed25519PrivateKey):
            return KeyAlgorithm.ED25519
        return KeyAlgorithm.RSA

    @property
    def record_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"

    @property
    def record(self) -> str:
        return dns_record(self.key)


def _mtime(path: str) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def _unchanged(stamps: tuple[tuple[str, float | None], ...]) -> bool:
    return all(_mtime(path) == mtime for path, mtime in stamps)


def dns_record(key: PrivateKey) -> str:
    """The TXT record text that publishes ``key``'s public half."""
    kind = "ed25519" if isinstance(key, ed25519.Ed25519PrivateKey) else "rsa"
    return f"v=DKIM1; k={kind}; p={public_key_text(key.public_key())}"


def generate(algorithm: KeyAlgorithm, rsa_bits: int = 2048) -> PrivateKey:
    if algorithm is KeyAlgorithm.ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)


@dataclass
class SelectorState:
    active: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)


class KeyStore:
    def __init__(self, data_dir: str | Path) -> None:
        self.root = Path(data_dir) / "dkim"
        self._cache: dict[Path, tuple[float, PrivateKey]] = {}
        self._states: dict[str, tuple[float, SelectorState]] = {}
        # A domain's signing keys with the (path, mtime) of the files they came from
        # and when to look at those again: while none changed, a message costs a stat
        # per file every RECHECK seconds (a stat releases the GIL, and getting it back
        # behind the queue's commit threads was measurable at campaign rates).
        self._signing: dict[str, tuple[tuple[tuple[str, float | None], ...],
                                       list[DkimKey], float]] = {}

    # --- reading ------------------------------------------------------------------------
    def signing_keys(self, domain: str) -> list[DkimKey]:
        """The active keys of ``domain`` (none when it has none).  Raises KeyStoreError
        when a key cannot be read."""
        domain = domain.lower().rstrip(".")
        if not _DOMAIN.match(domain):
            return []
        found = self._signing.get(domain)
        now = time.monotonic()
        if found is not None and (now < found[2] or _unchanged(found[0])):
            if now >= found[2]:
                self._signing[domain] = (found[0], found[1], now + RECHECK)
            return list(found[1])
        # Stamped before reading: a change after the stamp is seen at the next call.
        state_path = str(self._domain_dir(domain) / STATE_FILE)
        stamps = [(state_path, _mtime(state_path))]
        state = self._state_cached(domain)
        for selector in state.active:
            key_path = str(self._key_path(domain, selector))
            stamps.append((key_path, _mtime(key_path)))
        keys = [self.load(domain, s) for s in state.active]
        if all(m is not None for _, m in stamps):
            self._signing[domain] = (tuple(stamps), keys, now + RECHECK)
        return keys

    def load(self, domain: str, selector: str) -> DkimKey:
        path = self._key_path(domain, selector)
        try:
            mtime = path.stat().st_mtime
            cached = self._cache.get(path)
            if cached is not None and cached[0] == mtime:
                return DkimKey(domain, selector, cached[1])
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise KeyStoreError(f"cannot read DKIM key {path}: {exc}") from None
        if not isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
            raise KeyStoreError(f"{path}: not an RSA or Ed25519 key")
        self._cache[path] = (mtime, key)
        return DkimKey(domain, selector, key)

    def state(self, domain: str) -> SelectorState:
        path = self._domain_dir(domain) / STATE_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return SelectorState()
        except (OSError, ValueError) as exc:
            raise KeyStoreError(f"cannot read {path}: {exc}") from None
        if not isinstance(data, dict):
            raise KeyStoreError(f"{path}: not a JSON object")
        return SelectorState(*([str(s) for s in data.get(k, [])]
                               for k in ("active", "pending", "retired")))

    def _state_cached(self, domain: str) -> SelectorState:
        path = self._domain_dir(domain) / STATE_FILE
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return SelectorState()
        cached = self._states.get(domain)
        if cached is None or cached[0] != mtime:
            cached = self._states[domain] = (mtime, self.state(domain))
        return cached[1]

    # --- changing -----------------------------------------------------------------------
    def create(self, domain: str, selector: str, algorithm: KeyAlgorithm = KeyAlgorithm.RSA,
               *, rsa_bits: int = 2048, activate: bool = True) -> DkimKey:
        """A new key at ``selector``, active at once (a new domain) or pending (a
        rotation).  Refuses to overwrite an existing selector."""
        domain = self._check(domain, selector)
        path = self._key_path(domain, selector)
        if path.exists():
            raise KeyStoreError(f"selector {selector} of {domain} exists already")
        key = generate(algorithm, rsa_bits)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        self._write(path, pem)
        state = self.state(domain)
        (state.active if activate else state.pending).append(selector)
        self._save(domain, state)
        return DkimKey(domain, selector, key)

    def rotate(self, domain: str, algorithm: KeyAlgorithm = KeyAlgorithm.RSA, *,
               rsa_bits: int = 2048, now: float | None = None) -> DkimKey:
        """Step one of a rotation: a new pending key whose record is to be published.
        The selector is named after the date (``y2026m12``, then ``y2026m12b``...)."""
        domain = self._check(domain, "x")
        stamp = time.gmtime(time.time() if now is None else now)
        base = f"y{stamp.tm_year}m{stamp.tm_mon:02d}"
        taken = {p.stem for p in self._domain_dir(domain).glob("*.pem")}
        selector = base
        suffix = ord("b")
        while selector in taken:
            selector = base + chr(suffix)
            suffix += 1
        return self.create(domain, selector, algorithm, rsa_bits=rsa_bits, activate=False)

    def activate(self, domain: str, selector: str) -> SelectorState:
        """Step two: ``selector`` (pending) signs from now on, replacing the active key of
        the same algorithm, which is retired."""
        domain = self._check(domain, selector)
        state = self.state(domain)
        if selector not in state.pending:
            raise KeyStoreError(f"selector {selector} of {domain} is not pending")
        new = self.load(domain, selector)
        for old in list(state.active):
            if self.load(domain, old).algorithm is new.algorithm:
                state.active.remove(old)
                state.retired.append(old)
        state.pending.remove(selector)
        state.active.append(selector)
        self._save(domain, state)
        return state

    # --- files --------------------------------------------------------------------------
    def _check(self, domain: str, selector: str) -> str:
        domain = domain.lower().rstrip(".")
        if not _DOMAIN.match(domain) or ".." in domain:
            raise KeyStoreError(f"not a domain: {domain!r}")
        if not _SELECTOR.match(selector):
            raise KeyStoreError(f"not a selector (letters, digits, '-'): {selector!r}")
        return domain

    def _domain_dir(self, domain: str) -> Path:
        return self.root / domain

    def _key_path(self, domain: str, selector: str) -> Path:
        return self._domain_dir(domain) / f"{selector}.pem"

    def _save(self, domain: str, state: SelectorState) -> None:
        self._signing.pop(domain, None)  # our own change is seen at once
        data = {"active": state.active, "pending": state.pending, "retired": state.retired}
        self._write(self._domain_dir(domain) / STATE_FILE,
                    (json.dumps(data, indent=1) + "\n").encode())

    def _write(self, path: Path, data: bytes) -> None:
        """Atomically, 0600 in 0700 directories (the CLI runs as the data dir's owner,
        so the server can read what it writes)."""
        for directory in (self.root, path.parent):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(directory, 0o700)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
