"""Campaign messages composed in other processes (``bulk.render_workers``).

Rendering a campaign message (Jinja, the skeleton's values and tracked links with
their HMAC tokens, the MIME build with quoted-printable) and DKIM-signing it (an
RSA-2048 private-key operation, 1-3 ms) are most of the CPU a message costs.  One
Python process is one core at most, so the campaign worker hands recipients to a pool
of render processes in small chunks, and queues what comes back while they render
the next ones.  A render process signs what it makes with the same keys and signers
as ingest (``RenderSigning``, :meth:`mailyard.dkim.hook.DkimSigning.sign`); ingest
checks such a signature with the key's public half and keeps it, or signs afresh
(see :mod:`mailyard.dkim.hook`).

Nothing about exactly-once changes: the runner still marks a batch ``sending`` before
its first message goes to ingest and ``queued`` after its last commit; a render process
only turns a recipient into bytes.  They hold no state that matters: a process killed
mid-chunk is a chunk composed again in the campaign worker.

**Link indexes have one owner.**  A tracked link's index is in every token that names
it, so only the campaign worker may give a new link its index (and store it before a
message carrying it is queued).  A render process gets the campaign's link list with
each chunk; a recipient whose message would need a link not in it is sent back
unrendered (``None``) and composed in the campaign worker, which adds the link.  Once
stored, the next chunks carry it.  A campaign with personalised links (a new URL per
contact) is therefore composed in the campaign worker, message by message, as without
a pool.

A render process watches its parent and exits when it is gone (a SIGKILLed campaign
worker leaves no renderer behind).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from mailyard.bulk.campaigns.compose import CampaignMailer, Composed, SendSettings
from mailyard.bulk.campaigns.model import Campaign
from mailyard.bulk.templates.render import RenderFailure
from mailyard.config import DkimConfig

__all__ = ["ComposeJob", "RenderPool", "RenderSigning", "compose_chunk", "render_processes"]

#: Past this many links a campaign is composed in the campaign worker: the list would
#: be copied to a render process with every chunk.
MAX_POOLED_LINKS = 1000
_PARENT_POLL = 1.0  # seconds between a render process's looks at its parent


@dataclass(frozen=True)
class ComposeJob:
    """One recipient's message, as :meth:`CampaignMailer.compose` takes it."""

    contact_id: int
    address: str
    name: str
    attributes: Mapping[str, Any]
    list_name: str
    variant: int | None


@dataclass(frozen=True)
class RenderSigning:
    """What a render process needs to sign as ingest would (``[dkim]``, the keys)."""

    dkim: DkimConfig
    data_dir: str


def render_processes(configured: int, cpus: int | None = None) -> int:
    """The pool size for ``bulk.render_workers``: -1 is one fewer than the CPUs (the
    campaign worker signs and queues on the remaining one), 0 none."""
    if configured >= 0:
        return configured
    return max((cpus or os.cpu_count() or 1) - 1, 0)


# --- in the render process ------------------------------------------------------------
_mailers: dict[int, CampaignMailer] = {}
_sign: Callable[[bytes, float], bytes] | None = None  # DkimSigning.sign, when signing


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(_PARENT_POLL)
        if os.getppid() != parent:
            os._exit(0)


def _start(parent: int, signing: RenderSigning | None) -> None:
    global _sign
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the campaign worker stops us
    threading.Thread(target=_watch_parent, args=(parent,), name="parent-watch",
                     daemon=True).start()
    if signing is not None:
        from mailyard.dkim.hook import signing_for

        _sign = signing_for(signing.dkim, signing.data_dir).sign


def compose_chunk(campaign: Campaign, settings: SendSettings, links: Sequence[str],
                  jobs: Sequence[ComposeJob], now: float
                  ) -> list[Composed | RenderFailure | None]:
    """The messages of ``jobs`` (run in a render process); None for one that needs a
    link not in ``links``."""
    mailer = _mailers.get(campaign.id)
    if mailer is None or mailer.campaign.spec != campaign.spec or mailer.settings != settings:
        mailer = _mailers[campaign.id] = CampaignMailer(campaign, settings, links)
    else:
        mailer.links.extend_to(links)
    known = len(links)
    out: list[Composed | RenderFailure | None] = []
    for job in jobs:
        built = mailer.compose(job.contact_id, job.address, job.name, job.attributes,
                               job.list_name, job.variant, now)
        if len(mailer.links) > known:  # not ours to number
            mailer.links.truncate(known)
            out.append(None)
        elif _sign is not None and isinstance(built, Composed):
            out.append(replace(built, dkim=_sign(built.message.data, time.time())))
        else:
            out.append(built)
    mailer.stored_links = len(mailer.links)
    return out


# --- in the campaign worker -----------------------------------------------------------
class RenderPool:
    """``processes`` render processes, started when first used."""

    def __init__(self, processes: int, signing: RenderSigning | None = None) -> None:
        self.processes = processes
        self.signing = signing
        self._executor: ProcessPoolExecutor | None = None

    def executor(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                self.processes, mp_context=multiprocessing.get_context("spawn"),
                initializer=_start, initargs=(os.getpid(), self.signing))
        return self._executor

    def reset(self) -> None:
        """After a render process died: a fresh pool next time."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
