"""Properties over generated input: any text given to the segment parser ends in a tree
or a SegmentError; any compiled segment runs, and ``not`` is its complement; any
contact name or subject yields exactly the header fields built, and the shared
skeleton renders what a render on its own does."""

from __future__ import annotations

import email
import email.policy
import html
import json
import sqlite3

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailyard.bulk.segments import SegmentError, SegmentSchema, compile_segment, parse
from mailyard.bulk.templates.mime import Mailbox, build_message
from mailyard.bulk.templates.render import (
    CompiledTemplate,
    ContactFields,
    RenderedContent,
    TemplateSource,
    Tracking,
)

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
TOKENS = ["plan", "age", "country", "name", "domain", "created", "vip", "opened", "clicked",
          "and", "or", "not", "in", "exists", "within", "contains", "(", ")", ",", "=",
          "!=", "<", ">=", '"pro"', '"DE"', "'x\\''", "3", "-1.5", "true", "days", "7",
          'attributes["a b"]', "attributes.x", '"', "\\", ";", "--"]


@SETTINGS
@given(st.lists(st.sampled_from(TOKENS), max_size=12).map(" ".join) | st.text(max_size=60))
def test_parse_gives_a_tree_or_a_segment_error(text: str) -> None:
    try:
        tree = parse(text)
    except SegmentError as exc:
        assert exc.position is None or 0 <= exc.position <= len(text)
        return
    try:
        condition = compile_segment(tree, SegmentSchema(), 1_000_000.0)
    except SegmentError:
        return
    assert condition.where.count("?") == len(condition.params)


def _db() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.executescript("""
        CREATE TABLE contacts (id INTEGER PRIMARY KEY, address TEXT, name TEXT,
            attributes TEXT, status TEXT, created REAL);
        CREATE TABLE events (contact_id INTEGER, kind TEXT, at REAL);""")
    values = [None, True, False, 0, 3, -1.5, "3", "pro", "DE", "", "x y"]
    rows = []
    for i in range(40):
        attrs = {k: values[(i * n) % len(values)] for n, k in
                 enumerate(["plan", "age", "country", "vip", "a b", "x"], 1) if (i + n) % 4}
        rows.append((i, f"u{i}@d{i % 3}.example", f"N{i}" if i % 5 else "",
                     json.dumps(attrs), "active", 1_000_000.0 - i * 86_400))
    conn.executemany("INSERT INTO contacts VALUES (?, ?, ?, ?, ?, ?)", rows)
    conn.executemany("INSERT INTO events VALUES (?, ?, ?)",
                     [(i, "opened" if i % 2 else "clicked", 1_000_000.0 - i * 3_600)
                      for i in range(0, 40, 3)])
    return conn


DB = _db()
CONDITIONS = [
    'plan = "pro"', "age > 2", "age = 3", 'country in ("DE", "x y")', "vip = true",
    "vip != false", 'attributes["a b"] exists', "x exists", 'name = ""',
    'domain = "d1.example"', "opened within 5 days", "clicked", "created within 9 days",
    'plan contains "r"', "age in (0, -1.5, \"3\")", 'x < "y"', "not opened",
]


@SETTINGS
@given(st.recursive(st.sampled_from(CONDITIONS),
                    lambda inner: st.tuples(inner, st.sampled_from([" and ", " or "]), inner)
                    .map(lambda t: f"({t[0]}{t[1]}{t[2]})")
                    | inner.map(lambda e: f"not ({e})"), max_leaves=8))
def test_not_is_the_exact_complement(text: str) -> None:
    def ids(expr: str) -> set[int]:
        condition = compile_segment(parse(expr), SegmentSchema(), 1_000_000.0)
        rows = DB.execute(f"SELECT id FROM contacts WHERE {condition.where}",
                          condition.params).fetchall()
        return {r[0] for r in rows}

    inside, outside = ids(text), ids(f"not ({text})")
    assert inside.isdisjoint(outside)
    assert inside | outside == set(range(40))


@SETTINGS
@given(name=st.text(max_size=80), subject=st.text(max_size=200))
def test_no_text_adds_a_header_field(name: str, subject: str) -> None:
    data = build_message(RenderedContent(subject, "<p>x</p>", "x"),
                         sender=Mailbox("n@example.com", name), to=Mailbox("b@example.org", name),
                         date=0.0).data
    head = data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    names = [line.split(":", 1)[0] for line in head.split("\r\n") if not line[:1].isspace()]
    assert names == ["Date", "From", "To", "Subject", "Message-ID", "MIME-Version",
                     "Content-Type"]
    assert max(len(line) for line in head.split("\r\n")) <= 998
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert message["To"].addresses[0].addr_spec == "b@example.org"


PAGE = ('<html><head><style>p { color: red }</style></head><body><p>{{ name }}</p>'
        '<table>{% for v in attributes.get("list", []) %}<tr><td>{{ v }}</td></tr>{% endfor %}'
        '</table><a href="https://e.example/?n={{ name|urlencode }}&amp;a={{ address }}">'
        '{{ name }}</a> <b>{{ attributes.get("x", "") }}</b> end</body></html>')


@SETTINGS
@given(name=st.text(max_size=40), x=st.text(max_size=40),
       items=st.lists(st.text(max_size=10), max_size=4))
def test_skeleton_renders_what_a_direct_render_does(name: str, x: str,
                                                    items: list[str]) -> None:
    contact = ContactFields("c@example.org", name, {"x": x, "list": items})
    tracking = Tracking(links=lambda u: "https://t.example/?u=" + u,
                        open_pixel_url="https://t/o")
    shared = CompiledTemplate(TemplateSource(subject="s", html=PAGE))
    alone = CompiledTemplate(TemplateSource(subject="s", html=PAGE))
    assert alone.html is not None
    alone.html.capturing = True
    first = shared.render(contact, unsubscribe_url="https://u/", tracking=tracking)
    second = alone.render(contact, unsubscribe_url="https://u/", tracking=tracking)
    assert isinstance(first, RenderedContent) and isinstance(second, RenderedContent)
    # The same document; character references may differ (&#34; against a literal ").
    assert html.unescape(first.html or "") == html.unescape(second.html or "")
    # The same words; blank lines around an empty value may differ.
    assert first.text.split() == second.text.split()
