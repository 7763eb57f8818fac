"""Signed tokens for the open pixel, the click redirect and unsubscribe links, and the
link rewriter the templates call for each tracked ``<a href>``.

Anyone can request ``/t/c/<token>``, so a token must not let a stranger count an open
for someone else, nor turn the click endpoint into an open redirect.  A token carries

- one byte for the kind (open, click, unsubscribe),
- the campaign id, the contact id and, for a click, the index of the link in the
  campaign's stored link list (unsigned LEB128 varints, shortest form only),
- 12 bytes (96 bits) of HMAC-SHA256 over all of that, keyed by a key derived from the
  server secret for this purpose only (:func:`tracking_key`),

in URL-safe base64 without padding (a click token for small ids is about 24
characters).  The click target is never in the token: the HTTP layer looks the index
up in the campaign's link list, so a forged or tampered token, or an index past the
end of the list, gives ``None`` and a 404, never a redirect to somewhere else.

Decoding accepts only the canonical encoding of a token (the one :func:`encode_token`
writes), so no two strings name the same token, and compares the tag in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

from mailyard import varint
from mailyard.bulk.templates.render import Tracking
from mailyard.daemon.secret import derive_key

TAG_BYTES = 12
MAX_ID = varint.MAX_VALUE
#: The longest token accepted: one kind byte, three 9-byte varints (ids up to
#: 2**63-1), the tag; anything longer is refused before decoding.
MAX_TOKEN_CHARS = -(-(1 + 3 * 9 + TAG_BYTES) * 4 // 3)
#: How many distinct links one campaign may track; further links are left as they are.
MAX_LINKS = 10_000

CLICK_PATH = "/t/c/"
OPEN_PATH = "/t/o/"
OPEN_SUFFIX = ".gif"
UNSUBSCRIBE_PATH = "/u/"

#: A 1x1 fully transparent GIF89a (43 bytes): header, a screen with a two-colour
#: table, a graphic control extension marking colour 0 transparent, one image of one
#: pixel (LZW: clear code, index 0, end code), trailer.
TRANSPARENT_GIF = (
    b"GIF89a" + b"\x01\x00\x01\x00" + b"\x80\x00\x00"
    + b"\x00\x00\x00" + b"\xff\xff\xff"
    + b"\x21\xf9\x04\x01\x00\x00\x00\x00"
    + b"\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00"
    + b"\x02\x02\x44\x01\x00"
    + b"\x3b")


class TokenKind(IntEnum):
    OPEN = 1
    CLICK = 2
    UNSUBSCRIBE = 3


@dataclass(frozen=True)
class TrackingToken:
    """Who did what: the kind, the campaign, the contact and (clicks) the link index."""

    kind: TokenKind
    campaign_id: int
    contact_id: int
    link: int = 0


def tracking_key(secret: bytes) -> bytes:
    """The key of tracking and unsubscribe tokens, derived from the server secret."""
    return derive_key(secret, "tracking tokens")


class TokenSigner:
    """Signs and checks tokens with one key (the HMAC state is keyed once, copied
    per token)."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("a tracking key needs at least 16 bytes")
        self._mac = hmac.new(key, digestmod=hashlib.sha256)

    def _tag(self, payload: bytes) -> bytes:
        mac = self._mac.copy()
        mac.update(payload)
        return mac.digest()[:TAG_BYTES]

    def encode(self, token: TrackingToken) -> str:
        """The token as URL-safe text.  Raises ValueError for an id out of range (a
        programming error, not remote input)."""
        return self.encode_payload(_payload(token))

    def encode_payload(self, payload: bytes) -> str:
        """:meth:`encode` of a token already laid out as bytes (:func:`_payload`)."""
        return _b64encode(payload + self._tag(payload))

    def decode(self, text: str, kind: TokenKind | None = None) -> TrackingToken | None:
        """The token ``text`` stands for; ``None`` when it is malformed, not in its
        canonical form, of another kind than ``kind``, or not signed by this key."""
        raw = _b64decode(text)
        if raw is None or len(raw) <= TAG_BYTES:
            return None
        payload, tag = raw[:-TAG_BYTES], raw[-TAG_BYTES:]
        if not hmac.compare_digest(tag, self._tag(payload)):
            return None
        token = _token(payload)
        if token is None or (kind is not None and token.kind != kind):
            return None
        return token


def encode_token(token: TrackingToken, key: bytes) -> str:
    return TokenSigner(key).encode(token)


def decode_token(text: str, key: bytes, kind: TokenKind | None = None) -> TrackingToken | None:
    return TokenSigner(key).decode(text, kind)


def click_target(token: TrackingToken | None, links: Sequence[str]) -> str | None:
    """Where a click token leads: the campaign's stored link at the token's index, or
    ``None`` (answer 404) for no token, another kind or an index past the list."""
    if token is None or token.kind != TokenKind.CLICK or token.link >= len(links):
        return None
    return links[token.link]


