"""DKIM signing in the ingest stage (a :class:`~mailyard.ingest.api.StreamingHook`).

Which mail is signed: what local users send, that is origins ``SUBMISSION`` and
``LOCAL`` (and ``API``/``CAMPAIGN``), and port-25 mail from an authenticated client,
when the From domain has an active key in the :class:`~mailyard.dkim.keys.KeyStore`.
Bounces, forwards and relayed mail are not signed.

The observer sees the content as stored (trace field and Date/Message-ID fixes
included), keeps the header section (up to ``MAX_HEADER`` bytes; a larger one is not
signed), looks up the From domain's keys when the header ends (no key: it stops
looking at the content) and feeds the body to one relaxed body hasher shared by the
domain's signatures.  At commit it returns the ``DKIM-Signature`` fields, which ingest
writes to the record's prepend section.

Cost on the event loop: hashing runs as the content streams (SHA-256 plus two
``bytes`` passes); an RSA-2048 signature is about 1 ms of OpenSSL, an Ed25519 one
0.15-0.2 ms (``bench/auth_dkim.py``), small enough to stay inline at commit; the
RSA call keeps the GIL, so a thread would not free the loop anyway.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from email.utils import getaddresses

from mailyard.config import DkimConfig
from mailyard.dkim.canon import BodyHasher, Canon, split_header
from mailyard.dkim.keys import DkimKey, KeyStore, KeyStoreError
from mailyard.dkim.sign import Signer, own_signatures_problem
from mailyard.dkim.verify import VerifyPolicy
from mailyard.dns.api import DnsNameError, ascii_domain
from mailyard.ingest.api import ContentObserver, Origin, Submission
from mailyard.obs import log_event

__all__ = ["DkimSigning", "from_domain", "signing_for", "verify_policy_for"]

log = logging.getLogger("mailyard.dkim")

MAX_HEADER = 256 * 1024
_SIGNED = frozenset((Origin.SUBMISSION, Origin.LOCAL, Origin.API, Origin.CAMPAIGN))


def from_domain(header: bytes) -> str:
    """The domain of the one From address of a header section ("" when there is no
    From, several, or an address without a domain)."""
    values = [f.raw.partition(b":")[2] for f in split_header(header) if f.name == b"from"]
    if len(values) != 1:
        return ""
    value = values[0]
    return _address_domain_cached(value) if len(value) <= 512 else _address_domain(value)


def _address_domain(value: bytes) -> str:
    """The domain of the one address in a From field's value."""
    text = value.replace(b"\r\n", b"").decode("utf-8", "replace")
    addresses = [a for _, a in getaddresses([text]) if a]
    if len(addresses) != 1:
        return ""
    local, at, domain = addresses[0].rpartition("@")
    if not (at and local and domain.strip()):
        return ""
    try:
        return ascii_domain(domain)  # an IDN From domain signs as its A-label (d=)
    except DnsNameError:
        return ""


# A campaign's messages share one From field: it is parsed once.
_address_domain_cached = functools.lru_cache(maxsize=256)(_address_domain)


