"""``mailyard serve``: the supervisor process.

It prepares the data directory (and the self-signed certificate when none is
configured), binds every listening socket, sweeps the queue, starts the SMTP and the
HTTP worker processes (restarting any that dies), and itself runs the delivery
dispatcher and the metrics endpoint.  SIGTERM or SIGINT stops everything cleanly: workers answer
421 to connected clients, deliveries in flight finish or are left for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mailyard.config import Config, config_to_dict
from mailyard.daemon.cpus import allowed_cpus, worker_cpus
from mailyard.daemon.fdlimit import raise_nofile_limit
from mailyard.daemon.listeners import HTTP_KINDS, KINDS, Listener, bind_listeners
from mailyard.daemon.privileges import (
    PrivilegeError,
    check_runnable,
    drop_privileges,
    give_file,
    give_tree,
    server_identity,
)
from mailyard.daemon.process import install_event_loop_policy, settle
from mailyard.daemon.startup import startup_lines
from mailyard.metrics import QUEUE_RECIPIENTS, WORKER_RESTARTS
from mailyard.obs import (
    Metrics,
    collect,
    log_event,
    remove_metrics_files,
    retire_metrics_file,
    setup_logging,
    write_private,
)
from mailyard.queue.api import StorageError
from mailyard.tls import ensure_certificate

if TYPE_CHECKING:
    from mailyard.delivery.dispatcher import Dispatcher
    from mailyard.queue.threaded import ThreadedSpool

log = logging.getLogger("mailyard.supervisor")

SMTP_KINDS = tuple(k for k in KINDS if k not in HTTP_KINDS)  # SMTP and POP3 workers
RESTART_BACKOFF = (0.5, 1, 2, 5, 10)
POLL_INTERVAL = 1.0
# The queue gauges count every queued recipient (tens of ms with 100,000 queued), so
# they are refreshed as often as the workers dump their counters, not every poll.
METRICS_INTERVAL = 5.0


# Directories the server keeps private (created 0700; a looser mode is repaired at
# start).  queue/'s own subdirectories are handled by the queue layout.
PRIVATE_DIRS = ("", "queue", "mail", "run", "run/metrics", "tls")


def prepare_data_dir(config: Config) -> tuple[str, str]:
    data = config.data_path
    for sub in PRIVATE_DIRS:
        path = data / sub if sub else data
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        # data_dir itself keeps the search bits the maildrop needs (queue/pickup.py
        # gives it 0711 and maildrop/ 1733): repaired to 0711, not 0700, so that its
        # mode does not change back and forth at each start.
        mode = stat.S_IMODE(path.stat().st_mode)
        keep = mode & 0o011 if path == data else 0
        if mode & 0o077 != keep:
            os.chmod(path, 0o700 | keep)
    if config.tls.cert:
        return config.tls.cert, config.tls.key
    return ensure_certificate(data, config.hostname)


class DispatcherCrashed(Exception):
    """The delivery dispatcher ended on an unexpected exception (logged with its
    traceback); the server stops rather than accept mail it would not deliver."""


class StartError(Exception):
    """The server cannot start (one line for the operator)."""


class WorkerProcess:
    def __init__(self, slot: int, argv: list[str], fds: list[int], payload: bytes) -> None:
        self.slot = slot
        self.argv = argv
        self.fds = fds
        self.payload = payload
        self.proc: subprocess.Popen[bytes] | None = None
        self.failures = 0
        self.started = 0.0

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, pass_fds=self.fds,
                                     close_fds=True)
        assert self.proc.stdin is not None
        self.proc.stdin.write(self.payload)
        self.proc.stdin.close()
        self.started = time.monotonic()


class Supervisor:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.metrics = Metrics()
        self.workers: list[WorkerProcess] = []
        self.listeners: list[Listener] = []
        self.stopping = False
        self.queue: ThreadedSpool | None = None
        self._background: set[asyncio.Task[None]] = set()

    # --- start-up --------------------------------------------------------------
    def smtp_worker_cpus(self) -> list[int | None]:
        """One entry per SMTP worker: the CPU it keeps to, or None (see daemon.cpus)."""
        allowed = allowed_cpus()
        count = self.config.smtpd.workers or len(allowed)
        return worker_cpus(self.config.smtpd.cpu_affinity, count, allowed)

    def start_workers(self, tls_pem: tuple[str, str], notify_w: int) -> None:
        # The certificate and key were read before privileges were dropped (a key
        # readable only by root still works); they reach the workers on the payload
        # pipe, so the workers' configuration names no file they may not be able to read.
        worker_config = config_to_dict(self.config)
        worker_config["tls"] = {"cert": "", "key": ""}
        payload = json.dumps({"config": worker_config, "source": self.config.source,
                              "cert_pem": tls_pem[0], "key_pem": tls_pem[1]}).encode()
        no_cpu: list[int | None] = [None] * self.config.http.workers
        for module, kinds, cpus in (
                ("mailyard.daemon.worker", SMTP_KINDS, self.smtp_worker_cpus()),
                ("mailyard.daemon.http_worker", HTTP_KINDS, no_cpu)):
            mine = [listener for listener in self.listeners if listener.kind in kinds]
            if not mine:
                continue
            argv = [sys.executable, "-m", module, "--notify-fd", str(notify_w)]
            fds = [notify_w]
            for listener in mine:
                fd = listener.sock.fileno()
                os.set_inheritable(fd, True)
                argv += ["--listen", f"{listener.kind}:{fd}"]
                fds.append(fd)
            for slot, cpu in enumerate(cpus):
                extra = [] if cpu is None else ["--cpu", str(cpu)]
                worker = WorkerProcess(slot, argv + extra, fds, payload)
                worker.start()
                self.workers.append(worker)
        # The campaign sending engine: one process, no listener (see campaign_worker).
        worker = WorkerProcess(0, [sys.executable, "-m", "mailyard.daemon.campaign_worker",
                                   "--notify-fd", str(notify_w)], [notify_w], payload)
        worker.start()
        self.workers.append(worker)

    def run(self) -> int:
        cfg = self.config
        os.umask(0o077)
        identity = server_identity(cfg)  # before anything is created: fails fast
        setup_logging(cfg.log.format, cfg.log.level, cfg.log.file, buffered=True)
        raise_nofile_limit()  # inherited by the workers, which fit their caps to it
        try:
            cert, key = prepare_data_dir(cfg)
            # Latin-1 carries any bytes unchanged through the JSON payload.
            tls_pem = (Path(cert).read_text("latin-1"), Path(key).read_text("latin-1"))
        except OSError as exc:
            raise StartError(f"cannot prepare {exc.filename or cfg.data_dir}: "
                             f"{exc.strerror}") from None
        self.listeners = bind_listeners(cfg)
        if identity is not None:
            # Everything that needed root is done: give data_dir (and the log file the
            # workers open) to the server's user and become that user for good.
            try:
                give_tree(cfg.data_path, identity)
                if cfg.log.file:
                    give_file(cfg.log.file, identity)
                drop_privileges(identity)
                check_runnable(identity)
            except OSError as exc:
                raise PrivilegeError(f"cannot switch to user {cfg.user!r}: "
                                     f"{exc.strerror} ({exc.filename or 'set ids'})") from None
        # Files of processes from an earlier run would be added to this run's figures.
        remove_metrics_files(cfg.data_path / "run" / "metrics")
        from mailyard.queue.spool import FileSpool
        from mailyard.queue.threaded import ThreadedSpool

        spool = FileSpool(cfg.data_path / "queue", cfg.hostname)
        spool.sweep()
        queue = self.queue = ThreadedSpool(spool)
        notify_r, notify_w = os.pipe()
        self.start_workers(tls_pem, notify_w)
        os.close(notify_w)
        for line in startup_lines(cfg, self.listeners, len(self.workers), os.getpid()):
            print(line, flush=True)
        install_event_loop_policy()
        try:
            asyncio.run(self.main_loop(queue, notify_r))
        except DispatcherCrashed as exc:
            # The traceback is in the log; the terminal gets one line.
            print(f"mailyard: delivery stopped on an internal error ({exc}); see the log",
                  file=sys.stderr, flush=True)
            return 1
        finally:
            self.stop_workers()
            queue.close()
            for listener in self.listeners:
                listener.sock.close()
        return 0

    # --- running ---------------------------------------------------------------
    async def main_loop(self, queue: ThreadedSpool, notify_r: int) -> None:
        """The composition root of the supervisor: the queue (already open), ingest over
        it, the directory, the dispatcher, the maildrop pickup."""
        from mailyard.delivery.dispatcher import Dispatcher
        from mailyard.directory.sqlite import SqliteDirectory
        from mailyard.ingest.pipeline import ingest_for
        from mailyard.queue.pickup import MaildropPickup

        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        # The dispatcher checks for directory changes once per claim round and per
        # batch of local deliveries, not at every lookup.
        directory = SqliteDirectory(self.config.data_path / "directory.db", self.config,
                                    refresh_each_lookup=False)
        dispatcher = Dispatcher(self.config, queue, ingest_for(self.config, queue), directory,
                                self.metrics)
        os.set_blocking(notify_r, False)

        def on_notify() -> None:
            try:
                data = os.read(notify_r, 65536)
            except BlockingIOError:
                return
            if data:
                dispatcher.wake()

        loop.add_reader(notify_r, on_notify)
        metrics_server = await self.start_metrics_endpoint()
        dispatch_task = asyncio.create_task(dispatcher.run())
        pickup_task = asyncio.create_task(  # noqa: F841
            MaildropPickup(self.config, queue.spool).run())
        settle()
        log_event(log, "mailyard started", workers=len(self.workers),
                  listeners=",".join(f"{s.kind}={s.bound}" for s in self.listeners))
        dumped = float("-inf")
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), POLL_INTERVAL)
                self.reap_workers()
                if time.monotonic() - dumped >= METRICS_INTERVAL:
                    await self.dump_metrics(dispatcher, queue)
                    dumped = time.monotonic()
                if dispatch_task.done() and not dispatch_task.cancelled():
                    exc = dispatch_task.exception()
                    if exc is not None:
                        log_event(log, "dispatcher crashed; stopping", level=logging.CRITICAL,
                                  exc_info=exc)
                        raise DispatcherCrashed(f"{type(exc).__name__}: {exc}")
        finally:
            loop.remove_reader(notify_r)
            self.stopping = True
            await dispatcher.stop()
            dispatch_task.cancel()
            if metrics_server is not None:
                metrics_server.close()
            log_event(log, "mailyard stopping")

    def reap_workers(self) -> None:
        now = time.monotonic()
        for worker in self.workers:
            proc = worker.proc
            if proc is None or proc.poll() is None:
                continue
            if self.stopping:
                continue
            worker.failures = worker.failures + 1 if now - worker.started < 30 else 1
            delay = RESTART_BACKOFF[min(worker.failures, len(RESTART_BACKOFF)) - 1]
            log_event(log, "worker exited; restarting", level=logging.WARNING,
                      pid=proc.pid, status=proc.returncode, delay=delay)
            self.metrics.inc(WORKER_RESTARTS)
            # Its counters live on in the supervisor's figures; its gauges go.
            retire_metrics_file(self.config.data_path / "run" / "metrics" / f"{proc.pid}.json",
                                self.metrics)
            worker.proc = None
            # A message the worker made durable but did not get to index is found by
            # the sweep (safe while other processes work), off the event loop.
            if self.queue is not None:
                task = asyncio.create_task(self._recover(self.queue))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
            asyncio.get_running_loop().call_later(delay, self._restart, worker)

    @staticmethod
    async def _recover(queue: ThreadedSpool) -> None:
        try:
            await queue.recover()
        except StorageError as exc:
            log_event(log, "queue sweep after a worker death failed", level=logging.ERROR,
                      error=str(exc))

    def _restart(self, worker: WorkerProcess) -> None:
        if not self.stopping:
            worker.start()

    def stop_workers(self, timeout: float = 10.0) -> None:
        self.stopping = True
        for worker in self.workers:
            if worker.proc and worker.proc.poll() is None:
                worker.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for worker in self.workers:
            if worker.proc is None:
                continue
            try:
                worker.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.proc.kill()
                worker.proc.wait()

    # --- metrics ---------------------------------------------------------------
    async def dump_metrics(self, dispatcher: Dispatcher, queue: ThreadedSpool) -> None:
        dispatcher.update_gauges()
        try:
            for state, count in (await queue.stats()).items():
                self.metrics.set(QUEUE_RECIPIENTS, count, state=state.value)
        except StorageError as exc:
            log_event(log, "cannot read queue figures", level=logging.WARNING, error=str(exc))
        metrics_dir = self.config.data_path / "run" / "metrics"
        try:
            self.metrics.dump(metrics_dir)
            if self.config.metrics.file:
                tmp = Path(self.config.metrics.file + ".tmp")
                write_private(tmp, collect(metrics_dir))
                os.replace(tmp, self.config.metrics.file)
        except OSError as exc:
            log_event(log, "cannot write metrics", level=logging.WARNING, error=str(exc))

    async def start_metrics_endpoint(self) -> asyncio.AbstractServer | None:
        if not self.config.metrics.listen:
            return None
        from mailyard.config import parse_hostport
        from mailyard.daemon.metrics_http import MetricsEndpoint

        host, port = parse_hostport(self.config.metrics.listen)
        metrics_dir = self.config.data_path / "run" / "metrics"
        return await MetricsEndpoint(lambda: collect(metrics_dir)).start(host, port)
