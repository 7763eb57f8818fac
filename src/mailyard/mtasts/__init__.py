"""MTA-STS (RFC 8461): the sending side's policy discovery, fetch, cache and MX
matching (:class:`Discovery`), and the receiving side's policy text."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from mailyard.dns.api import AnswerKind, DnsError, Resolver
from mailyard.mtasts.cache import CachedPolicy, PolicyCache
from mailyard.mtasts.fetch import Fetched, FetchFailed, fetch_policy
from mailyard.mtasts.policy import Invalid, Mode, Policy, parse_policy, parse_record

__all__ = ["Discovery", "Mode", "Policy", "StsResult"]

#: Fetches a domain's policy text (HTTPS in production, a function in tests).
Fetcher = Callable[[str], Awaitable[Fetched | FetchFailed]]
#: After a failed fetch, the same policy id is not fetched again for this long.
RETRY_FAILED_FETCH = 300.0
MAX_REMEMBERED_FAILURES = 10_000


@dataclass(frozen=True)
class StsResult:
    """What is known about a recipient domain's policy.  ``policy`` None: none
    applies (not published, or discovery failed); then ``failure`` is the TLS-RPT
    result type (``sts-policy-fetch-error``, ``sts-policy-invalid``,
    ``sts-webpki-invalid``) and ``detail`` says why, or both are empty."""

    policy: Policy | None
    policy_id: str = ""
    failure: str = ""
    detail: str = ""
    from_cache: bool = False


class Discovery:
    """RFC 8461 5.1: the TXT record says which policy id is current; a cached,
    unexpired policy with that id is used as it is; otherwise the policy is fetched,
    and when the fetch fails a cached unexpired policy is still used (a missing or
    broken TXT record does not remove one either: an attacker can strip TXT records)."""

    def __init__(self, resolver: Resolver, cache: PolicyCache, *, timeout: float = 10.0,
                 ca_file: str = "", clock: Callable[[], float] = time.time,
                 fetch: Fetcher | None = None) -> None:
        self.resolver = resolver
        self.cache = cache
        self.timeout = timeout
        self.ca_file = ca_file
        self.clock = clock
        self.fetch = fetch or self._fetch_https
        self._failed: dict[tuple[str, str], tuple[float, StsResult]] = {}
        self._inflight: dict[tuple[str, str], asyncio.Task[StsResult]] = {}

    async def policy_for(self, domain: str) -> StsResult:
        now = self.clock()
        cached = self.cache.get(domain)
        if cached is not None and not cached.fresh(now):
            cached = None
        record_id = await self._record_id(domain)
        if record_id is None:
            return self._from_cache(cached)
        if cached is not None and cached.policy_id == record_id:
            return self._from_cache(cached)
        failed = self._failed.get((domain, record_id))
        if failed is not None and now < failed[0]:
            return self._from_cache(cached) if cached is not None else failed[1]
        key = (domain, record_id)
        task = self._inflight.get(key)
        if task is None:  # one fetch for all the deliveries to a domain that wait for it
            task = asyncio.ensure_future(self._fetch(domain, record_id, cached, now))
            self._inflight[key] = task
            task.add_done_callback(lambda _: self._inflight.pop(key, None))
        return await asyncio.shield(task)

    async def _record_id(self, domain: str) -> str | None:
        try:
            answer = await self.resolver.query(f"_mta-sts.{domain}", "TXT")
        except DnsError:
            return None
        if answer.kind is not AnswerKind.ANSWER:
            return None
        record = parse_record(list(answer.records))
        return record.id if record is not None and not isinstance(record, Invalid) else None

    def _from_cache(self, cached: CachedPolicy | None) -> StsResult:
        if cached is None:
            return StsResult(None)
        policy = parse_policy(cached.text)
        if isinstance(policy, Invalid):  # cannot happen for what we stored
            return StsResult(None)
        return StsResult(policy, cached.policy_id, from_cache=True)

    async def _fetch(self, domain: str, record_id: str, cached: CachedPolicy | None,
                     now: float) -> StsResult:
        fetched = await self.fetch(domain)
        if isinstance(fetched, Fetched):
            policy = parse_policy(fetched.text)
            if not isinstance(policy, Invalid):
                await self.cache.put(CachedPolicy(domain, record_id, fetched.text, now,
                                                  now + policy.max_age))
                self._failed.pop((domain, record_id), None)
                return StsResult(policy, record_id)
            failure = StsResult(None, record_id, "sts-policy-invalid", policy.reason)
        else:
            kind = ("sts-webpki-invalid" if "certificate" in fetched.reason
                    else "sts-policy-fetch-error")
            failure = StsResult(None, record_id, kind, fetched.reason)
        if len(self._failed) >= MAX_REMEMBERED_FAILURES:
            self._failed.clear()
        self._failed[(domain, record_id)] = (now + RETRY_FAILED_FETCH, failure)
        if cached is not None:
            return self._from_cache(cached)
        return failure

    async def _fetch_https(self, domain: str) -> Fetched | FetchFailed:
        return await fetch_policy(domain, self.resolver, timeout=self.timeout,
                                  ca_file=self.ca_file)

    def close(self) -> None:
        self.cache.close()
