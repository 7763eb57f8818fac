"""SPF interoperability: our results against pyspf's on a generated corpus, both
libraries querying the same DNS server on loopback (tests/support/dnsserver.py).

Deliberate differences, kept out of the corpus (docs/spf.md lists them):

* a DNS error while looking up the client's PTR names or their addresses makes
  pyspf return temperror; RFC 7208 5.5 says the ``ptr`` mechanism then does not
  match (or the name is skipped), which is what we do;
* pyspf counts a ``redirect=`` toward the 10-lookup limit when it reads the record;
  we count it when it is followed (4.6.4 counts the terms "during SPF evaluation"),
  which differs only when a record's tenth counted term matches and it also has a
  ``redirect``;
* pyspf expands ``%{i}`` of an IPv6 client with upper-case nibbles and rejoins
  split parts with the original delimiter for letters other than ``l`` and ``s``;
  we follow 7.4's example (lower case) and 7.3 (always "."): names compare equal in
  DNS, only an ``exp=`` text can differ;
* ``%{d0}`` is a syntax error for us (7.1: the digit must be nonzero).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Iterator

import pytest

from mailyard.dns import CachingResolver, DnsPythonResolver
from mailyard.spf import SpfResult, check_mail_from
from tests.support.dnsserver import DnsTestServer
from tests.support.spf_corpus import Check, build_corpus

spf = pytest.importorskip("spf")  # pyspf: a test dependency (pyproject [test])
dns_resolver = pytest.importorskip("dns.resolver")

pytestmark = [pytest.mark.e2e,
              pytest.mark.filterwarnings("ignore:please use dns.resolver.resolve")]


@pytest.fixture(scope="module", params=[7208, 1])
def corpus_server(request: pytest.FixtureRequest) -> Iterator[tuple[DnsTestServer, list[Check]]]:
    corpus = build_corpus(request.param)
    server = DnsTestServer(corpus.zones)
    for name in corpus.servfail:
        server.servfail(name)
    with server:
        yield server, corpus.checks


def pyspf_result(server: DnsTestServer, check: Check) -> tuple[str, str]:
    host, port = server.address
    resolver = dns_resolver.Resolver(configure=False)
    resolver.nameservers = [host]
    resolver.port = port
    resolver.lifetime = 5.0
    saved = dns_resolver.default_resolver
    dns_resolver.default_resolver = resolver  # pyspf asks dnspython's default resolver
    try:
        query = spf.query(i=check.ip, s=check.mail_from, h=check.helo,
                          receiver="mx.example.net", timeout=5)
        result, _code, explanation = query.check()
    finally:
        dns_resolver.default_resolver = saved
    return result, explanation


def our_results(server: DnsTestServer, checks: list[Check]) -> list[SpfResult]:
    async def run_all() -> list[SpfResult]:
        resolver = CachingResolver(DnsPythonResolver([server.server_spec], timeout=5.0))
        return [await check_mail_from(resolver, c.ip, c.mail_from, c.helo,
                                      receiver="mx.example.net") for c in checks]
    return asyncio.run(run_all())


def test_results_agree_with_pyspf(corpus_server: tuple[DnsTestServer, list[Check]]) -> None:
    server, checks = corpus_server
    ours = our_results(server, checks)
    disagreements = []
    seen: collections.Counter[str] = collections.Counter()
    explained = 0
    for check, mine in zip(checks, ours, strict=True):
        theirs, explanation = pyspf_result(server, check)
        seen[str(mine.status)] += 1
        if theirs != str(mine.status):
            disagreements.append(f"{check}: ours {mine.status} ({mine.problem}), "
                                 f"pyspf {theirs} ({explanation})")
        elif mine.explanation:
            explained += 1
            if mine.explanation != explanation:
                disagreements.append(f"{check}: explanation {mine.explanation!r} "
                                     f"vs {explanation!r}")
    assert not disagreements, "\n".join(disagreements)
    # the corpus exercises every result
    assert set(seen) == {"pass", "fail", "softfail", "neutral", "none", "permerror",
                         "temperror"}, seen
    assert explained