class CampaignLinks:
    """A campaign's list of tracked links: a URL gets the next index the first time it
    is seen and keeps it.  Personalised links (a value in the URL) get one entry per
    distinct URL; past ``limit`` entries a new URL is not tracked.  The list must be
    stored with the campaign before a message carrying a new index is sent (see
    :meth:`since`).  Safe to use from several rendering threads."""

    def __init__(self, existing: Sequence[str] = (), *, limit: int = MAX_LINKS) -> None:
        self._urls: list[str] = list(existing)
        self._index = {url: i for i, url in reversed(list(enumerate(self._urls)))}
        self._limit = limit
        self._lock = threading.Lock()

    def index(self, url: str) -> int | None:
        found = self._index.get(url)
        if found is not None:
            return found
        with self._lock:
            found = self._index.get(url)
            if found is None and len(self._urls) < self._limit:
                found = len(self._urls)
                self._urls.append(url)
                self._index[url] = found
            return found

    def urls(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._urls)

    def since(self, count: int) -> tuple[str, ...]:
        """The links added after the first ``count`` (what to append to the store)."""
        with self._lock:
            return tuple(self._urls[count:])

    def truncate(self, count: int) -> None:
        """Forget the links added after the first ``count`` (a copy of the list in
        another process that may not hand out new indexes)."""
        with self._lock:
            for url in self._urls[count:]:
                if self._index.get(url, -1) >= count:
                    del self._index[url]
            del self._urls[count:]

    def extend_to(self, urls: Sequence[str]) -> None:
        """Take the links of ``urls`` past our own (``urls`` starts with ours)."""
        with self._lock:
            for url in urls[len(self._urls):]:
                self._index.setdefault(url, len(self._urls))
                self._urls.append(url)

    def __len__(self) -> int:
        return len(self._urls)


@dataclass(frozen=True)
class CampaignTracker:
    """Builds the per-contact tracking hooks of one campaign."""

    public_url: str
    campaign_id: int
    signer: TokenSigner
    links: CampaignLinks
    _campaign: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        url = self.public_url.rstrip("/")
        if not url.lower().startswith(("http://", "https://")) or any(
                c.isspace() or c in "\"'<>" for c in url):
            raise ValueError(f"public URL must be an http(s) URL: {self.public_url!r}")
        object.__setattr__(self, "public_url", url)
        # The campaign's part of every token (_payload's layout), laid out once.
        object.__setattr__(self, "_campaign", varint.encode(self.campaign_id))

    def _prefix(self, kind: TokenKind, contact_id: int) -> bytes:
        return _KIND_BYTE[kind] + self._campaign + varint.encode(contact_id)

    def click_url(self, contact_id: int, url: str) -> str:
        """The tracked form of ``url``, or ``url`` itself once the link list is full."""
        return self.clicks(contact_id)(url)

    def clicks(self, contact_id: int) -> Callable[[str], str]:
        """:meth:`click_url` for one contact (its part of the tokens laid out once)."""
        prefix = self._prefix(TokenKind.CLICK, contact_id)
        index, encode = self.links.index, self.signer.encode_payload
        base = f"{self.public_url}{CLICK_PATH}"

        def click(url: str) -> str:
            link = index(url)
            if link is None:
                return url
            return base + encode(prefix + varint.encode(link))
        return click

    def open_url(self, contact_id: int) -> str:
        token = self.signer.encode_payload(self._prefix(TokenKind.OPEN, contact_id))
        return f"{self.public_url}{OPEN_PATH}{token}{OPEN_SUFFIX}"

    def unsubscribe_url(self, contact_id: int) -> str:
        token = self.signer.encode_payload(self._prefix(TokenKind.UNSUBSCRIBE, contact_id))
        return f"{self.public_url}{UNSUBSCRIBE_PATH}{token}"

    def for_contact(self, contact_id: int) -> Tracking:
        """The hooks :meth:`CompiledTemplate.render` takes for one contact."""
        return Tracking(links=self.clicks(contact_id),
                        open_pixel_url=self.open_url(contact_id))


def open_token_text(path_part: str) -> str | None:
    """The token in the last path segment of an open pixel URL (``<token>.gif``)."""
    if not path_part.endswith(OPEN_SUFFIX):
        return None
    return path_part[:-len(OPEN_SUFFIX)]


_KIND_BYTE = {kind: bytes((kind,)) for kind in TokenKind}
_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _b64encode(raw: bytes) -> str:
    """URL-safe base64 without padding (RFC 4648 5)."""
    return binascii.b2a_base64(raw, newline=False).translate(_URLSAFE).rstrip(b"=").decode(
        "ascii")


def _payload(token: TrackingToken) -> bytes:
    kind = TokenKind(token.kind)
    out = bytes([kind]) + varint.encode(token.campaign_id) + varint.encode(token.contact_id)
    if kind == TokenKind.CLICK:
        out += varint.encode(token.link)
    elif token.link != 0:
        raise ValueError("only a click token names a link")
    return out


def _token(payload: bytes) -> TrackingToken | None:
    try:
        kind = TokenKind(payload[0])
    except ValueError:
        return None
    fields: list[int] = []
    pos = 1
    want = 3 if kind == TokenKind.CLICK else 2
    for _ in range(want):
        read = varint.decode(payload, pos)
        if read is None:
            return None
        value, pos = read
        fields.append(value)
    if pos != len(payload):
        return None
    return TrackingToken(kind, fields[0], fields[1], fields[2] if want == 3 else 0)



def _b64decode(text: str) -> bytes | None:
    if not text or len(text) > MAX_TOKEN_CHARS or not text.isascii():
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    # Only the canonical spelling: no stray characters, no padding, no set spare bits.
    if _b64encode(raw) != text:
        return None
    return raw
