"""DKIM signing (RFC 6376 5, RFC 8463).

A :class:`Signer` holds one key (domain, selector, loaded private key) and the
choices of what to sign; :meth:`Signer.field` turns a header section and the body
hash into a complete ``DKIM-Signature:`` field.  The body hash comes from a
:class:`~mailyard.dkim.canon.BodyHasher` fed while the message streams, shared by the
signers of a message that use the same body canonicalization (an RSA and an Ed25519
signature hash the body once).

Header selection (5.4): each configured name is signed as many times as it occurs;
the names in ``oversign`` get one more entry, so a verifier hashes an empty string
for it and a field of that name added later breaks the signature (8.15: a second
From must not slip in).  No ``l=`` is ever written: a body length limit lets anyone
append to the message (8.2).

:func:`own_signatures_problem` checks signature fields made elsewhere with our own
keys (a campaign message signed in a render process) against the bytes ingest
stores, with the public halves of those keys: no DNS, and a public-key operation
(tens of microseconds for RSA-2048) instead of a private one (about a millisecond).
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mailyard.dkim.canon import BodyHasher, Canon, HeaderField, split_header
from mailyard.dkim.crypto import PrivateKey, signing_function, verify_data
from mailyard.dkim.signature import SignatureError, parse_signature
from mailyard.dkim.verify import header_picks, picked_header_data, signed_header_data

__all__ = ["DEFAULT_HEADERS", "DEFAULT_OVERSIGN", "Signer", "own_signatures_problem",
           "sign_message"]

# RFC 6376 5.4.1's list of fields that should be signed, plus the list headers.
DEFAULT_HEADERS = (
    "From", "Reply-To", "Subject", "Date", "To", "Cc", "Resent-Date", "Resent-From",
    "Resent-To", "Resent-Cc", "In-Reply-To", "References", "List-Id", "List-Help",
    "List-Unsubscribe", "List-Unsubscribe-Post", "List-Subscribe", "List-Post",
    "List-Owner", "List-Archive", "Message-ID", "Sender", "MIME-Version", "Content-Type",
    "Content-Transfer-Encoding",
)
DEFAULT_OVERSIGN = ("From",)
_FOLD = 76
_MAX_LAYOUTS = 256  # header layouts remembered per signer


@dataclass(frozen=True)
class Signer:
    domain: str
    selector: str
    key: PrivateKey
    headers: Sequence[str] = DEFAULT_HEADERS
    oversign: Sequence[str] = DEFAULT_OVERSIGN
    header_canon: Canon = Canon.RELAXED
    body_canon: Canon = Canon.RELAXED
    expiry: int = 0  # seconds until x=; 0 for none
    # (name as written in h=, lower-case name, extra entries): computed once
    _plan: tuple[tuple[str, bytes, int], ...] = field(init=False, repr=False, compare=False)
    _prefix: str = field(init=False, repr=False, compare=False)  # the fixed tags
    _sign: Callable[[bytes], bytes] = field(init=False, repr=False, compare=False)
    _public: object = field(init=False, repr=False, compare=False)  # the key's public half
    # the folded h= list and the names to hash, per sequence of field names seen: the
    # messages of one producer have the same few header layouts
    _layouts: dict[tuple[bytes, ...], tuple[str, tuple[int, ...]]] = field(
        init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_plan", _plan(self.headers, self.oversign))
        object.__setattr__(self, "_prefix", (
            f"DKIM-Signature: v=1; a={self.algorithm}; c={self.header_canon.value}/"
            f"{self.body_canon.value};\r\n\td={self.domain}; s={self.selector};\r\n\t"))
        object.__setattr__(self, "_sign", signing_function(self.key))
        object.__setattr__(self, "_public", self.key.public_key())

    @property
    def algorithm(self) -> str:
        if isinstance(self.key, ed25519.Ed25519PrivateKey):
            return "ed25519-sha256"
        return "rsa-sha256"

    def names_to_sign(self, fields: Sequence[HeaderField]) -> tuple[list[str], list[bytes]]:
        """The h= names (as configured, and lower case) for a header's fields."""
        present = Counter(f.name for f in fields)
        names: list[str] = []
        lows: list[bytes] = []
        for name, low, extra in self._plan:
            count = present.get(low, 0) + extra
            if count:
                names += [name] * count
                lows += [low] * count
        return names, lows

    def _layout(self, fields: Sequence[HeaderField]) -> tuple[str, tuple[int, ...]]:
        """The folded ``h=`` tag, and which fields it makes us hash, for these fields."""
        shape = tuple([f.name for f in fields])
        known = self._layouts.get(shape)
        if known is None:
            if len(self._layouts) >= _MAX_LAYOUTS:
                self._layouts.clear()
            names, lows = self.names_to_sign(fields)
            known = self._layouts[shape] = (fold_list("h=", names), header_picks(shape, lows))
        return known

    def field(self, header: bytes, body_hash: bytes, now: float,
              fields: Sequence[HeaderField] | None = None) -> bytes:
        """The ``DKIM-Signature:`` field (folded, ending with CRLF) to put on top of
        the message whose header section is ``header`` (``fields``: already split by
        :func:`split_header`)."""
        if fields is None:
            fields = split_header(header)
        h_list, picks = self._layout(fields)
        stamp = int(now)
        expires = f" x={stamp + self.expiry};" if self.expiry else ""
        unsigned = (f"{self._prefix}t={stamp};{expires}\r\n\t{h_list};\r\n\t"
                    f"bh={base64.b64encode(body_hash).decode('ascii')};\r\n\tb=").encode("ascii")
        data = picked_header_data(fields, picks, self.header_canon, unsigned, b_empty=True)
        signature = base64.b64encode(self._sign(data))
        return unsigned + _fold_base64(signature, 3)


    def verifies(self, signature: bytes, data: bytes) -> bool:
        """Does ``signature`` (b=, decoded) sign ``data`` with this signer's key?"""
        public = self._public
        assert isinstance(public, rsa.RSAPublicKey | ed25519.Ed25519PublicKey)
        return verify_data(public, signature, data)


