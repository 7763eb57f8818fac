"""Message bytes: structure, RFC 2047 encoding, list fields (RFC 2369, 2919, 8058),
and no header injection through contact data, subjects or campaign settings."""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import quopri
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailyard.bulk.templates.mime import (
    Envelope,
    HeaderRefused,
    ListHeaders,
    Mailbox,
    build_message,
    compose,
    quoted_printable,
)
from mailyard.bulk.templates.render import (
    CompiledTemplate,
    ContactFields,
    FailureKind,
    Part,
    RenderedContent,
    RenderFailure,
    TemplateSource,
)

SENDER = Mailbox("news@example.com", "Example News")
LISTS = ListHeaders(unsubscribe_url="https://example.com/u/tok", unsubscribe_mailto=
                    "mailto:unsubscribe+tok@example.com", list_id="news.example.com",
                    list_name="Example News", feedback_id="c42:u1:newsletter:example")
CONTENT = RenderedContent("Hello", "<p>Hi</p>", "Hi\n")


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def header_lines(data: bytes) -> list[str]:
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    return head.split("\r\n")


def field_names(data: bytes) -> list[str]:
    return [line.split(":", 1)[0] for line in header_lines(data) if not line[:1].isspace()]


BOB = Mailbox("bob@example.org", "Bob")


def build(content: RenderedContent = CONTENT, to: Mailbox = BOB, **kwargs: object) -> bytes:
    params: dict[str, object] = {"sender": SENDER, "to": to, "date": 1_767_225_600.0,
                                 "lists": LISTS, **kwargs}
    return build_message(content, **params).data  # type: ignore[arg-type]


def test_multipart_alternative_text_first() -> None:
    data = build(RenderedContent("Hello", "<p>Grüße</p>", "Grüße\n"))
    message = parse(data)
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert isinstance(parts[0], EmailMessage) and isinstance(parts[1], EmailMessage)
    assert parts[0].get_content().replace("\r\n", "\n") == "Grüße\n"
    assert parts[1].get_content().startswith("<p>Grüße</p>")
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    assert data.isascii()  # quoted-printable: 7-bit


def test_every_line_ends_in_crlf_and_is_short() -> None:
    long_html = "<p>" + "word " * 400 + "</p>"
    data = build(RenderedContent("s", long_html, "x " * 500))
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert max(len(line) for line in data.split(b"\r\n")) <= 78


def test_text_only_message() -> None:
    message = parse(build(RenderedContent("s", None, "plain\n")))
    assert message.get_content_type() == "text/plain"
    assert message.get_content().replace("\r\n", "\n") == "plain\n"


def test_list_fields_rfc_2369_2919_8058() -> None:
    message = parse(build())
    assert message["List-Unsubscribe"] == ("<https://example.com/u/tok>, "
                                           "<mailto:unsubscribe+tok@example.com>")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["List-Id"] == "Example News <news.example.com>"
    assert message["Feedback-ID"] == "c42:u1:newsletter:example"


def test_no_one_click_field_without_https_uri() -> None:
    data = build(lists=ListHeaders(unsubscribe_mailto="mailto:u@example.com"))
    assert "List-Unsubscribe-Post" not in field_names(data)


def test_date_and_message_id() -> None:
    message = parse(build(message_id="<c1.abc@example.com>"))
    assert message["Date"] == "Thu, 01 Jan 2026 00:00:00 +0000"
    assert message["Message-ID"] == "<c1.abc@example.com>"
    generated = parse(build())["Message-ID"]
    assert generated.startswith("<") and generated.endswith("@example.com>")


def test_non_ascii_subject_and_names_are_rfc_2047_encoded() -> None:
    subject = ("Grüße an Jürgen – ein sehr langer Betreff, der gefaltet werden muss, "
               "weil er lang ist")
    data = build(RenderedContent(subject, None, "x"),
                 to=Mailbox("j@example.org", "Jürgen Müller"))
    assert data.split(b"\r\n\r\n")[0].isascii()
    assert b"=?utf-8?" in data
    message = parse(data)
    assert message["Subject"] == subject
    assert message["To"].addresses[0].display_name == "Jürgen Müller"
    assert message["From"].addresses[0].display_name == "Example News"


