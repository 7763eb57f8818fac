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

A render process (:mod:`.renderproc`) reads its calls from a pipe and exits at its
end, so a campaign worker that dies, SIGKILLed or not, leaves no renderer behind.  It
imports only what rendering and signing need (no queue, SMTP, DNS resolver or
configuration), which keeps each at about 45 MiB.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import os
import pickle
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mailyard.bulk.campaigns.compose import CampaignMailer, Composed, SendSettings
from mailyard.bulk.campaigns.model import Campaign
from mailyard.bulk.campaigns.renderproc import read_frame, write_frame
from mailyard.bulk.templates.render import RenderFailure

if TYPE_CHECKING:
    from mailyard.config import DkimConfig

__all__ = ["ComposeJob", "RenderPool", "RenderSigning", "compose_chunk", "render_processes"]

#: Past this many links a campaign is composed in the campaign worker: the list would
#: be copied to a render process with every chunk.
MAX_POOLED_LINKS = 1000
_STOP_WAIT = 5.0  # seconds a render process gets to exit once its input is closed


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
    """What a render process needs to sign as ingest would: ``[dkim]``'s ``headers``,
    ``oversign`` and ``expiry``, and the data directory with the keys (plain values,
    so a render process does not load the configuration)."""

    headers: tuple[str, ...]
    oversign: tuple[str, ...]
    expiry: int
    data_dir: str

    @classmethod
    def of(cls, dkim: DkimConfig, data_dir: str) -> RenderSigning | None:
        """From ``[dkim]`` (None when signing is off)."""
        if not dkim.enabled:
            return None
        return cls(tuple(dkim.headers), tuple(dkim.oversign), dkim.expiry, data_dir)


def render_processes(configured: int, cpus: int | None = None) -> int:
    """The pool size for ``bulk.render_workers``: -1 is one fewer than the CPUs (the
    campaign worker signs and queues on the remaining one), 0 none."""
    if configured >= 0:
        return configured
    return max((cpus or os.cpu_count() or 1) - 1, 0)


# --- in the render process ------------------------------------------------------------
_mailers: dict[int, CampaignMailer] = {}
_sign: Callable[[bytes, float], bytes] | None = None  # DkimSigning.sign, when signing


def start(signing: RenderSigning | None) -> None:
    """A render process's first call."""
    global _sign
    if signing is not None:
        from mailyard.dkim.keys import KeyStore
        from mailyard.dkim.signing import Signing, signer_factory

        _sign = Signing(KeyStore(signing.data_dir), signer_factory(
            signing.headers, signing.oversign, signing.expiry)).sign


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
            out.append(Composed(built.sender, built.message,
                                _sign(built.message.data, time.time())))
        else:
            out.append(built)
    mailer.stored_links = len(mailer.links)
    return out


# --- in the campaign worker -----------------------------------------------------------
class _Stop:
    """Tells a process's thread to close its pipe."""


#: Calls a render process's thread keeps in its pipe at once.
DEPTH = 2
_PIPE_SIZE = 1 << 20  # asked for each pipe (Linux caps it at fs.pipe-max-size)


def _widen(fd: int) -> int:
    """Make the pipe ``fd`` hold up to ``_PIPE_SIZE`` bytes where the system lets us;
    what it holds now."""
    setsz = getattr(fcntl, "F_SETPIPE_SZ", None)
    getsz = getattr(fcntl, "F_GETPIPE_SZ", None)
    if setsz is not None:
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, setsz, _PIPE_SIZE)
    if getsz is not None:
        with contextlib.suppress(OSError):
            return int(fcntl.fcntl(fd, getsz))
    return 4096  # POSIX guarantees at least PIPE_BUF


