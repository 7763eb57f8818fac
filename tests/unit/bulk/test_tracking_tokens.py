"""Tracking and unsubscribe tokens: round trip, forgery and tampering give None, the
click target comes from the stored link list only; the link rewriter as the templates
call it; the transparent GIF."""

from __future__ import annotations

import base64
import re
import string
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailyard.bulk.templates.render import (
    CompiledTemplate,
    ContactFields,
    RenderedContent,
    TemplateSource,
)
from mailyard.bulk.tracking import (
    MAX_ID,
    MAX_TOKEN_CHARS,
    TAG_BYTES,
    TRANSPARENT_GIF,
    CampaignLinks,
    CampaignTracker,
    TokenKind,
    TokenSigner,
    TrackingToken,
    click_target,
    decode_token,
    encode_token,
    open_token_text,
    tracking_key,
)
from mailyard.daemon.secret import derive_key

SECRET = bytes(range(32))
KEY = tracking_key(SECRET)
SIGNER = TokenSigner(KEY)
B64URL = string.ascii_letters + string.digits + "-_"

TOKENS = [
    TrackingToken(TokenKind.OPEN, 1, 2),
    TrackingToken(TokenKind.CLICK, 7, 123456, 0),
    TrackingToken(TokenKind.CLICK, 0, 0, 9999),
    TrackingToken(TokenKind.UNSUBSCRIBE, 42, 1 << 40),
    TrackingToken(TokenKind.CLICK, MAX_ID, MAX_ID, MAX_ID),
]


@pytest.mark.parametrize("token", TOKENS)
def test_round_trip(token: TrackingToken) -> None:
    text = SIGNER.encode(token)
    assert set(text) <= set(B64URL)
    assert len(text) <= MAX_TOKEN_CHARS
    assert SIGNER.decode(text) == token
    assert SIGNER.decode(text, token.kind) == token
    assert decode_token(encode_token(token, KEY), KEY) == token


def test_key_is_purpose_specific() -> None:
    assert derive_key(SECRET, "tracking tokens") == KEY
    assert derive_key(SECRET, "verp") != KEY
    assert len(KEY) == 32


def test_short_tokens_for_small_ids() -> None:
    # 1 kind byte + 3 one-byte varints + 12-byte tag = 16 bytes = 22 characters
    assert len(SIGNER.encode(TrackingToken(TokenKind.CLICK, 5, 6, 7))) == 22


@pytest.mark.parametrize("token", TOKENS[:4])
def test_every_character_changed_is_refused(token: TrackingToken) -> None:
    text = SIGNER.encode(token)
    for pos in range(len(text)):
        for replacement in B64URL:
            if replacement == text[pos]:
                continue
            forged = text[:pos] + replacement + text[pos + 1:]
            assert SIGNER.decode(forged) is None, (pos, replacement)


@pytest.mark.parametrize("token", TOKENS[:4])
def test_every_bit_of_the_bytes_flipped_is_refused(token: TrackingToken) -> None:
    raw = base64.urlsafe_b64decode(SIGNER.encode(token) + "==")
    for pos in range(len(raw)):
        for bit in range(8):
            changed = bytearray(raw)
            changed[pos] ^= 1 << bit
            text = base64.urlsafe_b64encode(bytes(changed)).rstrip(b"=").decode()
            assert SIGNER.decode(text) is None


def test_truncated_extended_and_padded_tokens_are_refused() -> None:
    text = SIGNER.encode(TOKENS[1])
    for cut in range(len(text)):
        assert SIGNER.decode(text[:cut]) is None
    for extra in ("A", "=", "==", "\n", " ", "%3D", "é", "\x00"):
        assert SIGNER.decode(text + extra) is None
        assert SIGNER.decode(extra + text) is None
    # the standard alphabet's + and / are not the URL-safe one's - and _
    standard = SIGNER.encode(TrackingToken(TokenKind.CLICK, 0xFBEF, 0xFBFF, 0xFFFF))
    assert "_" in standard
    for a, b in (("-", "+"), ("_", "/")):
        if a in standard:
            assert SIGNER.decode(standard.replace(a, b)) is None


def test_other_key_is_refused() -> None:
    other = TokenSigner(tracking_key(bytes(32)))
    for token in TOKENS:
        assert other.decode(SIGNER.encode(token)) is None
    verp_signer = TokenSigner(derive_key(SECRET, "verp"))
    assert verp_signer.decode(SIGNER.encode(TOKENS[0])) is None


def test_wrong_kind_is_refused() -> None:
    open_token = SIGNER.encode(TrackingToken(TokenKind.OPEN, 1, 2))
    assert SIGNER.decode(open_token, TokenKind.CLICK) is None
    assert SIGNER.decode(open_token, TokenKind.UNSUBSCRIBE) is None
    unsub = SIGNER.encode(TrackingToken(TokenKind.UNSUBSCRIBE, 1, 2))
    assert SIGNER.decode(unsub, TokenKind.OPEN) is None
    # an open token is no click (even for link 0), so it leads nowhere
    assert click_target(SIGNER.decode(open_token), ["https://a.example/"]) is None