@pytest.mark.parametrize("name", [
    'Bob "the builder", Jr.', "O'Neil (admin)", "a\\b", "<script>", "x@y.z",
])
def test_ascii_names_with_specials_are_quoted(name: str) -> None:
    message = parse(build(to=Mailbox("bob@example.org", name)))
    assert message["To"].addresses[0].display_name == name
    assert message["To"].addresses[0].addr_spec == "bob@example.org"


@pytest.mark.parametrize("name", [
    "Eve\r\nBcc: victim@example.net",
    "Eve\nBcc: victim@example.net",
    "Eve\rBcc: victim@example.net",
    "Eve\u2028Bcc: victim@example.net",
    "Évè\r\nBcc: victim@example.net",
])
def test_names_cannot_inject_header_fields(name: str) -> None:
    data = build(to=Mailbox("eve@example.org", name))
    assert "Bcc" not in field_names(data)
    assert parse(data)["Bcc"] is None


def test_subject_cannot_inject_header_fields() -> None:
    template = CompiledTemplate(TemplateSource(subject="{{ attributes.s }}", text="x"))
    contact = ContactFields("a@example.org", "A",
                            {"s": "Hi\r\nBcc: victim@example.net\r\n\r\nbody"})
    built = compose(template, contact, Envelope(SENDER, 0.0, lists=LISTS),
                    unsubscribe_url="https://example.com/u/tok")
    assert not isinstance(built, RenderFailure)
    assert "Bcc" not in field_names(built.data)
    assert parse(built.data)["Subject"] == "Hi Bcc: victim@example.net body"


@pytest.mark.parametrize("address", [
    "bob@example.org\r\nBcc: victim@example.net", "bob@example.org>, <x@y.z",
    "bob smith@example.org", "bob", "@example.org", "bob@", "bob@exa mple.org",
    "bob@example.org\n",
])
def test_bad_contact_addresses_fail_that_contact(address: str) -> None:
    template = CompiledTemplate(TemplateSource(subject="s", text="x"))
    result = compose(template, ContactFields(address, "B"), Envelope(SENDER, 0.0),
                     unsubscribe_url="https://example.com/u")
    assert isinstance(result, RenderFailure)
    assert result.part is Part.HEADERS and result.kind is FailureKind.HEADER


def test_utf8_address_marks_the_message_smtputf8() -> None:
    built = build_message(CONTENT, sender=SENDER, to=Mailbox("jürgen@example.org"), date=0)
    assert built.smtputf8
    assert "jürgen@example.org".encode() in built.data


@pytest.mark.parametrize("lists", [
    ListHeaders(unsubscribe_url="https://example.com/u\r\nBcc: x@y.z"),
    ListHeaders(unsubscribe_url="http://example.com/u"),
    ListHeaders(unsubscribe_url="https://example.com/u>, <https://evil.example"),
    ListHeaders(unsubscribe_mailto="https://example.com/u"),
    ListHeaders(list_id="news example com"),
    ListHeaders(list_id="news.example.com>\r\nBcc: x@y.z"),
    ListHeaders(feedback_id="a:b\r\nBcc: x@y.z"),
])
def test_bad_list_fields_are_refused(lists: ListHeaders) -> None:
    with pytest.raises(HeaderRefused):
        build(lists=lists)


def test_list_name_line_breaks_become_spaces() -> None:
    data = build(lists=ListHeaders(list_id="n.example.com", list_name="News\r\nBcc: x@y.z"))
    assert "Bcc" not in field_names(data)


@pytest.mark.parametrize("name,value", [
    ("Bcc", "x@y.z"), ("Subject", "again"), ("X-Tag", "a\r\nBcc: x@y.z"),
    ("X Tag", "v"), ("X-Tag:", "v"), ("Content-Type", "text/plain"),
])
def test_extra_fields_are_checked(name: str, value: str) -> None:
    with pytest.raises(HeaderRefused):
        build(extra=[(name, value)])


def test_extra_field_added() -> None:
    assert parse(build(extra=[("X-Campaign", "spring-sale")]))["X-Campaign"] == "spring-sale"


def test_bad_message_id_refused() -> None:
    with pytest.raises(HeaderRefused):
        build(message_id="<a@b>\r\nBcc: x@y.z")


def test_quoted_printable_rfc_2045_6_7() -> None:
    encoded = quoted_printable("a=b \nline\r\nü")
    assert encoded == b"a=3Db=20\r\nline\r\n=C3=BC\r\n"


