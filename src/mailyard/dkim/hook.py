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

import logging

from mailyard.config import DkimConfig
from mailyard.dkim.canon import BodyHasher, Canon
from mailyard.dkim.keys import DkimKey, KeyStore
from mailyard.dkim.sign import own_signatures_problem
from mailyard.dkim.signing import MAX_HEADER, Signing, from_domain, signer_factory
from mailyard.dkim.verify import VerifyPolicy
from mailyard.ingest.api import ContentObserver, Origin, Submission
from mailyard.obs import log_event

__all__ = ["DkimSigning", "from_domain", "signing_for", "verify_policy_for"]

log = logging.getLogger("mailyard.dkim")

_SIGNED = frozenset((Origin.SUBMISSION, Origin.LOCAL, Origin.API, Origin.CAMPAIGN))


#: A signature made before ingest is verified with the public key (b=) for the first
#: message and then one in this many; every one gets the other checks.
FULL_CHECK_EVERY = 32


class DkimSigning(Signing):
    """The ingest hook: signs, at commit, the messages of the origins above."""

    _presigned_seen = 0

    def full_check(self) -> bool:
        """Should this signature made before ingest be verified with the public key?"""
        seen, self._presigned_seen = self._presigned_seen, self._presigned_seen + 1
        return seen % FULL_CHECK_EVERY == 0

    def observe(self, submission: Submission) -> ContentObserver | None:
        origin = submission.origin
        if origin in _SIGNED or (origin is Origin.INBOUND and submission.envelope.auth_user):
            return _Observer(self, submission.dkim if origin is Origin.CAMPAIGN else b"")
        return None


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
            problem = own_signatures_problem(self._presigned, self._header, digest, signers,
                                             verify=self._signing.full_check())
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
    return DkimSigning(KeyStore(data_dir), signer_factory(
        settings.headers, settings.oversign, settings.expiry))
