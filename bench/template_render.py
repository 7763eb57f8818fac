"""Micro benchmark of campaign rendering: one template, many contacts.

A 3 KB HTML template with 5 variables (name, city, plan, unsubscribe and view-online
URLs) and 10 links, a ``<style>`` block to inline, and one ``if`` on the plan (two
paths through the template, so two shared skeletons), rendered for ``--contacts``
contacts with tracking on (every http(s) link rewritten through an HMAC-signed
redirect URL, an open pixel per contact).  Reported, per contact:

* ``render``: subject, HTML with CSS inlined, links rewritten, pixel, text part;
* ``compose``: the same plus the MIME message bytes (headers, quoted-printable parts);
* ``direct``: the render without the shared skeleton (CSS inlining and HTML-to-text
  conversion for every contact), on a sample, to show what the skeleton saves.

Run: ``python3 bench/template_render.py [--contacts 100000] [--direct-sample 2000]``.
Results: bench/results/template_render-*.json.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import write_result  # noqa: E402

from mailyard.bulk.templates.mime import Envelope, ListHeaders, Mailbox, compose  # noqa: E402
from mailyard.bulk.templates.render import (  # noqa: E402
    CompiledTemplate,
    ContactFields,
    RenderedContent,
    TemplateSource,
    Tracking,
)

KEY = b"bench-secret"
LINKS = "\n".join(
    f'<tr><td class="item"><a href="https://shop.example.com/p/{i}?utm_source=news">'
    f"Product {i}</a> - a short description of product number {i}, what it is good "
    f"for, what it costs and why this spring is the time to try it.</td></tr>"
    for i in range(8))
HTML = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Spring news</title>
<style>
body {{ font-family: Helvetica, Arial, sans-serif; color: #222; margin: 0 }}
.wrap {{ width: 600px; margin: 0 auto }}
h1 {{ font-size: 24px; color: #06c }}
.item a {{ color: #06c; text-decoration: none }}
.foot {{ font-size: 12px; color: #777 }}
@media (max-width: 600px) {{ .wrap {{ width: 100% }} }}
</style></head>
<body><div class="wrap">
<p class="foot"><a href="{{{{ view_online_url }}}}">View this mail in your browser</a></p>
<h1>Hello {{{{ name }}}}!</h1>
<p>Spring has come to {{{{ attributes.city }}}}, and so have our new products. We spent
the winter making them lighter, sturdier and kinder to the planet; here is a first look
at what is new this season, with more to come in the weeks ahead.</p>
{{% if attributes.plan == "pro" %}}<p>As a Pro member you get 20% off everything.</p>
{{% else %}}<p>Upgrade to Pro and get 20% off everything.</p>{{% endif %}}
<table>
{LINKS}
</table>
<p class="foot">You get this mail because you subscribed to our newsletter at
example.com. Our postal address: Example GmbH, Musterstrasse 1, 10115 Berlin.
<a href="{{{{ unsubscribe_url }}}}">Unsubscribe</a></p>
</div></body></html>
"""


def contacts(n: int) -> list[ContactFields]:
    cities = ["Berlin", "Wien", "Zürich", "Paris", "Lisboa"]
    return [ContactFields(f"user{i}@example{i % 97}.org", f"User Nümber {i}",
                          {"city": cities[i % 5], "plan": "pro" if i % 3 else "free"})
            for i in range(n)]


def tracking(contact_id: int) -> Tracking:
    def link(url: str) -> str:
        sig = hmac.new(KEY, f"{contact_id}:{url}".encode(), hashlib.sha256).hexdigest()[:16]
        return f"https://t.example.com/c/{contact_id}/{sig}?u={url}"

    return Tracking(links=link, open_pixel_url=f"https://t.example.com/o/{contact_id}.gif")


def timed(label: str, count: int, func: object) -> tuple[float, float]:
    """Wall and CPU seconds (CPU time is what to compare on a shared, loaded machine)."""
    start, cpu = time.perf_counter(), time.process_time()
    func()  # type: ignore[operator]
    elapsed, used = time.perf_counter() - start, time.process_time() - cpu
    print(f"{label:<8} {count:>7} contacts  wall {elapsed:7.2f} s {elapsed / count * 1e6:7.1f} us"
          f" each  cpu {used / count * 1e6:7.1f} us each  {count / used:6.0f}/cpu-s")
    return elapsed, used


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--direct-sample", type=int, default=2_000)
    args = parser.parse_args()
    people = contacts(args.contacts)
    assert 2_900 <= len(HTML.encode()) <= 3_300, len(HTML.encode())

    start = time.perf_counter()
    template = CompiledTemplate(TemplateSource(subject="Spring news for {{ name }}", html=HTML))
    compile_s = time.perf_counter() - start
    print(f"template: {len(HTML.encode())} bytes, compiled in {compile_s * 1000:.1f} ms")

    def render_all() -> None:
        for i, c in enumerate(people):
            result = template.render(c, unsubscribe_url=f"https://ex.com/u/{i}",
                                     view_online_url=f"https://ex.com/v/{i}",
                                     tracking=tracking(i))
            assert isinstance(result, RenderedContent)

    envelope = Envelope(Mailbox("news@example.com", "Example News"), time.time(),
                        lists=ListHeaders("https://ex.com/u/x", "mailto:u@example.com",
                                          "news.example.com", "News", "c1:u1:news:ex"))
    sizes: list[int] = []

    def compose_all() -> None:
        for i, c in enumerate(people):
            built = compose(template, c, envelope, unsubscribe_url=f"https://ex.com/u/{i}",
                            view_online_url=f"https://ex.com/v/{i}", tracking=tracking(i))
            assert not isinstance(built, str) and hasattr(built, "data")
            sizes.append(len(built.data))  # type: ignore[union-attr]

    direct = CompiledTemplate(TemplateSource(subject="Spring news for {{ name }}", html=HTML))
    assert direct.html is not None
    direct.html.capturing = True  # every contact processed on its own

    def direct_sample() -> None:
        for i, c in enumerate(people[:args.direct_sample]):
            result = direct.render(c, unsubscribe_url=f"https://ex.com/u/{i}",
                                   view_online_url=f"https://ex.com/v/{i}",
                                   tracking=tracking(i))
            assert isinstance(result, RenderedContent)

    render_s = timed("render", len(people), render_all)
    compose_s = timed("compose", len(people), compose_all)
    direct_s = timed("direct", args.direct_sample, direct_sample)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"skeletons prepared: {template.finisher.prepared}; message size "
          f"{min(sizes)}-{max(sizes)} bytes; peak RSS {rss_mb:.0f} MB")
    path = write_result("template_render", {
        "contacts": len(people), "template_bytes": len(HTML.encode()),
        "compile_ms": compile_s * 1000,
        "render_us": render_s[0] / len(people) * 1e6,
        "render_cpu_us": render_s[1] / len(people) * 1e6,
        "compose_us": compose_s[0] / len(people) * 1e6,
        "compose_cpu_us": compose_s[1] / len(people) * 1e6,
        "direct_us": direct_s[0] / args.direct_sample * 1e6,
        "direct_cpu_us": direct_s[1] / args.direct_sample * 1e6,
        "skeletons": template.finisher.prepared, "message_bytes": max(sizes),
        "peak_rss_mb": rss_mb})
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