class DkimSigning:
    """Signs with the keys of ``store``; ``signer`` makes the :class:`Signer` for a key
    (it carries the configured headers, oversigning and expiry)."""

    def __init__(self, store: KeyStore, signer: Callable[[DkimKey], Signer],
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self._make_signer = signer
        self.clock = clock
        # Signers by key object (the store keeps a key object while its file is
        # unchanged), so a signer's fixed parts are prepared once per key.
        self._signers: dict[object, Signer] = {}

    def signer(self, key: DkimKey) -> Signer:
        found = self._signers.get(key.key)
        if found is None or (found.domain, found.selector) != (key.domain, key.selector):
            if len(self._signers) > 1000:
                self._signers.clear()
            found = self._signers[key.key] = self._make_signer(key)
        return found

    def observe(self, submission: Submission) -> ContentObserver | None:
        origin = submission.origin
        if origin in _SIGNED or (origin is Origin.INBOUND and submission.envelope.auth_user):
            return _Observer(self, submission.dkim if origin is Origin.CAMPAIGN else b"")
        return None

    def sign(self, message: bytes, now: float | None = None) -> bytes:
        """The signature fields ingest would put on ``message`` (a whole message with
        CRLF line ends) as it is: empty when its From domain has no active key."""
        end = message.find(b"\r\n\r\n")
        header, body = (message, b"") if end < 0 else (message[:end + 2], message[end + 4:])
        if len(header) > MAX_HEADER:
            return b""
        keys = self.keys_for(header)
        if not keys:
            return b""
        hasher = BodyHasher(Canon.RELAXED)
        hasher.update(body)
        digest = hasher.digest()
        stamp = self.clock() if now is None else now
        return b"".join(self.signer(key).field(header, digest, stamp) for key in keys)

    def keys_for(self, header: bytes) -> list[DkimKey]:
        domain = from_domain(header)
        if not domain:
            return []
        try:
            return self.store.signing_keys(domain)
        except KeyStoreError as exc:
            log_event(log, "dkim key unreadable", level=logging.ERROR, domain=domain,
                      error=str(exc))
            return []


class _Observer:
    def __init__(self, signing: DkimSigning, presigned: bytes = b"") -> None:
        self._signing = signing
        self._presigned = presigned
        self._head: bytearray | None = bytearray()  # None once the header is complete
        self._header = b""
        self._keys: list[DkimKey] = []
        self._hasher: BodyHasher | None = None

    def feed(self, data: bytes) -> None:
        if self._hasher is not None:
            self._hasher.update(data)
            return
        head = self._head
        if head is None:
            return  # not signing this one
        start = max(len(head) - 3, 0)
        head += data
        if head.startswith(b"\r\n"):
            self._header_done(b"", bytes(head[2:]))
            return
        end = head.find(b"\r\n\r\n", start)
        if end >= 0:
            self._header_done(bytes(head[:end + 2]), bytes(head[end + 4:]))
        elif len(head) > MAX_HEADER:
            self._head = None

    def _header_done(self, header: bytes, body: bytes) -> None:
        self._head = None
        self._keys = self._signing.keys_for(header)
        if self._keys:
            self._header = header
            self._hasher = BodyHasher(Canon.RELAXED)
            self._hasher.update(body)

    async def fields(self) -> bytes:
        if self._head is not None:  # a message without a body
            head = bytes(self._head)
            self._header_done(head if head.endswith(b"\r\n") else head + b"\r\n", b"")
        if self._hasher is None:
            if self._presigned:
                self._refuse("no active key for the From domain")
            return b""
        digest = self._hasher.digest()
        signers = [self._signing.signer(key) for key in self._keys]
        if self._presigned:
            problem = own_signatures_problem(self._presigned, self._header, digest, signers)
            if not problem:
                return self._presigned
            self._refuse(problem)
        now = self._signing.clock()
        return b"".join(signer.field(self._header, digest, now) for signer in signers)

    def _refuse(self, problem: str) -> None:
        log_event(log, "dkim signature made before ingest not used", level=logging.WARNING,
                  problem=problem)


def verify_policy_for(settings: DkimConfig) -> VerifyPolicy:
    """The verification limits of ``[dkim]`` (``max_signatures``, ``min_rsa_bits``)."""
    return VerifyPolicy(max_signatures=settings.max_signatures,
                        min_rsa_bits=settings.min_rsa_bits)


def signing_for(settings: DkimConfig, data_dir: str) -> DkimSigning:
    """The signing hook as configured in ``[dkim]``, over the keys in ``data_dir``."""
    headers, oversign, expiry = tuple(settings.headers), tuple(settings.oversign), settings.expiry

    def signer(key: DkimKey) -> Signer:
        return Signer(key.domain, key.selector, key.key, headers=headers, oversign=oversign,
                      expiry=expiry)

    return DkimSigning(KeyStore(data_dir), signer)
