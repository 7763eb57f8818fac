"""``campaign check`` over rendered samples: each problem gives its code and
severity; a good campaign gives no error."""

from __future__ import annotations

import pytest

from mailyard.bulk.templates.check import (
    HTML_CLIP_BYTES,
    AuthAlignment,
    Severity,
    check_message,
    link_problem,
)
from mailyard.bulk.templates.mime import ListHeaders, Mailbox, build_message
from mailyard.bulk.templates.render import RenderedContent

UNSUB = "https://example.com/u/tok"
GOOD_HTML = (f'<p>Hi</p><img src="https://example.com/logo.png" alt="Logo">'
             f'<a href="https://example.com/shop?a=1&amp;b=2">Shop</a>'
             f'<a href="mailto:help@example.com">Help</a><a href="#top">Top</a>'
             f'<a href="{UNSUB}">Unsubscribe</a>')
GOOD_TEXT = f"Hi\n\nUnsubscribe: {UNSUB}\n"
ALIGNED = AuthAlignment(spf=True, dkim=True, dmarc=True)


def sample(html: str | None = GOOD_HTML, text: str = GOOD_TEXT,
           lists: ListHeaders | None = None, subject: str = "News") -> bytes:
    lists = lists or ListHeaders(unsubscribe_url=UNSUB,
                                 unsubscribe_mailto="mailto:u@example.com")
    return build_message(RenderedContent(subject, html, text), sender=Mailbox("n@example.com"),
                         to=Mailbox("bob@example.org"), date=0.0, lists=lists).data


def codes(data: bytes, **kwargs: object) -> set[str]:
    params: dict[str, object] = {"unsubscribe_url": UNSUB, "alignment": ALIGNED, **kwargs}
    return check_message(data, **params).codes()  # type: ignore[arg-type]


def test_a_good_sample_passes_clean() -> None:
    report = check_message(sample(), unsubscribe_url=UNSUB, alignment=ALIGNED)
    assert report.ok and report.findings == ()
    assert report.to_dict() == {"ok": True, "findings": []}


def test_missing_list_unsubscribe_is_an_error() -> None:
    data = build_message(RenderedContent("s", GOOD_HTML, GOOD_TEXT),
                         sender=Mailbox("n@example.com"), to=Mailbox("b@example.org"),
                         date=0.0).data
    report = check_message(data, unsubscribe_url=UNSUB, alignment=ALIGNED)
    assert not report.ok
    assert [f.code for f in report.errors] == ["no-list-unsubscribe"]


def test_mailto_only_list_unsubscribe_lacks_one_click() -> None:
    assert "no-one-click" in codes(sample(lists=ListHeaders(
        unsubscribe_mailto="mailto:u@example.com")))


def test_no_unsubscribe_link_in_the_body() -> None:
    html = GOOD_HTML.replace(UNSUB, "https://example.com/other")
    assert "no-unsubscribe-link" in codes(sample(html=html))


def test_unsubscribe_link_behind_click_tracking_is_found() -> None:
    html = GOOD_HTML.replace(UNSUB, "https://t.example.com/c?u=https%3A%2F%2Fexample.com"
                             "%2Fu%2Ftok")
    assert "no-unsubscribe-link" not in codes(sample(html=html))


def test_unsubscribe_url_defaults_to_the_list_unsubscribe_https_uri() -> None:
    report = check_message(sample(), alignment=ALIGNED)
    assert report.ok


def test_missing_text_part_is_an_error() -> None:
    data = sample()
    # A sample whose only part is HTML.
    html_only = data.replace(b"text/plain", b"text/x-other")
    assert "no-text-part" in codes(html_only)


def test_text_part_without_unsubscribe_url_is_a_warning() -> None:
    assert "no-unsubscribe-in-text" in codes(sample(text="Hi\n"))


def test_html_over_gmail_clipping_is_an_error() -> None:
    big = GOOD_HTML + "<p>" + "x" * HTML_CLIP_BYTES + "</p>"
    report = check_message(sample(html=big), unsubscribe_url=UNSUB, alignment=ALIGNED)
    assert [f.code for f in report.errors] == ["html-clipped"]


def test_html_near_clipping_is_a_warning() -> None:
    html = GOOD_HTML + "<p>" + "x" * 95_000 + "</p>"
    assert codes(sample(html=html)) == {"html-near-clip"}


@pytest.mark.parametrize("href,code,severity", [
    ("javascript:alert(1)", "unsafe-link", Severity.ERROR),
    ("JavaScript:alert(1)", "unsafe-link", Severity.ERROR),
    ("data:text/html,<b>x</b>", "unsafe-link", Severity.ERROR),
    ("vbscript:x", "unsafe-link", Severity.ERROR),
    ("/relative/path", "relative-link", Severity.ERROR),
    ("www.example.com", "relative-link", Severity.ERROR),
    ("https://", "malformed-link", Severity.ERROR),
    ("https://exa mple.com/", "malformed-link", Severity.ERROR),
    ("https://example.com:99999/", "malformed-link", Severity.ERROR),
    ("https://localhost/", "malformed-link", Severity.ERROR),
    ("http://example.com/", "insecure-link", Severity.WARNING),
    ("", "empty-link", Severity.WARNING),
    ("ftp://example.com/x", "unusual-link", Severity.WARNING),
])
def test_link_problems(href: str, code: str, severity: Severity) -> None:
    problem = link_problem(href)
    assert problem is not None and problem[:2] == (severity, code)
    assert code in codes(sample(html=GOOD_HTML + f'<a href="{href}">x</a>'))


@pytest.mark.parametrize("href", [
    "https://example.com/", "https://sub.example.co.uk/a?b=c#d", "mailto:a@example.com",
    "tel:+491234", "#anchor", "https://[2001:db8::1]/x", "https://bücher.example/",
])
def test_good_links(href: str) -> None:
    assert link_problem(href) is None


def test_images_without_alt_are_warned_about() -> None:
    html = GOOD_HTML + ('<img src="https://example.com/a.png">'
                        '<img src="https://e.com/b" alt="">')
    report = check_message(sample(html=html), unsubscribe_url=UNSUB, alignment=ALIGNED)
    assert report.ok
    assert [f.code for f in report.warnings] == ["image-without-alt"]


def test_alignment_results_are_reported() -> None:
    data = sample()
    assert codes(data, alignment=AuthAlignment(spf=False, dkim=True, dmarc=None)) == {
        "spf-not-aligned", "dmarc-not-checked"}
    report = check_message(data, unsubscribe_url=UNSUB)
    assert report.ok and report.codes() == {"alignment-not-checked"}


def test_findings_per_code_are_capped() -> None:
    html = GOOD_HTML + '<a href="/x">x</a>' * 50
    report = check_message(sample(html=html), unsubscribe_url=UNSUB, alignment=ALIGNED)
    assert len(report.errors) == 10