class _Lane:
    """The calls written to one process and not yet answered.  At most ``DEPTH`` of
    them, and together no more bytes than the pipe holds (``room``) unless there is
    only one: then the writer never blocks while the process blocks writing an
    answer, which would leave both waiting."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.closing = False  # the writer closed the pipe: an end after that is normal
        self._cond = threading.Condition()
        self._inflight: collections.deque[tuple[Future[Any] | None, int]] = collections.deque()
        self._bytes = 0
        self._broken = False

    def wait_for_room(self) -> bool:
        """Until another call may go (False: the process is gone)."""
        with self._cond:
            while not self._broken and len(self._inflight) >= DEPTH:
                self._cond.wait()
            return not self._broken

    def admit(self, future: Future[Any] | None, size: int) -> bool:
        """Wait until a call of ``size`` bytes fits, and count it in flight."""
        with self._cond:
            while not self._broken and self._inflight and (
                    len(self._inflight) >= DEPTH or self._bytes + size > self.room):
                self._cond.wait()
            if self._broken:
                return False
            self._inflight.append((future, size))
            self._bytes += size
            return True

    def answered(self) -> Future[Any] | None:
        with self._cond:
            future, size = self._inflight.popleft()
            self._bytes -= size
            self._cond.notify_all()
            return future

    def idle(self) -> bool:
        with self._cond:
            return not self._inflight

    def break_(self) -> list[Future[Any]]:
        """The process is gone: the calls it will not answer."""
        with self._cond:
            self._broken = True
            lost = [f for f, _ in self._inflight if f is not None]
            self._inflight.clear()
            self._bytes = 0
            self._cond.notify_all()
            return lost


class _PipeExecutor(Executor):
    """An executor over ``processes`` render processes, each served by two threads of
    the campaign worker (one writes calls, one reads answers); a process that dies
    breaks the executor (its calls raise BrokenProcessPool, as a process pool's do).

    Up to ``DEPTH`` calls wait in a process's pipe (see :class:`_Lane`), so the
    process starts the next chunk as soon as it has written an answer, instead of
    waiting for the campaign worker to read the answer and write the next call (its
    threads need the GIL for that, which the event loop holds most of the time)."""

    def __init__(self, processes: int, signing: RenderSigning | None) -> None:
        self._calls: queue.SimpleQueue[tuple[Future[Any], bytes] | _Stop] = queue.SimpleQueue()
        self._broken = False
        self._procs = [subprocess.Popen(
            [sys.executable, "-m", "mailyard.bulk.campaigns.renderproc"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True)
            for _ in range(processes)]
        first = pickle.dumps((start, (signing,)), pickle.HIGHEST_PROTOCOL)
        self._threads = [threading.Thread(target=self._serve, args=(proc, first),
                                          name=f"render-{proc.pid}", daemon=True)
                         for proc in self._procs]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        assert not kwargs
        future: Future[Any] = Future()
        if self._broken:
            future.set_exception(BrokenProcessPool("a render process died"))
        else:
            self._calls.put((future, pickle.dumps((fn, args), pickle.HIGHEST_PROTOCOL)))
        return future

    def _serve(self, proc: subprocess.Popen[bytes], first: bytes) -> None:
        """The writing side of one process (its reading side is a thread of its own)."""
        assert proc.stdin is not None and proc.stdout is not None
        lane = _Lane(_widen(proc.stdin.fileno()))
        _widen(proc.stdout.fileno())  # an answer is written whole while the next is made
        threading.Thread(target=self._read, args=(proc, lane), name=f"render-{proc.pid}-in",
                         daemon=True).start()
        try:
            if not self._write(proc, lane, None, first):
                return
            while lane.wait_for_room():
                item = self._calls.get()
                if isinstance(item, _Stop):
                    return
                future, call = item
                if future.set_running_or_notify_cancel() and \
                        not self._write(proc, lane, future, call):
                    return
        finally:
            lane.closing = True
            with contextlib.suppress(OSError):
                proc.stdin.close()

    def _write(self, proc: subprocess.Popen[bytes], lane: _Lane, future: Future[Any] | None,
               call: bytes) -> bool:
        """One call into the pipe once it fits; False when the process is gone."""
        assert proc.stdin is not None
        if not lane.admit(future, len(call)):
            if future is not None:
                future.set_exception(BrokenProcessPool("a render process died"))
            return False
        try:
            write_frame(proc.stdin, call)  # type: ignore[arg-type]
        except OSError:
            self._lost(lane)
            return False
        return True

    def _read(self, proc: subprocess.Popen[bytes], lane: _Lane) -> None:
        """The answers of one process, each to the oldest call in flight."""
        assert proc.stdout is not None
        while True:
            try:
                frame = read_frame(proc.stdout)  # type: ignore[arg-type]
            except OSError:
                frame = None
            if frame is None:  # the process ended: normal only once told to
                if not (lane.closing and lane.idle()):
                    self._lost(lane)
                return
            future = lane.answered()
            ok, value = pickle.loads(frame)
            if future is not None:
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    def _lost(self, lane: _Lane) -> None:
        """A process is gone: its calls in flight, and every call not yet taken by a
        thread, fail; so does every later call."""
        self._broken = True
        error = BrokenProcessPool("a render process died")
        for future in lane.break_():
            future.set_exception(error)
        while True:
            try:
                item = self._calls.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Stop):
                self._calls.put(item)  # another thread's
                break
            if item[0].set_running_or_notify_cancel():
                item[0].set_exception(error)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if cancel_futures:
            while True:
                try:
                    item = self._calls.get_nowait()
                except queue.Empty:
                    break
                if not isinstance(item, _Stop):
                    item[0].cancel()
        for _ in self._threads:
            self._calls.put(_Stop())
        if not wait:
            for proc in self._procs:
                proc.kill()
        for proc in self._procs:
            try:
                proc.wait(_STOP_WAIT if wait else None)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class RenderPool:
    """``processes`` render processes, started when first used."""

    def __init__(self, processes: int, signing: RenderSigning | None = None) -> None:
        self.processes = processes
        self.signing = signing
        self._executor: _PipeExecutor | None = None

    def executor(self) -> Executor:
        if self._executor is None:
            self._executor = _PipeExecutor(self.processes, self.signing)
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