def _signed(payload: bytes) -> str:
    import hashlib
    import hmac
    tag = hmac.new(KEY, payload, hashlib.sha256).digest()[:TAG_BYTES]
    return base64.urlsafe_b64encode(payload + tag).rstrip(b"=").decode()


@pytest.mark.parametrize("payload", [
    b"\x00\x01\x02",  # unknown kind
    b"\x09\x01\x02",
    b"\x01\x01",  # an open without a contact
    b"\x01\x01\x02\x03",  # an open with a link
    b"\x02\x01\x02",  # a click without a link
    b"\x01\x81\x00\x02",  # a varint not in its shortest form
    b"\x01" + b"\xff" * 9 + b"\x01\x02",  # an id over 2**63-1
    b"\x01\x80",  # a varint cut short
    b"",
])
def test_signed_but_malformed_payloads_are_refused(payload: bytes) -> None:
    assert SIGNER.decode(_signed(payload)) is None


@pytest.mark.parametrize("text", ["", "A" * (MAX_TOKEN_CHARS + 1), "a" * 10_000,
                                  "../../etc/passwd", "<script>", "AAAA=AAAA", "\u0660" * 22])
def test_garbage_is_refused(text: str) -> None:
    assert SIGNER.decode(text) is None


def test_ids_out_of_range_are_a_programming_error() -> None:
    with pytest.raises(ValueError):
        SIGNER.encode(TrackingToken(TokenKind.OPEN, -1, 2))
    with pytest.raises(ValueError):
        SIGNER.encode(TrackingToken(TokenKind.OPEN, 1, MAX_ID + 1))
    with pytest.raises(ValueError):
        SIGNER.encode(TrackingToken(TokenKind.OPEN, 1, 2, link=3))
    with pytest.raises(ValueError):
        TokenSigner(b"short")


def test_click_target_comes_from_the_link_list() -> None:
    links = ["https://a.example/one", "https://b.example/two"]
    token = SIGNER.decode(SIGNER.encode(TrackingToken(TokenKind.CLICK, 3, 4, 1)))
    assert click_target(token, links) == "https://b.example/two"
    past = SIGNER.decode(SIGNER.encode(TrackingToken(TokenKind.CLICK, 3, 4, 2)))
    assert click_target(past, links) is None
    assert click_target(None, links) is None


def test_campaign_links_keep_indexes_and_limit() -> None:
    links = CampaignLinks(["https://a.example/", "https://a.example/"], limit=3)
    assert links.index("https://a.example/") == 0
    assert links.index("https://b.example/") == 2
    assert links.index("https://c.example/") is None  # full
    assert links.index("https://b.example/") == 2
    assert links.urls() == ("https://a.example/", "https://a.example/", "https://b.example/")
    assert links.since(2) == ("https://b.example/",)


