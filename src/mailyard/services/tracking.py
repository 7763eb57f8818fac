"""What the public tracking endpoints need behind them, kept off the request path.

A pixel or a click must answer in well under a millisecond of work, thousands of
times a second, so a request does no storage I/O in the common case:

* :class:`CampaignCache` keeps, per campaign, whether it tracks and its link list,
  for a few seconds (links are append-only: a click index past the cached list makes
  the caller reload it once before answering 404).  The cache is per process.
* :class:`HitRecorder` takes each genuine hit into a bounded in-memory buffer and a
  thread of its own turns the buffer into campaign events every ``interval`` seconds
  (or sooner once ``batch`` hits wait): it looks up the contact's domain and the
  delivery time of the message (both cached; a delivery not yet recorded is looked
  for again after ``retry_unknown`` seconds), classifies the hit
  (:func:`mailyard.bulk.engagement.hit_event`) and writes each campaign's events in
  one transaction.  A hit for a contact that no longer exists (erased) is dropped.
  Bursts of clicks are seen within one process: clicks of one message that reach
  two HTTP workers within the burst window are judged each with its own worker's
  share.  :meth:`HitRecorder.close` writes what is left (the worker calls it on
  shutdown); a buffer that overflows drops new hits and logs how many.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from mailyard.bulk.campaigns.store import CampaignStore
from mailyard.bulk.engagement import Hit, hit_event, recipient_domain
from mailyard.bulk.machine import DEFAULT_RULES, Action, Interaction, MachineRules
from mailyard.bulk.report import CampaignEvent, EventKind
from mailyard.bulk.store import ContactStore
from mailyard.bulk.tracking import TokenKind, TokenSigner, tracking_key
from mailyard.config import Config
from mailyard.obs import log_event
from mailyard.services.contacts import Contacts
from mailyard.services.report_pages import CampaignReports
from mailyard.services.unsubscribe import Unsubscribes

log = logging.getLogger("mailyard.http")


@dataclass(frozen=True)
class CampaignView:
    """What a tracking request needs to know about its campaign."""

    id: int
    exists: bool
    tracking: bool = False
    links: tuple[str, ...] = ()
    loaded: float = 0.0


class CampaignCache:
    """Campaign id -> :class:`CampaignView`, refreshed after ``ttl`` seconds.  ``peek``
    never blocks (the event loop calls it); ``load`` reads the store (a thread)."""

    def __init__(self, store: CampaignStore, *, ttl: float = 5.0, size: int = 1024,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.ttl = ttl
        self.size = size
        self.clock = clock
        self._views: dict[int, CampaignView] = {}

    def peek(self, campaign_id: int, link: int | None = None) -> CampaignView | None:
        """The cached view if it is fresh (and, for a click, knows link ``link``)."""
        view = self._views.get(campaign_id)
        if view is None or self.clock() - view.loaded > self.ttl:
            return None
        if link is not None and view.exists and link >= len(view.links):
            return None
        return view

    def load(self, campaign_id: int) -> CampaignView:
        campaign = self.store.get_campaign(campaign_id)
        now = self.clock()
        if campaign is None:
            view = CampaignView(campaign_id, False, loaded=now)
        else:
            view = CampaignView(campaign_id, True, campaign.spec.tracking,
                                tuple(self.store.links(campaign_id)), now)
        if len(self._views) >= self.size and campaign_id not in self._views:
            self._views.pop(next(iter(self._views)))
        self._views[campaign_id] = view
        return view


class _Bounded(dict[tuple[int, int], tuple[float | None, float]]):
    """A dict that forgets its oldest entry past ``size``."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, key: tuple[int, int], value: tuple[float | None, float]) -> None:
        if len(self) >= self.size and key not in self:
            self.pop(next(iter(self)))
        self[key] = value


