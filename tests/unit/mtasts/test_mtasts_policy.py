"""MTA-STS (RFC 8461) record and policy parsing, MX matching, and the discovery /
cache rules of section 5.1, with the RFC's own examples."""

from __future__ import annotations

import asyncio
import os
import stat

from mailyard.dns import StaticResolver
from mailyard.mtasts import Discovery
from mailyard.mtasts.cache import CachedPolicy, PolicyCache
from mailyard.mtasts.fetch import Fetched, FetchFailed
from mailyard.mtasts.policy import (
    MAX_AGE_CAP,
    Invalid,
    Mode,
    Policy,
    StsRecord,
    host_matches,
    parse_policy,
    parse_record,
    policy_text,
    record_text,
)

# RFC 8461 3.2, the example policy (CRLF line ends as served).
RFC_POLICY = ("version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\n"
              "mx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n")


def test_rfc8461_3_1_txt_record_example() -> None:
    assert parse_record(["v=STSv1; id=20160831085700Z;"]) == StsRecord("20160831085700Z")


def test_rfc8461_3_1_other_txt_records_are_ignored_and_two_are_invalid() -> None:
    assert parse_record(["v=spf1 -all", "v=STSv1; id=abc"]) == StsRecord("abc")
    assert parse_record(["v=spf1 -all"]) is None
    assert isinstance(parse_record(["v=STSv1; id=a", "v=STSv1; id=b"]), Invalid)


def test_rfc8461_3_1_id_must_be_1_to_32_alphanumerics() -> None:
    assert isinstance(parse_record(["v=STSv1; id=has-dash"]), Invalid)
    assert isinstance(parse_record(["v=STSv1; id=" + "a" * 33]), Invalid)
    assert isinstance(parse_record(["v=STSv1;"]), Invalid)
    assert parse_record(["v=STSv1; id=a1; ext=value"]) == StsRecord("a1")


def test_rfc8461_3_2_policy_example() -> None:
    policy = parse_policy(RFC_POLICY)
    assert isinstance(policy, Policy)
    assert policy.mode is Mode.ENFORCE
    assert policy.mx == ("mail.example.com", "*.example.net", "backupmx.example.com")
    assert policy.max_age == 604800
    assert policy.lines()[0] == "version: STSv1"


def test_rfc8461_3_2_lf_line_ends_and_unknown_keys() -> None:
    policy = parse_policy("version: STSv1\nmode: testing\nmx: mx.example\n"
                          "max_age: 86400\nfuture_key: value\n")
    assert isinstance(policy, Policy) and policy.mode is Mode.TESTING


def test_rfc8461_3_2_max_age_is_capped() -> None:
    policy = parse_policy("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 9999999999\n")
    assert isinstance(policy, Policy) and policy.max_age == MAX_AGE_CAP


def test_rfc8461_3_2_invalid_policies() -> None:
    bad = [
        "mode: enforce\nmx: a.example\nmax_age: 1\n",  # no version
        "version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n",
        "version: STSv1\nmode: strict\nmx: a.example\nmax_age: 1\n",
        "version: STSv1\nmode: enforce\nmax_age: 1\n",  # no mx
        "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n",
        "version: STSv1\nmode: enforce\nmode: testing\nmx: a.example\nmax_age: 1\n",
        "version: STSv1\nmode: enforce\nmx: bad host\nmax_age: 1\n",
        "<html>not a policy</html>",
    ]
    for text in bad:
        assert isinstance(parse_policy(text), Invalid), text
    none_mode = parse_policy("version: STSv1\nmode: none\nmax_age: 1\n")
    assert isinstance(none_mode, Policy) and none_mode.mx == ()


def test_rfc8461_4_1_mx_matching_with_wildcards() -> None:
    policy = parse_policy(RFC_POLICY)
    assert isinstance(policy, Policy)
    assert policy.allows("mail.example.com") and policy.allows("MAIL.example.com.")
    assert policy.allows("mx1.example.net")
    assert not policy.allows("example.net")  # the wildcard needs a label
    assert not policy.allows("a.b.example.net")  # exactly one label
    assert not policy.allows("evil.example.com")
    assert host_matches("*.example.com", "mx.example.com")
    assert not host_matches("*.example.com", "mxexample.com")


def test_published_policy_round_trips() -> None:
    text = policy_text(Mode.ENFORCE, ("mx.example.org", "*.backup.example.org"), 604800)
    policy = parse_policy(text)
    assert isinstance(policy, Policy) and policy.mx[1] == "*.backup.example.org"
    assert parse_record([record_text("20261201")]) == StsRecord("20261201")


