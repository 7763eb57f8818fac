"""Delivery pools: separate lanes out of the server for separate kinds of mail.

A pool (``[[delivery.pools]]``) has its own source addresses, HELO name, connection
slots, per-destination slots, idle connections, dead-destination and fair-share
state, and per-destination rates.  The default pool is all other mail, with the
``delivery.*`` settings, exactly as without pools.  So bulk mail in one pool never
waits for a connection slot held by another pool's mail, and a destination that
throttles a bulk sender's address does not see the personal mail's address at all.

A message's pool is chosen at ingest and kept in its queue record
(``Envelope.pool``); a name no longer configured falls back to the default pool.

Two rules keep the lanes apart where they still share something:

* the queue's per-destination sweeps (postponing all queued mail for a busy or dead
  domain, :mod:`mailyard.delivery.destinations`) are the default pool's only: a
  dedicated pool over its share or rate postpones just the entries it was handed,
  never another pool's mail for the same domain;
* a destination's rate (``rate_limits``, :mod:`mailyard.sending.rate`) is paced per
  pool; a message not yet due comes back as *postponed* until its time, without an
  attempt counted.

Source addresses are used round-robin among those of the next hop's address family;
a pool with source addresses but none of that family cannot reach the hop (it is
tried like an unreachable one), so its mail never leaves from the server's own
address by accident.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
from collections.abc import Iterator, Sequence

from mailyard.config import Config, DeliveryPool
from mailyard.delivery.destinations import Destinations
from mailyard.delivery.remote import ConnectionPool
from mailyard.sending.rate import RatePacer
from mailyard.tlsrpt.store import TlsOutcomes

DEFAULT_POOL = "default"


class SourceAddresses:
    """Round-robin over a pool's source addresses, per address family."""

    def __init__(self, addresses: Sequence[str]) -> None:
        self.by_family: dict[int, list[str]] = {4: [], 6: []}
        for a in addresses:
            self.by_family[ipaddress.ip_address(a).version].append(a)
        self._cycles: dict[int, Iterator[str]] = {
            v: itertools.cycle(lst) for v, lst in self.by_family.items() if lst}

    def __bool__(self) -> bool:
        return bool(self._cycles)

    def pick(self, destination: str) -> str | None:
        """The next source for ``destination`` (an IP address, else a host name: IPv4
        first); None when the pool has none of that family."""
        try:
            family = ipaddress.ip_address(destination.strip("[]")).version
        except ValueError:
            family = 4 if 4 in self._cycles else 6
        cycle = self._cycles.get(family)
        return next(cycle) if cycle is not None else None


class Lane:
    """One pool's sending resources in the dispatcher's process."""

    def __init__(self, name: str, config: Config, *, max_concurrency: int,
                 max_per_destination: int, helo_name: str = "",
                 source_addresses: Sequence[str] = (),
                 rate_limits: dict[str, str] | None = None, sweeps: bool = True,
                 tls_outcomes: TlsOutcomes | None = None) -> None:
        self.name = name
        self.max_per_destination = max_per_destination
        self.slots = asyncio.Semaphore(max_concurrency)
        self.domain_slots: dict[str, asyncio.Semaphore] = {}
        self.connections = ConnectionPool(config, helo_name=helo_name or config.hostname,
                                          sources=SourceAddresses(source_addresses),
                                          tls_outcomes=tls_outcomes)
        self.destinations = Destinations(config.delivery, sweeps=sweeps)
        self.pacer = RatePacer(rate_limits or {})
        self.rate_limits = dict(rate_limits or {})

    @classmethod
    def default(cls, config: Config, tls_outcomes: TlsOutcomes | None = None) -> Lane:
        d = config.delivery
        return cls(DEFAULT_POOL, config, max_concurrency=d.max_concurrency,
                   max_per_destination=d.max_per_destination, tls_outcomes=tls_outcomes)

    @classmethod
    def for_pool(cls, config: Config, pool: DeliveryPool,
                 tls_outcomes: TlsOutcomes | None = None) -> Lane:
        return cls(pool.name, config, max_concurrency=pool.max_concurrency,
                   max_per_destination=(pool.max_per_destination
                                        or config.delivery.max_per_destination),
                   helo_name=pool.helo_name, source_addresses=pool.source_addresses,
                   rate_limits=pool.rate_limits, sweeps=False, tls_outcomes=tls_outcomes)

    def domain_slot(self, domain: str) -> asyncio.Semaphore:
        sem = self.domain_slots.get(domain)
        if sem is None:
            sem = self.domain_slots[domain] = asyncio.Semaphore(self.max_per_destination)
        return sem

    def rate_of(self, domain: str) -> str:
        key = self.pacer._key(domain)  # noqa: SLF001 - the pacer's own matching rule
        return self.rate_limits.get(key, "") if key else ""


def lanes_for(config: Config, tls_outcomes: TlsOutcomes | None = None) -> dict[str, Lane]:
    lanes = {DEFAULT_POOL: Lane.default(config, tls_outcomes)}
    for pool in config.delivery.pools:
        lanes[pool.name] = Lane.for_pool(config, pool, tls_outcomes)
    return lanes
