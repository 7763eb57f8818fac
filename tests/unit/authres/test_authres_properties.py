"""Properties of the Authentication-Results reader and writer (RFC 8601 2.2) over
generated input: any text gives a value, never an exception, and whatever we write
reads back as what we meant."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mailyard.authres import (
    AuthResults,
    MethodResult,
    ParseError,
    ResultProperty,
    claims_authserv_id,
    format_value,
    parse_value,
    strip_claimed,
)

ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
KEYWORD = st.builds(lambda head, body, tail: head + body + tail,
                    st.sampled_from("abcxyz"), st.text(ALNUM + "-", max_size=8),
                    st.sampled_from("az09"))
TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=30)
AUTHSERV_ID = st.lists(st.text(ALNUM, min_size=1, max_size=8), min_size=1,
                       max_size=4).map(".".join)

PROPERTY = st.builds(ResultProperty, KEYWORD, KEYWORD, TEXT.filter(bool))
RESULT = st.builds(
    MethodResult, KEYWORD.filter(lambda k: k != "none"), KEYWORD,
    st.lists(PROPERTY, max_size=3).map(tuple),
    reason=TEXT,
    comment=TEXT.map(lambda t: " ".join(t.translate({ord(c): None for c in "()\\"}).split())),
    version=st.sampled_from(["", "1", "2"]))
FIELD = st.builds(AuthResults, AUTHSERV_ID, st.lists(RESULT, max_size=4).map(tuple),
                  st.sampled_from(["", "1"]))


@settings(max_examples=200, deadline=None)
@given(FIELD)
def test_what_we_write_reads_back_the_same(field):
    assert parse_value(format_value(field)) == field


@settings(max_examples=500)
@given(st.text(max_size=200))
def test_any_text_gives_a_value(text):
    assert isinstance(parse_value(text), (AuthResults, ParseError))
    claims_authserv_id(text, ["mx.example.org"])


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_strip_never_loses_other_bytes(block):
    stripped, removed = strip_claimed(block, ["mx.example.org"])
    assert removed == 0 or len(stripped) < len(block)
    if removed == 0:
        assert stripped == block