@settings(max_examples=300)
@given(st.lists(st.sampled_from(list(" \t.=aZ\n\r\x0b\x0c\x85\u2028ü€🎉") + ["x" * 80]),
                max_size=60).map("".join))
def test_quoted_printable_line_by_line_is_the_whole_encoding(text: str) -> None:
    # Lines are encoded one by one and remembered by their text; the result must be
    # the encoding of the whole text (RFC 2045 6.7: soft breaks under 76 characters,
    # trailing blanks encoded, "." alone on a line encoded), called twice so the
    # second call answers from the remembered lines.
    lf = text.replace("\r\n", "\n").replace("\r", "\n")
    lf += "" if lf.endswith("\n") else "\n"
    whole = binascii.b2a_qp(lf.encode("utf-8"), istext=True).replace(b"\n", b"\r\n")
    assert quoted_printable(text) == whole
    assert quoted_printable(text) == whole
    assert quopri.decodestring(whole.replace(b"\r\n", b"\n")).decode("utf-8") == lf


@settings(max_examples=500)
@given(st.lists(st.sampled_from(list(" .=aZ3D<>\"") + ["x" * 70, "=" * 30]),
                min_size=1, max_size=80).map("".join))
def test_quoted_printable_of_plain_lines_is_b2a_qp_rfc_2045_6_7(line: str) -> None:
    # Line by line (with the cache of lines) the same bytes as b2a_qp: soft breaks
    # (rule 5: lines of at most 76 characters) and "=" (rule 1) included.
    expected = binascii.b2a_qp(f"{line}\n".encode(), istext=True).replace(b"\n", b"\r\n")
    assert quoted_printable(line) == expected


def test_compose_reports_render_failure() -> None:
    template = CompiledTemplate(TemplateSource(subject="{{ nope }}", text="x"))
    result = compose(template, ContactFields("a@example.org"), Envelope(SENDER, 0.0),
                     unsubscribe_url="https://example.com/u")
    assert isinstance(result, RenderFailure) and result.part is Part.SUBJECT


def test_encoded_words_keep_characters_whole_rfc_2047_5() -> None:
    from mailyard.bulk.templates.mime import encoded_words

    text = "Grüße 🎉" * 20
    words = encoded_words(text).split("\r\n ")
    assert len(words) > 1
    assert all(len(w) <= 75 and w.startswith("=?utf-8?b?") for w in words)
    decoded = b"".join(base64.b64decode(w[10:-2]) for w in words)
    for w in words:  # each word decodes on its own: no sequence cut in two
        base64.b64decode(w[10:-2]).decode("utf-8")
    assert decoded.decode("utf-8") == text
    subject = parse(build(RenderedContent(text, None, "x")))["Subject"]
    assert subject == text


def test_no_header_line_over_998_characters_rfc_5322_2_1_1() -> None:
    long_word = "x" * 2000
    data = build(RenderedContent(f"see {long_word}", None, "x"),
                 to=Mailbox("b@example.org", long_word), extra=[("X-Long", long_word)])
    head = data.split(b"\r\n\r\n", 1)[0]
    assert max(len(line) for line in head.split(b"\r\n")) <= 998
    message = parse(data)
    assert message["Subject"] == f"see {long_word}"
    # RFC 2047 6.2: white space between encoded-words is not part of the text (Python's
    # address parser keeps it, so it is dropped here).
    assert message["To"].addresses[0].display_name.replace(" ", "") == long_word
    with pytest.raises(HeaderRefused):
        build(lists=ListHeaders(unsubscribe_url="https://example.com/" + long_word))


def test_quoted_printable_keeps_few_lines_in_memory() -> None:
    # The remembered lines are bounded in number and characters: a long line is encoded
    # and not kept, and unique lines (the values of many contacts) empty the map when
    # it fills; the encoding stays that of the whole text.
    from mailyard.bulk.templates import mime

    long_line = "é=" * (mime._QP_LINE_LONGEST // 2 + 1)
    assert quopri.decodestring(quoted_printable(long_line).replace(b"\r\n", b"\n")) == \
        f"{long_line}\n".encode()
    assert long_line not in mime._QP_LINES
    for i in range(mime._QP_LINES_MAX + 10):
        quoted_printable(f"contact {i}\nthe same line")
        assert len(mime._QP_LINES) <= mime._QP_LINES_MAX
        assert mime._qp_cached_chars <= mime._QP_LINES_CHARS + mime._QP_LINE_LONGEST
    assert "the same line" in mime._QP_LINES