# --- discovery and cache (RFC 8461 5.1) ------------------------------------------------
class Fetches:
    def __init__(self, answer: Fetched | FetchFailed) -> None:
        self.answer = answer
        self.count = 0

    async def __call__(self, domain: str) -> Fetched | FetchFailed:
        self.count += 1
        await asyncio.sleep(0)  # let other deliveries run while this one is fetching
        return self.answer


def discovery(resolver: StaticResolver, fetch: Fetches, clock: list[float],
              cache: PolicyCache | None = None) -> Discovery:
    return Discovery(resolver, cache or PolicyCache(None), clock=lambda: clock[0], fetch=fetch)


def test_rfc8461_5_1_policy_is_cached_until_the_id_changes() -> None:
    resolver = StaticResolver({"_mta-sts.example.com": {"TXT": ["v=STSv1; id=one"]}})
    fetch, clock = Fetches(Fetched(RFC_POLICY)), [1000.0]
    d = discovery(resolver, fetch, clock)

    async def go() -> None:
        first = await d.policy_for("example.com")
        assert first.policy is not None and first.policy_id == "one" and not first.from_cache
        again = await d.policy_for("example.com")
        assert again.from_cache and fetch.count == 1
        resolver.set("_mta-sts.example.com", "TXT", ["v=STSv1; id=two"])
        changed = await d.policy_for("example.com")
        assert changed.policy_id == "two" and fetch.count == 2
    asyncio.run(go())


def test_rfc8461_5_1_failed_fetch_keeps_the_cached_policy() -> None:
    resolver = StaticResolver({"_mta-sts.example.com": {"TXT": ["v=STSv1; id=one"]}})
    fetch, clock = Fetches(Fetched(RFC_POLICY)), [1000.0]
    d = discovery(resolver, fetch, clock)

    async def go() -> None:
        await d.policy_for("example.com")
        resolver.set("_mta-sts.example.com", "TXT", ["v=STSv1; id=two"])
        fetch.answer = FetchFailed("connection refused")
        kept = await d.policy_for("example.com")
        assert kept.policy is not None and kept.policy.mode is Mode.ENFORCE and kept.from_cache
        resolver.set("_mta-sts.example.com", "TXT", [])  # a stripped TXT record
        assert (await d.policy_for("example.com")).policy is not None
        clock[0] += 604801  # max_age passed
        assert (await d.policy_for("example.com")).policy is None
    asyncio.run(go())


def test_fetch_failure_without_a_cache_is_reported_and_not_retried_at_once() -> None:
    resolver = StaticResolver({"_mta-sts.example.com": {"TXT": ["v=STSv1; id=one"]}})
    fetch, clock = Fetches(FetchFailed("HTTP status 404")), [1000.0]
    d = discovery(resolver, fetch, clock)

    async def go() -> None:
        result = await d.policy_for("example.com")
        assert result.policy is None and result.failure == "sts-policy-fetch-error"
        await d.policy_for("example.com")
        assert fetch.count == 1
        fetch.answer = Fetched("garbage")
        clock[0] += 301
        invalid = await d.policy_for("example.com")
        assert invalid.failure == "sts-policy-invalid" and fetch.count == 2
    asyncio.run(go())


def test_no_txt_record_means_no_policy_and_no_fetch() -> None:
    fetch, clock = Fetches(Fetched(RFC_POLICY)), [1000.0]
    result = asyncio.run(discovery(StaticResolver({}), fetch, clock).policy_for("example.com"))
    assert result.policy is None and result.failure == "" and fetch.count == 0


def test_cache_file_is_private_and_survives_reopening(tmp_path) -> None:
    path = tmp_path / "mta-sts.db"
    cache = PolicyCache(path)
    asyncio.run(cache.put(CachedPolicy("example.com", "one", RFC_POLICY, 1.0, 2.0)))
    cache.close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = PolicyCache(path)
    assert again.get("example.com") == CachedPolicy("example.com", "one", RFC_POLICY, 1.0, 2.0)
    again.close()


def test_concurrent_deliveries_share_one_fetch() -> None:
    resolver = StaticResolver({"_mta-sts.example.com": {"TXT": ["v=STSv1; id=one"]}})
    fetch, clock = Fetches(Fetched(RFC_POLICY)), [1000.0]
    d = discovery(resolver, fetch, clock)

    async def go() -> None:
        results = await asyncio.gather(*(d.policy_for("example.com") for _ in range(20)))
        assert all(r.policy is not None for r in results)
    asyncio.run(go())
    assert fetch.count == 1