class HitRecorder:
    def __init__(self, campaigns: CampaignStore, contacts: ContactStore, *,
                 interval: float = 0.2, batch: int = 500, max_pending: int = 100_000,
                 rules: MachineRules = DEFAULT_RULES, cache_size: int = 100_000,
                 retry_unknown: float = 2.0) -> None:
        self.campaigns = campaigns
        self.contacts = contacts
        self.interval = interval
        self.batch = batch
        self.max_pending = max_pending
        self.rules = rules
        self.retry_unknown = retry_unknown
        self._pending: deque[Hit] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one flush at a time
        self._thread: threading.Thread | None = None
        self._domains: dict[int, str] = {}
        self._delivered = _Bounded(cache_size)
        self._cache_size = cache_size
        self._recent: dict[tuple[int, int], list[Interaction]] = {}
        self.dropped = 0
        self.recorded = 0

    # --- the request side (event loop) ------------------------------------------------
    def add(self, hit: Hit) -> bool:
        """Queue ``hit``; False (and nothing recorded) when the buffer is full."""
        if len(self._pending) >= self.max_pending:
            self.dropped += 1
            return False
        self._pending.append(hit)
        if len(self._pending) == self.batch:  # the thread also wakes every interval
            self._wake.set()
        return True

    # --- the recorder thread ----------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="hit-recorder",
                                            daemon=True)
            self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread and write every hit still waiting."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.flush()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception as exc:  # a bug must not stop recording for good: logged
                log_event(log, "tracking recorder failed", level=logging.ERROR,
                          error=type(exc).__name__, exc_info=exc)

    def flush(self) -> int:
        """Record every waiting hit now; returns how many events were written."""
        with self._lock:
            dropped, self.dropped = self.dropped, 0
            if dropped:
                log_event(log, "tracking hits dropped", level=logging.WARNING,
                          count=dropped, reason="buffer full")
            written = 0
            while self._pending:
                hits = [self._pending.popleft()
                        for _ in range(min(self.batch, len(self._pending)))]
                written += self._write(hits)
            self.recorded += written
            return written

    def _write(self, hits: list[Hit]) -> int:
        per_campaign: dict[int, tuple[list[CampaignEvent], list[dict[str, str]]]] = {}
        try:
            for hit in hits:
                made = self._event(hit)
                if made is not None:
                    events, data = per_campaign.setdefault(hit.token.campaign_id, ([], []))
                    events.append(made[0])
                    data.append(made[1])
            for campaign_id, (events, data) in per_campaign.items():
                self.campaigns.record_events(campaign_id, events, data)
        except sqlite3.Error as exc:
            log_event(log, "tracking events not recorded", level=logging.ERROR,
                      count=len(hits), error=str(exc))
            return 0
        return sum(len(events) for events, _ in per_campaign.values())

    def _event(self, hit: Hit) -> tuple[CampaignEvent, dict[str, str]] | None:
        domain = self._domain(hit.token.contact_id)
        if domain is None:
            return None
        recent = self._recent_clicks(hit)
        made = hit_event(hit, domain, self._delivered_at(hit), recent, self.rules)
        if hit.token.kind == TokenKind.CLICK and hit.method.upper() != "HEAD":
            recent.append(hit.interaction())
        return made

    def _domain(self, contact_id: int) -> str | None:
        found = self._domains.get(contact_id)
        if found is not None:
            return found
        contact = self.contacts.get_contact_by_id(contact_id)
        if contact is None:
            return None
        if len(self._domains) >= self._cache_size:
            self._domains.pop(next(iter(self._domains)))
        domain = recipient_domain(contact.address)
        self._domains[contact_id] = domain
        return domain

    def _delivered_at(self, hit: Hit) -> float | None:
        """When the message was delivered; an unknown time is asked again once
        ``retry_unknown`` seconds (of hit time) have passed."""
        key = hit.message
        known = self._delivered.get(key)
        if known is not None and known[0] is not None:
            return known[0]
        if known is not None and hit.at - known[1] < self.retry_unknown:
            return None
        times = [e.at for campaign_id, e in self.campaigns.contact_events(key[1])
                 if campaign_id == key[0] and e.kind == EventKind.DELIVERED]
        first = min(times) if times else None
        self._delivered.put(key, (first, hit.at))
        return first

    def _recent_clicks(self, hit: Hit) -> list[Interaction]:
        """The clicks of the same message within the burst window before ``hit``
        (older ones, and messages with none left, are forgotten)."""
        horizon = hit.at - self.rules.burst_window
        if len(self._recent) > self._cache_size:
            self._recent = {k: v for k, v in self._recent.items()
                            if v and v[-1].at >= horizon}
        kept = [i for i in self._recent.get(hit.message, ())
                if i.at >= horizon and i.action == Action.CLICK]
        self._recent[hit.message] = kept
        return kept


@dataclass
class CampaignPublic:
    """Everything behind the public campaign endpoints of one HTTP worker."""

    signer: TokenSigner
    cache: CampaignCache
    recorder: HitRecorder
    unsubscribes: Unsubscribes
    reports: CampaignReports


def open_campaign_public(config: Config, contacts: Contacts) -> CampaignPublic:
    """Built over the embedded stores, keys derived from the server secret; the
    recorder thread is started."""
    from mailyard.daemon.secret import derive_key, load_server_secret
    from mailyard.services.setup import open_campaign_store, public_url

    secret = load_server_secret(config.data_path)
    store = open_campaign_store(contacts)
    signer = TokenSigner(tracking_key(secret))
    recorder = HitRecorder(store, contacts.store)
    recorder.start()
    return CampaignPublic(signer, CampaignCache(store), recorder,
                          Unsubscribes(store, contacts.store, signer),
                          CampaignReports(store, derive_key(secret, "report link"),
                                          public_url(config)))