def test_campaign_links_from_threads_agree() -> None:
    links = CampaignLinks()
    urls = [f"https://x.example/{i % 50}" for i in range(2000)]
    seen: list[tuple[str, int | None]] = []
    lock = threading.Lock()

    def work(part: list[str]) -> None:
        for url in part:
            found = links.index(url)
            with lock:
                seen.append((url, found))

    threads = [threading.Thread(target=work, args=(urls[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stored = links.urls()
    assert len(stored) == 50 == len(set(stored))
    assert all(stored[index] == url for url, index in seen if index is not None)


def test_tracker_urls_and_template_hooks() -> None:
    tracker = CampaignTracker("https://news.example.org/", 9, SIGNER, CampaignLinks())
    template = CompiledTemplate(TemplateSource(
        subject="Hi",
        html='<html><body><p><a href="https://shop.example/?a=1&amp;b={{ name }}">Shop</a>'
             '<a href="mailto:x@example.org">mail</a>'
             '<a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>'))
    contact_id = 31
    rendered = template.render(ContactFields("ann@example.net", "Ann"),
                               unsubscribe_url=tracker.unsubscribe_url(contact_id),
                               tracking=tracker.for_contact(contact_id))
    assert isinstance(rendered, RenderedContent)
    html = rendered.html
    assert html is not None
    clicks = re.findall(r'href="https://news\.example\.org/t/c/([A-Za-z0-9_-]+)"', html)
    assert len(clicks) == 2  # the shop link and the (http) unsubscribe link; not mailto
    assert 'href="mailto:x@example.org"' in html
    assert tracker.links.urls()[0] == "https://shop.example/?a=1&b=Ann"
    first = SIGNER.decode(clicks[0], TokenKind.CLICK)
    assert first == TrackingToken(TokenKind.CLICK, 9, contact_id, 0)
    assert click_target(first, tracker.links.urls()) == "https://shop.example/?a=1&b=Ann"
    pixel = re.search(r'<img src="https://news\.example\.org/t/o/([A-Za-z0-9_-]+)\.gif"',
                      html)
    assert pixel is not None
    assert SIGNER.decode(pixel.group(1), TokenKind.OPEN) == TrackingToken(
        TokenKind.OPEN, 9, contact_id)
    unsub = tracker.unsubscribe_url(contact_id).rsplit("/", 1)[1]
    assert SIGNER.decode(unsub, TokenKind.UNSUBSCRIBE) == TrackingToken(
        TokenKind.UNSUBSCRIBE, 9, contact_id)


def test_full_link_list_leaves_links_untracked() -> None:
    tracker = CampaignTracker("https://t.example", 1, SIGNER, CampaignLinks(limit=1))
    assert tracker.click_url(1, "https://a.example/").startswith("https://t.example/t/c/")
    assert tracker.click_url(1, "https://b.example/") == "https://b.example/"


@pytest.mark.parametrize("url", ["ftp://x.example", "news.example", 'https://x.example/"><a',
                                 "https://x .example", "javascript:alert(1)"])
def test_public_url_must_be_http(url: str) -> None:
    with pytest.raises(ValueError):
        CampaignTracker(url, 1, SIGNER, CampaignLinks())


def test_open_token_text() -> None:
    assert open_token_text("abc.gif") == "abc"
    assert open_token_text("abc.png") is None
    assert open_token_text("abc") is None


def test_transparent_gif() -> None:
    gif = TRANSPARENT_GIF
    assert len(gif) == 43
    assert gif[:6] == b"GIF89a"
    assert int.from_bytes(gif[6:8], "little") == 1 == int.from_bytes(gif[8:10], "little")
    assert gif[10] & 0x80  # a global colour table, of 2 ** ((flags & 7) + 1) = 2 entries
    table_end = 13 + 3 * 2 ** ((gif[10] & 7) + 1)
    gce = gif[table_end:table_end + 8]
    assert gce[:3] == b"\x21\xf9\x04" and gce[3] & 1 and gce[6] == 0  # colour 0 transparent
    image = gif[table_end + 8:]
    assert image[0] == 0x2C and image[-1] == 0x3B


PROPERTY = settings(max_examples=200, deadline=None)
IDS = st.integers(min_value=0, max_value=MAX_ID)


@PROPERTY
@given(st.sampled_from(list(TokenKind)), IDS, IDS, IDS)
def test_any_ids_round_trip(kind: TokenKind, campaign: int, contact: int, link: int) -> None:
    token = TrackingToken(kind, campaign, contact, link if kind == TokenKind.CLICK else 0)
    text = SIGNER.encode(token)
    assert len(text) <= MAX_TOKEN_CHARS
    assert SIGNER.decode(text, kind) == token


@PROPERTY
@given(st.text(max_size=80) | st.text(alphabet=B64URL, min_size=20, max_size=60))
def test_any_text_decodes_to_none_without_raising(text: str) -> None:
    assert SIGNER.decode(text) is None


@pytest.mark.parametrize("token", [
    TrackingToken(TokenKind.CLICK, 7, 123456, 0), TrackingToken(TokenKind.CLICK, 0, 0, 9999),
    TrackingToken(TokenKind.CLICK, MAX_ID, MAX_ID, 300),
    TrackingToken(TokenKind.CLICK, 127, 128, 0), TrackingToken(TokenKind.CLICK, 128, 127, 1)])
def test_tracker_urls_are_the_tokens_encode_writes(token: TrackingToken) -> None:
    # The tracker lays a contact's part of its tokens out once; the result must be
    # exactly the canonical token of encode_token, whatever the ids' varint lengths.
    links = CampaignLinks([f"https://shop.example/{i}" for i in range(token.link + 1)])
    tracker = CampaignTracker("https://news.example.org", token.campaign_id, SIGNER, links)
    click = tracker.clicks(token.contact_id)
    assert click(f"https://shop.example/{token.link}") == (
        f"https://news.example.org/t/c/{SIGNER.encode(token)}")
    for kind, url in ((TokenKind.OPEN, tracker.open_url(token.contact_id)),
                      (TokenKind.UNSUBSCRIBE, tracker.unsubscribe_url(token.contact_id))):
        same = TrackingToken(kind, token.campaign_id, token.contact_id)
        assert SIGNER.encode(same) in url
        assert SIGNER.decode(url.rsplit("/", 1)[1].removesuffix(".gif"), kind) == same


@settings(max_examples=200)
@given(st.binary(min_size=16, max_size=200), st.binary(max_size=40))
def test_tag_is_hmac_sha256_rfc_2104(key: bytes, payload: bytes) -> None:
    # The tag is the truncated HMAC-SHA256 (RFC 2104) of the payload, whatever the
    # key's length (keys longer than the 64-byte block are hashed first).
    import hashlib
    import hmac

    from mailyard.bulk.tracking import TAG_BYTES, TokenSigner

    assert TokenSigner(key)._tag(payload) == \
        hmac.new(key, payload, hashlib.sha256).digest()[:TAG_BYTES]

