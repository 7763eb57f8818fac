#!/usr/bin/env python3
"""SPF evaluation with a warm DNS cache: Mailyard against pyspf, in the same run.

Both evaluate the same generated corpus (``tests/support/spf_corpus.py``: every
mechanism and modifier, macros, includes, redirects, exp, errors; by default 40
domains and 260 checks), whose records a DNS server on loopback
(``tests/support/dnsserver.py``) serves.  A first pass over the corpus warms each
side's cache: Mailyard's own :class:`~mailyard.dns.CachingResolver`, and for pyspf a
memo in front of its DNS lookup function (pyspf keeps answers only per query, and
never empty ones), so what is timed afterwards is the evaluation alone, with no DNS
traffic on either side.  ``--rounds`` rounds (default 5) alternate which library goes
first; each times ``--passes`` passes over the corpus (default 5).  Reported: the
median microseconds per evaluation of each side, the min-max range, and the ratio
pyspf / Mailyard (above 1: Mailyard is faster).  The results of the two are compared
too (they must agree).  Results: ``bench/results/auth_spf-*.json``.

Run: ``python3 bench/auth_spf.py [--rounds 5] [--passes 5] [--seed 7208]``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import benchlib  # noqa: E402

from mailyard.dns import CachingResolver, DnsPythonResolver  # noqa: E402
from mailyard.spf import check_mail_from  # noqa: E402
from tests.support.dnsserver import DnsTestServer  # noqa: E402
from tests.support.spf_corpus import Check, build_corpus  # noqa: E402

warnings.filterwarnings("ignore", message="please use dns.resolver.resolve")


def ours_pass(resolver: CachingResolver, checks: list[Check]) -> tuple[float, list[str]]:
    async def run() -> tuple[float, list[str]]:
        start = time.perf_counter()
        results = [await check_mail_from(resolver, c.ip, c.mail_from, c.helo,
                                         receiver="mx.bench.test") for c in checks]
        return time.perf_counter() - start, [str(r.status) for r in results]
    return asyncio.run(run())


def pyspf_setup(server: DnsTestServer) -> Any:
    """pyspf, asking the loopback server, through a memo of every answer (empty
    ones too): the warm cache pyspf does not have across queries."""
    import dns.resolver
    import spf

    host, port = server.address
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [host]
    resolver.port = port
    dns.resolver.default_resolver = resolver
    lookup: Callable[..., list[Any]] = spf.DNSLookup
    memo: dict[tuple[str, str], list[Any]] = {}

    def cached(name: str, qtype: str, *args: Any, **kwargs: Any) -> list[Any]:
        key = (name.lower(), qtype)
        if key not in memo:
            memo[key] = lookup(name, qtype, *args, **kwargs)  # TempError is not kept
        return memo[key]

    spf.DNSLookup = cached
    return spf


def pyspf_pass(spf: Any, checks: list[Check]) -> tuple[float, list[str]]:
    start = time.perf_counter()
    results = [spf.query(i=c.ip, s=c.mail_from, h=c.helo, receiver="mx.bench.test",
                         timeout=5).check()[0] for c in checks]
    return time.perf_counter() - start, results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7208)
    parser.add_argument("--domains", type=int, default=40)
    args = parser.parse_args()
    try:
        import spf  # noqa: F401
    except ImportError:
        print("pyspf is not installed (pip install -e '.[test]')", file=sys.stderr)
        return 2
    corpus = build_corpus(args.seed, args.domains)
    checks = corpus.checks  # no SERVFAIL names here: failures are never cached
    info = benchlib.machine_info()
    with DnsTestServer(corpus.zones) as server:
        resolver = CachingResolver(DnsPythonResolver([server.server_spec], timeout=5.0))
        pyspf = pyspf_setup(server)
        _, ours_results = ours_pass(resolver, checks)  # warm-up passes fill the caches
        _, their_results = pyspf_pass(pyspf, checks)
        queries_after_warmup = len(server.queries)
        ours_us: list[float] = []
        theirs_us: list[float] = []
        for round_no in range(args.rounds):
            sides = [("mailyard", ours_us), ("pyspf", theirs_us)]
            for name, sink in sides if round_no % 2 == 0 else reversed(sides):
                total = 0.0
                for _ in range(args.passes):
                    elapsed, _results = (ours_pass(resolver, checks) if name == "mailyard"
                                         else pyspf_pass(pyspf, checks))
                    total += elapsed
                sink.append(total / (args.passes * len(checks)) * 1e6)
        dns_during_timing = len(server.queries) - queries_after_warmup
    disagreements = sum(a != b for a, b in zip(ours_results, their_results, strict=True))
    ours, theirs = statistics.median(ours_us), statistics.median(theirs_us)
    data = {
        "machine": info, "checks": len(checks), "rounds": args.rounds, "passes": args.passes,
        "seed": args.seed, "mailyard_us_per_eval": round(ours, 1),
        "mailyard_us_range": [round(min(ours_us), 1), round(max(ours_us), 1)],
        "pyspf_us_per_eval": round(theirs, 1),
        "pyspf_us_range": [round(min(theirs_us), 1), round(max(theirs_us), 1)],
        "ratio_pyspf_over_mailyard": benchlib.ratio(theirs, ours),
        "disagreements": disagreements, "dns_queries_while_timed": dns_during_timing,
        "results": {s: ours_results.count(s) for s in sorted(set(ours_results))},
    }
    path = benchlib.write_result("auth_spf", data)
    print(f"SPF, warm cache, {len(checks)} checks x {args.passes} passes x {args.rounds} "
          f"rounds (load {info['loadavg_at_start']:.1f})")
    print(f"  mailyard  {ours:8.1f} us/evaluation ({min(ours_us):.1f}-{max(ours_us):.1f})")
    print(f"  pyspf     {theirs:8.1f} us/evaluation ({min(theirs_us):.1f}-{max(theirs_us):.1f})")
    print(f"  ratio pyspf/mailyard {data['ratio_pyspf_over_mailyard']}; "
          f"disagreements {disagreements}; DNS queries while timed {dns_during_timing}")
    print(f"  results: {data['results']}")
    print(f"  written to {path}")
    return 0 if disagreements == 0 else 1


if __name__ == "__main__":
    sys.exit(benchlib.run_main(main))
