"""Micro benchmark: the CPU cost of DMARC per message with a warm DNS cache.

What an inbound message costs once SPF and DKIM have run: the From field read, policy
discovery through the resolver cache (``CachingResolver`` in front of an in-memory
zone: every answer is a cache hit, as for the second and later messages of a sender),
alignment over the Public Suffix List, the result, the Authentication-Results field
built, and the incoming fields claiming our authserv-id stripped from a header section.
Four message shapes, cycled: aligned DKIM pass at the From domain, a subdomain falling
back to its Organizational Domain (two policy lookups) and failing, a non-existent
subdomain under ``np`` (three more lookups), and a domain without any record.

Reported per shape and for the mix: microseconds of CPU per evaluation (median of
``--rounds`` rounds of ``--iterations`` evaluations, one event loop, sequential), plus
the one-off cost of loading the Public Suffix List.  The issue's budget for all inbound
checks together is 2 ms of CPU per message.

Run: ``python3 bench/auth_dmarc.py [--iterations 20000] [--rounds 5] [--json]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from mailyard.authres import (  # noqa: E402
    AuthResults,
    dkim_results,
    dmarc_result,
    format_field,
    spf_result,
    strip_claimed,
)
from mailyard.dmarc import (  # noqa: E402
    DkimOutcome,
    PublicSuffixes,
    SpfOutcome,
    evaluate_message,
    load_public_suffixes,
)
from mailyard.dns import CachingResolver, StaticResolver  # noqa: E402

ZONES = {
    "_dmarc.example.com": {"TXT": ["v=DMARC1; p=reject; rua=mailto:dmarc@example.com; pct=100"]},
    "example.com": {"MX": ["10 mx.example.com"]},
    "news.example.com": {"A": ["192.0.2.1"]},
    "_dmarc.example.co.uk": {"TXT": ["v=DMARC1; p=quarantine; sp=reject; np=reject"]},
    "shop.example.co.uk": {"A": ["192.0.2.2"]},
    "plain.example.net": {"A": ["192.0.2.3"]},
}
SHAPES = {
    "pass_at_from_domain": (["Alice <alice@example.com>"], SpfOutcome("pass", "example.com"),
                            [DkimOutcome("pass", "example.com", "s1", "oINEO8hgAbCdEf")]),
    "fail_via_org_domain": (["Bob <bob@news.example.com>"], SpfOutcome("pass", "example.org"),
                            [DkimOutcome("fail", "news.example.com", "s1", "QmFkU2ln")]),
    "np_nonexistent": (["x@ghost.shop.example.co.uk"], SpfOutcome("softfail", "other.example"),
                       []),
    "no_record": (["carol@plain.example.net"], SpfOutcome("none", "plain.example.net"), []),
}
HEADER = (b"Received: from a.example by b.example; Tue, 1 Dec 2026 10:00:00 +0000\r\n"
          b"Authentication-Results: mx.example.org; spf=pass smtp.mailfrom=forged\r\n"
          b"Authentication-Results: other.example; dkim=pass header.d=example.com\r\n"
          b"From: Alice <alice@example.com>\r\nSubject: hello\r\n\r\n")


async def one(resolver: CachingResolver, psl: PublicSuffixes, shape: str) -> bytes:
    from_values, spf, dkim = SHAPES[shape]
    result = await evaluate_message(from_values, spf, dkim, resolver, psl, lambda: 0)
    field = format_field(AuthResults("mx.example.org", (
        spf_result(spf.result, mail_from=spf.domain),
        *dkim_results([(d.result, d.domain, d.selector, d.signature) for d in dkim]),
        dmarc_result(result.status.value, result.author_domain,
                     policy=result.policy.value if result.policy else "",
                     disposition=result.disposition.value))))
    stripped, _ = strip_claimed(HEADER, ["mx.example.org"])
    return field + stripped


async def measure(psl: PublicSuffixes, shapes: list[str], iterations: int) -> float:
    """CPU microseconds per evaluation, the cache warmed first."""
    resolver = CachingResolver(StaticResolver(ZONES))
    for shape in shapes:
        await one(resolver, psl, shape)
    cpu = time.process_time()
    for i in range(iterations):
        await one(resolver, psl, shapes[i % len(shapes)])
    return (time.process_time() - cpu) / iterations * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    start = time.process_time()
    psl = load_public_suffixes()
    psl_ms = (time.process_time() - start) * 1e3
    figures: dict[str, object] = {"psl_load_cpu_ms": round(psl_ms, 1),
                                  "loadavg_at_start": os.getloadavg()[0]}
    series = {name: [name] for name in SHAPES} | {"mix": list(SHAPES)}
    for name, shapes in series.items():
        runs = [asyncio.run(measure(psl, shapes, args.iterations)) for _ in range(args.rounds)]
        figures[name] = {"cpu_us_per_eval": round(statistics.median(runs), 1),
                         "min": round(min(runs), 1), "max": round(max(runs), 1)}
    figures["loadavg_at_end"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"Public Suffix List load: {psl_ms:.0f} ms CPU (once per process)")
    print(f"{'shape':<22} {'CPU us/eval':>12} {'(min-max)':>16}")
    for name in series:
        f = figures[name]
        assert isinstance(f, dict)
        print(f"{name:<22} {f['cpu_us_per_eval']:>12} {f['min']:>7}-{f['max']:<8}")
    print(f"load average {figures['loadavg_at_start']:.1f} at start, "
          f"{figures['loadavg_at_end']:.1f} at end")


if __name__ == "__main__":
    main()
