"""DNS for Mailyard: one :class:`Resolver` interface, the dnspython resolver, a TTL
cache, and an in-memory resolver for tests.

Build the production resolver with :func:`make_resolver`; pass resolvers explicitly to
whatever needs DNS (routing, SPF, DKIM, MTA-STS), never through a global.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from mailyard.config import DeliveryConfig
    from mailyard.dns.cache import CachingResolver
    from mailyard.dns.dnspython import DnsPythonResolver
    from mailyard.dns.static import StaticResolver

# Imported when first asked for: a process that only needs the interface and
# ascii_domain (DKIM signing in a campaign render process) does not load dnspython.
_LAZY = {"CachingResolver": "mailyard.dns.cache", "DnsPythonResolver": "mailyard.dns.dnspython",
         "StaticResolver": "mailyard.dns.static"}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


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
    from mailyard.dns.cache import CachingResolver
    from mailyard.dns.dnspython import DnsPythonResolver

    upstream = DnsPythonResolver(list(delivery.dns_servers), delivery.dns_timeout)
    return CachingResolver(upstream, clock=clock)
