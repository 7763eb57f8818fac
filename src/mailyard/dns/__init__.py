"""DNS for Mailyard: one :class:`Resolver` interface, the dnspython resolver, a TTL
cache, and an in-memory resolver for tests.

Build the production resolver with :func:`make_resolver`; pass resolvers explicitly to
whatever needs DNS (routing, SPF, DKIM, MTA-STS), never through a global.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from mailyard.config import DeliveryConfig
from mailyard.dns.api import (
    AnswerKind,
    BaseResolver,
    DnsError,
    DnsNameError,
    DnsTemporaryError,
    MxKind,
    MxRecord,
    MxResult,
    RecordSet,
    Resolver,
    ascii_domain,
)
from mailyard.dns.cache import CachingResolver
from mailyard.dns.dnspython import DnsPythonResolver
from mailyard.dns.static import StaticResolver

__all__ = [
    "AnswerKind",
    "BaseResolver",
    "CachingResolver",
    "DnsError",
    "DnsNameError",
    "DnsPythonResolver",
    "DnsTemporaryError",
    "MxKind",
    "MxRecord",
    "MxResult",
    "RecordSet",
    "Resolver",
    "StaticResolver",
    "ascii_domain",
    "make_resolver",
]


def make_resolver(delivery: DeliveryConfig,
                  clock: Callable[[], float] = time.monotonic) -> CachingResolver:
    """The resolver delivery uses: ``delivery.dns_servers`` (or the system resolver)
    with ``delivery.dns_timeout``, behind the cache."""
    upstream = DnsPythonResolver(list(delivery.dns_servers), delivery.dns_timeout)
    return CachingResolver(upstream, clock=clock)