def own_signatures_problem(signatures: bytes, header: bytes, body_hash: bytes,
                           signers: Sequence[Signer], *, verify: bool = True) -> str:
    """Why the ``DKIM-Signature`` fields ``signatures`` are not what ``signers`` would
    put on the message whose header section is ``header`` and relaxed body hash
    ``body_hash`` ("" when they are): one field per signer, in order, each with that
    signer's fixed tags (a=, c=, d=, s=; relaxed body) and ``bh=`` equal to
    ``body_hash`` (a Signer writes no ``l=``).  ``verify``: also parse each field and
    check its b= over ``header`` with the signer's public key (RFC 6376 3.7)."""
    fields = split_header(signatures)
    if len(fields) != len(signers) or b"".join(f.raw for f in fields) != signatures:
        return f"{len(fields)} signature fields for {len(signers)} keys"
    header_fields = split_header(header) if verify else []
    for sig_field, signer in zip(fields, signers, strict=True):
        raw = sig_field.raw
        if not raw.startswith(signer._prefix.encode("ascii")):
            return (f"not the signature of d={signer.domain} s={signer.selector} "
                    f"a={signer.algorithm}")
        if signer.body_canon is not Canon.RELAXED:  # the hash ingest computes
            return "body not signed relaxed"
        if b"\r\n\tbh=" + base64.b64encode(body_hash) + b";\r\n\tb=" not in raw:
            return "body hash does not match the stored body"
        if not verify:
            continue
        try:
            sig = parse_signature(raw.partition(b":")[2])
        except SignatureError as exc:
            return str(exc)
        data = signed_header_data(header_fields, sig.headers, sig.header_canon, raw)
        if not signer.verifies(sig.signature, data):
            return "signature does not verify over the stored header"
    return ""


def _plan(headers: Sequence[str], oversign: Sequence[str]) -> tuple[tuple[str, bytes, int], ...]:
    """Each configured name once, From first if it was left out (RFC 6376 5.4: From is
    always signed), with one extra entry for the oversigned names."""
    extra = {o.lower() for o in oversign}
    plan: list[tuple[str, bytes, int]] = []
    seen: set[str] = set()
    for name in headers:
        low = name.lower()
        if low not in seen:
            seen.add(low)
            plan.append((name, low.encode("ascii"), 1 if low in extra else 0))
    if "from" not in seen:
        plan.insert(0, ("From", b"from", 1))
    return tuple(plan)


def fold_list(tag: str, names: list[str]) -> str:
    text, line = tag, len(tag)
    for i, name in enumerate(names):
        sep = ":" if i else ""
        if line + len(name) + 1 > _FOLD - 8:
            text += sep + "\r\n\t"
            line = 1
            sep = ""
        text += sep + name
        line += len(sep) + len(name)
    return text


def _fold_base64(data: bytes, col: int) -> bytes:
    first = max(_FOLD - col, 8)
    parts = [data[:first]]
    parts.extend(data[i:i + _FOLD - 1] for i in range(first, len(data), _FOLD - 1))
    return b"\r\n\t".join(p for p in parts if p) + b"\r\n"


def sign_message(message: bytes, signers: Sequence[Signer], now: float) -> bytes:
    """The signature fields for a whole message (CRLF line ends), one per signer."""
    end = message.find(b"\r\n\r\n")
    header, body = (message, b"") if end < 0 else (message[:end + 2], message[end + 4:])
    hashes: dict[Canon, bytes] = {}
    out = []
    for signer in signers:
        digest = hashes.get(signer.body_canon)
        if digest is None:
            hasher = BodyHasher(signer.body_canon)
            hasher.update(body)
            digest = hashes[signer.body_canon] = hasher.digest()
        out.append(signer.field(header, digest, now))
    return b"".join(out)
