"""DKIM signing with the server's keys, outside ingest's streaming: which keys sign a
message (the From domain's active keys in the :class:`~mailyard.dkim.keys.KeyStore`),
one prepared :class:`~mailyard.dkim.sign.Signer` per key, and a whole message signed
at once (:meth:`Signing.sign`).

Ingest's hook (:mod:`mailyard.dkim.hook`) builds on this; a campaign render process
uses it alone, so it imports neither ingest nor the SMTP and DNS stacks (a render
process is a Python interpreter per core: what it does not import it does not hold).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from email.utils import getaddresses

from mailyard.dkim.canon import BodyHasher, Canon, HeaderField, split_header
from mailyard.dkim.keys import DkimKey, KeyStore, KeyStoreError
from mailyard.dkim.sign import Signer
from mailyard.dns.api import DnsNameError, ascii_domain
from mailyard.obs import log_event

__all__ = ["MAX_HEADER", "Signing", "from_domain", "signer_factory"]

log = logging.getLogger("mailyard.dkim")

MAX_HEADER = 256 * 1024


def from_domain(header: bytes, fields: Sequence[HeaderField] | None = None) -> str:
    """The domain of the one From address of a header section ("" when there is no
    From, several, or an address without a domain); ``fields``: the section already
    split (:func:`split_header`)."""
    if fields is None:
        fields = split_header(header)
    values = [f.raw.partition(b":")[2] for f in fields if f.name == b"from"]
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


class Signing:
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

    def sign(self, message: bytes, now: float | None = None) -> bytes:
        """The signature fields ingest would put on ``message`` (a whole message with
        CRLF line ends) as it is: empty when its From domain has no active key."""
        end = message.find(b"\r\n\r\n")
        header, body = (message, b"") if end < 0 else (message[:end + 2], message[end + 4:])
        if len(header) > MAX_HEADER:
            return b""
        fields = split_header(header)  # once, for the From domain and every signer
        keys = self.keys_for(header, fields)
        if not keys:
            return b""
        hasher = BodyHasher(Canon.RELAXED)
        hasher.update(body)
        digest = hasher.digest()
        stamp = self.clock() if now is None else now
        return b"".join(self.signer(key).field(header, digest, stamp, fields)
                        for key in keys)

    def keys_for(self, header: bytes,
                 fields: Sequence[HeaderField] | None = None) -> list[DkimKey]:
        domain = from_domain(header, fields)
        if not domain:
            return []
        try:
            return self.store.signing_keys(domain)
        except KeyStoreError as exc:
            log_event(log, "dkim key unreadable", level=logging.ERROR, domain=domain,
                      error=str(exc))
            return []


def signer_factory(headers: Sequence[str], oversign: Sequence[str],
                   expiry: int) -> Callable[[DkimKey], Signer]:
    """Signers for keys with ``[dkim]``'s ``headers``, ``oversign`` and ``expiry``."""
    headers, oversign = tuple(headers), tuple(oversign)

    def signer(key: DkimKey) -> Signer:
        return Signer(key.domain, key.selector, key.key, headers=headers, oversign=oversign,
                      expiry=expiry)

    return signer
