"""Per-contact rendering: variables, strict undefined values, CSS inlining, the text
part, link and pixel hooks, and the shared skeleton giving what a render of each
contact on its own gives."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailyard.bulk.templates.render import (
    RESERVED_NAMES,
    CompiledTemplate,
    ContactFields,
    FailureKind,
    Part,
    RenderedContent,
    RenderFailure,
    TemplateSource,
    TemplateSyntaxProblem,
    Tracking,
)

HTML = """<html><head><style>p { color: #333 } .btn { background: #06c }</style></head>
<body><p>Hello {{ name }},</p>
<p>Your plan: {{ attributes.plan }}{% if attributes.plan == "pro" %} (thank you!){% endif %}</p>
<table>{% for item in items %}<tr><td>{{ item }}</td></tr>{% endfor %}</table>
<a class="btn" href="https://shop.example.com/?u={{ address|urlencode }}&amp;c=1">Shop</a>
<a href="mailto:help@example.com">Help</a>
<a href="{{ view_online_url }}">View online</a>
<a href="{{ unsubscribe_url }}">Unsubscribe</a>
</body></html>"""

ALICE = ContactFields("alice@example.org", "Alice <A&B>", {"plan": "pro"})
BOB = ContactFields("bob@example.org", "Bob", {"plan": "free"})
CAROL = ContactFields("carol@example.org", "Carol", {})


def compiled(html: str = HTML, text: str | None = None,
             subject: str = "News for {{ name }}") -> CompiledTemplate:
    return CompiledTemplate(TemplateSource(subject=subject, html=html, text=text))


def render(template: CompiledTemplate, contact: ContactFields,
           tracking: Tracking | None = None, **variables: object) -> RenderedContent:
    result = template.render(contact, unsubscribe_url=f"https://ex.com/u/{contact.name}",
                             view_online_url="https://ex.com/v/1", tracking=tracking,
                             variables={"items": ["one", "two"], **variables})
    assert isinstance(result, RenderedContent), result
    return result


def test_values_are_escaped_in_html_and_plain_in_text() -> None:
    result = render(compiled(), ALICE)
    assert "Hello Alice &lt;A&amp;B&gt;," in (result.html or "")
    assert "Hello Alice <A&B>," in result.text
    assert result.subject == "News for Alice <A&B>"


def test_css_is_inlined_and_style_rules_removed() -> None:
    html = render(compiled(), BOB).html or ""
    assert '<p style="color: #333;">Hello Bob,</p>' in html
    assert "background: #06c" in html
    assert "<style>" not in html


def test_text_part_is_made_from_the_html() -> None:
    text = render(compiled(), BOB).text
    assert "Your plan: free" in text
    assert "[Unsubscribe](https://ex.com/u/Bob)" in text
    assert "one" in text and "two" in text
    assert "<" not in text.replace("<A", "")


def test_a_given_text_body_is_used_as_it_is() -> None:
    template = compiled(text="Hi {{ name }} <{{ unsubscribe_url }}>")
    assert render(template, ALICE).text == "Hi Alice <A&B> <https://ex.com/u/Alice <A&B>>"


def test_missing_value_fails_for_that_contact_only() -> None:
    template = compiled()
    results = [template.render(c, unsubscribe_url="https://ex.com/u",
                               variables={"items": []}) for c in (ALICE, CAROL, BOB)]
    assert isinstance(results[0], RenderedContent)
    assert isinstance(results[2], RenderedContent)
    failure = results[1]
    assert isinstance(failure, RenderFailure)
    assert failure.part is Part.HTML and failure.kind is FailureKind.MISSING_VALUE
    assert "plan" in failure.message and failure.line == 3
    assert failure.to_dict()["kind"] == "missing-value"


def test_missing_variable_is_named() -> None:
    template = compiled(subject="Hi {{ firstname }}")
    failure = template.render(BOB, unsubscribe_url="https://ex.com/u")
    assert isinstance(failure, RenderFailure)
    assert failure.part is Part.SUBJECT and "'firstname' is undefined" in failure.message


def test_default_and_defined_still_work_with_strict_values() -> None:
    template = compiled(html="<p>{{ attributes.plan|default('basic') }}"
                       "{% if attributes.city is defined %}!{% endif %}</p>")
    assert "<p>basic</p>" in (render(template, CAROL).html or "")


def test_error_raised_by_template_code_is_a_failure() -> None:
    template = compiled(html="<p>{{ 1 / attributes.n }}</p>")
    failure = template.render(ContactFields("x@example.org", "", {"n": 0}),
                              unsubscribe_url="https://ex.com/u")
    assert isinstance(failure, RenderFailure)
    assert failure.kind is FailureKind.ERROR and "ZeroDivisionError" in failure.message


def test_reserved_names_cannot_be_given() -> None:
    with pytest.raises(ValueError, match="unsubscribe_url"):
        compiled().render(BOB, unsubscribe_url="https://ex.com/u",
                          variables={"unsubscribe_url": "https://evil.example/"})
    assert "contact" in RESERVED_NAMES


def test_syntax_errors_are_reported_at_compile_time_with_line() -> None:
    with pytest.raises(TemplateSyntaxProblem) as caught:
        compiled(html="<p>\n{% if x %}\n</p>")
    assert caught.value.part is Part.HTML and caught.value.line is not None


@pytest.mark.parametrize("subject", ["{{" * 1000, "{{" + "(" * 300 + "1" + ")" * 300 + "}}",
                                     "{{" + "-" * 3000 + "1 }}"], ids=["braces", "parens", "minus"])
def test_deep_nesting_is_a_syntax_problem(subject: str) -> None:
    """The parser and compiler recurse once per level: a deep template is refused as
    a template problem (an HTTP 422, a CLI message), not a RecursionError."""
    with pytest.raises(TemplateSyntaxProblem, match="nested too deeply") as caught:
        compiled(subject=subject)
    assert caught.value.part is Part.SUBJECT


def test_a_template_needs_a_body() -> None:
    with pytest.raises(TemplateSyntaxProblem):
        CompiledTemplate(TemplateSource(subject="s"))


def test_subject_line_breaks_become_spaces() -> None:
    template = compiled(subject="{{ name }}\r\nBcc: victim@example.com")
    evil = ContactFields("e@example.org", "Eve\r\nX-Evil: 1", {"plan": "x"})
    subject = render(template, evil).subject
    assert "\r" not in subject and "\n" not in subject
    assert subject == "Eve X-Evil: 1 Bcc: victim@example.com"


def test_links_are_rewritten_when_tracking_is_on() -> None:
    seen: list[str] = []

    def track(url: str) -> str:
        seen.append(url)
        return f"https://t.example.com/c/{len(seen)}?to={url}"

    html = render(compiled(), ALICE, Tracking(links=track)).html or ""
    assert seen == ["https://shop.example.com/?u=alice%40example.org&c=1",
                    "https://ex.com/v/1", "https://ex.com/u/Alice <A&B>"]
    assert 'href="https://t.example.com/c/1?to=https://shop.example.com/?u=alice%40' \
           'example.org&amp;c=1"' in html
    assert 'href="mailto:help@example.com"' in html  # only http(s) links are tracked
    assert "&lt;A&amp;B&gt;" in html


def test_links_stay_when_tracking_is_off() -> None:
    html = render(compiled(), ALICE).html or ""
    assert 'href="https://shop.example.com/?u=alice%40example.org&amp;c=1"' in html


def test_open_pixel_goes_before_the_end_of_body() -> None:
    html = render(compiled(), BOB, Tracking(open_pixel_url="https://t.example.com/o/1?a&b")
                  ).html or ""
    assert html.endswith('<img src="https://t.example.com/o/1?a&amp;b" width="1" '
                         'height="1" alt="" style="display:block;width:1px;height:1px;'
                         'border:0"></body></html>')


def _direct(template: CompiledTemplate) -> CompiledTemplate:
    assert template.html is not None
    template.html.capturing = True  # force the per-contact path
    return template


CONTACTS = [ALICE, BOB, CAROL.__class__("d@example.org", "  many   spaces\there ",
                                        {"plan": "pro"}),
            ContactFields("e@example.org", "\ue0000\ue001 marker", {"plan": "x"})]


@pytest.mark.parametrize("contact", CONTACTS)
def test_skeleton_gives_what_a_direct_render_gives(contact: ContactFields) -> None:
    tracking = Tracking(links=lambda u: "https://t.example.com/?u=" + u,
                        open_pixel_url="https://t.example.com/o")
    shared = render(compiled(), contact, tracking)
    alone = render(_direct(compiled()), contact, tracking)
    assert shared == alone


def test_contacts_on_the_same_path_share_one_skeleton() -> None:
    template = compiled()
    for contact in (ALICE, ContactFields("z@example.org", "Zed", {"plan": "pro"}), ALICE):
        render(template, contact)
    assert template.finisher.prepared == 1
    render(template, BOB)  # another branch of the if: another skeleton
    assert template.finisher.prepared == 2


def test_css_that_depends_on_a_value_is_processed_per_contact() -> None:
    template = compiled(html="<html><head><style>p { color: {{ attributes.color }} }"
                        "</style></head><body><p>{{ name }}</p></body></html>")
    red = render(template, ContactFields("r@example.org", "R", {"color": "red"}))
    blue = render(template, ContactFields("b@example.org", "B", {"color": "blue"}))
    assert '<p style="color: red;">R</p>' in (red.html or "")
    assert '<p style="color: blue;">B</p>' in (blue.html or "")


def test_filter_blocks_see_real_values() -> None:
    template = compiled(html="<p>{% filter upper %}{{ name }}{% endfilter %}</p>"
                        "{% set n %}{{ name }}{% endset %}{% if n == 'Bob' %}yes{% endif %}")
    assert "<p>BOB</p>yes" in (render(template, BOB).html or "")


def test_markup_values_are_not_escaped() -> None:
    template = compiled(html="<div>{{ block|safe }}</div>")
    html = render(template, BOB, block="<b>bold</b>").html or ""
    assert "<div><b>bold</b></div>" in html


def test_text_only_template() -> None:
    template = CompiledTemplate(TemplateSource(subject="s", text="Hi {{ name }}"))
    result = render(template, BOB)
    assert result.html is None and result.text == "Hi Bob"


def test_skeleton_cache_is_bounded() -> None:
    template = compiled(html="<p>{% for i in range(attributes.n) %}{{ i }}{% endfor %}</p>")
    template.finisher.cache_size = 2
    for n in (1, 2, 3, 1):
        result = render(template, ContactFields("n@example.org", "N", {"n": n}))
        assert "<p>" + "".join(str(i) for i in range(n)) + "</p>" in (result.html or "")
    assert template.finisher.prepared == 4  # 1 was evicted by 3 and prepared again


def test_one_template_renders_in_several_threads() -> None:
    from concurrent.futures import ThreadPoolExecutor

    template = compiled()
    people = [ContactFields(f"p{i}@example.org", f"P{i}", {"plan": "pro" if i % 2 else "free"})
              for i in range(200)]
    serial = [render(compiled(), p) for p in people]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda p: render(template, p), people))
    assert parallel == serial


def test_a_template_over_the_source_limit_is_refused() -> None:
    from mailyard.bulk.templates.sandbox import TemplateLimits

    with pytest.raises(TemplateSyntaxProblem, match="longer than 100"):
        CompiledTemplate(TemplateSource(subject="s", html="x" * 101),
                         TemplateLimits(max_source_chars=100))


def test_a_campaign_goes_on_past_failing_contacts() -> None:
    from mailyard.bulk.templates.mime import BuiltMessage, Envelope, Mailbox, compose

    template = compiled()
    people = [ALICE, CAROL, ContactFields("bad address@example.org", "X", {"plan": "pro"}),
              BOB]
    results = [compose(template, p, Envelope(Mailbox("news@example.com"), 0.0),
                       unsubscribe_url="https://ex.com/u", variables={"items": []})
               for p in people]
    assert [type(r).__name__ for r in results] == ["BuiltMessage", "RenderFailure",
                                                   "RenderFailure", "BuiltMessage"]
    assert isinstance(results[0], BuiltMessage) and isinstance(results[3], BuiltMessage)
    failures = [r for r in results if isinstance(r, RenderFailure)]
    assert [f.part for f in failures] == [Part.HTML, Part.HEADERS]
    assert "bad address" in str(failures[1])


def test_literal_links_are_tracked_unescaped_and_written_escaped() -> None:
    # A template's own links (no value in them) are unescaped once, when the skeleton
    # is prepared: the rewriter gets the URL a browser would follow (&amp; is &).
    template = compiled(html='<html><body><a href="https://shop.example.com/?a=1&amp;b=2">'
                        'a</a><a href="HTTP://X.example/">b</a><a href="mailto:h@example.com">'
                        'c</a><a href="">d</a><a href="/relative">e</a></body></html>')
    seen: list[str] = []

    def track(url: str) -> str:
        seen.append(url)
        return f"https://t.example.com/c?n={len(seen)}&to={url}"

    for _ in range(2):  # the second render takes the prepared skeleton
        seen.clear()
        html = render(template, ALICE, Tracking(links=track)).html or ""
        assert seen == ["https://shop.example.com/?a=1&b=2", "HTTP://X.example/"]
        assert 'href="https://t.example.com/c?n=1&amp;to=https://shop.example.com/?a=1' \
               '&amp;b=2"' in html
        assert 'href="mailto:h@example.com"' in html and 'href=""' in html
        assert 'href="/relative"' in html
    untracked = render(template, ALICE).html or ""
    assert 'href="https://shop.example.com/?a=1&amp;b=2"' in untracked
    assert template.finisher.prepared == 1


@settings(max_examples=300)
@given(st.text(alphabet=st.sampled_from(list("&<>\"'aZ/:._-=?é ")), max_size=30))
def test_attribute_values_are_escaped_as_markupsafe_does(text: str) -> None:
    # A tracked URL without & < > " ' is written as it is, anything else through escape.
    from markupsafe import escape

    from mailyard.bulk.templates.html import _attribute

    assert _attribute(text) == str(escape(text))
