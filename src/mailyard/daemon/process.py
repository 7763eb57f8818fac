"""How a worker process starts and stops: the part the SMTP/IMAP/POP3 worker, the
HTTP worker and the campaign worker share.

The supervisor starts each with ``--notify-fd`` (the queue-notification pipe), the
SMTP and HTTP workers also with ``--listen KIND:FD`` for the sockets it bound as
root, and writes the configuration (and the certificate and key) as JSON to its
standard input.  Every worker logs the same way, runs on uvloop, ignores SIGINT
(the supervisor decides when to stop: a Ctrl-C reaches the whole process group)
and stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from mailyard.config import Config, config_from_dict
from mailyard.daemon.cpus import keep_to_cpu
from mailyard.obs import log_event, setup_logging

log = logging.getLogger("mailyard.worker")

__all__ = ["WorkerStart", "cannot_start", "install_event_loop_policy", "on_stop_signal",
           "pem_files", "settle", "start_process"]


@dataclass(frozen=True)
class WorkerStart:
    """What the supervisor handed a worker."""

    config: Config
    notify_fd: int
    listeners: list[tuple[str, socket.socket]]
    cert: str = ""  # paths to load with ssl; empty for a worker that listens on nothing
    key: str = ""


def install_event_loop_policy() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def settle() -> None:
    """Once a process is set up: what it made so far (modules, configuration, compiled
    patterns, the services it composed) lives as long as the process, so it is taken
    out of the cyclic garbage collector's view (``gc.freeze``).  A full collection then
    looks only at what the work since has made, not at the 40,000-65,000 objects of the
    imports (in a busy supervisor each full collection cost about 38 ms of CPU before,
    about 14 ms after)."""
    gc.collect()
    gc.freeze()


def pem_files(cert_pem: str, key_pem: str) -> tuple[str, str]:
    """Paths ``ssl`` can load the certificate and key from, without writing them to
    disk: anonymous memory files of this process (the supervisor read the originals
    before it gave up root)."""
    paths = []
    for name, text in (("cert", cert_pem), ("key", key_pem)):
        fd = os.memfd_create(f"mailyard-{name}", os.MFD_CLOEXEC)
        os.write(fd, text.encode("latin-1"))
        paths.append(f"/proc/self/fd/{fd}")
    return paths[0], paths[1]


def start_process(prog: str, argv: list[str] | None, *, listens: bool) -> WorkerStart:
    """Read the arguments and standard input, set up logging and the event loop
    policy; a worker that ``listens`` gets its sockets and TLS files."""
    parser = argparse.ArgumentParser(prog=prog)
    if listens:
        parser.add_argument("--listen", action="append", default=[], metavar="KIND:FD")
        parser.add_argument("--cpu", type=int, default=None,
                            help="keep to this CPU (see mailyard.daemon.cpus)")
    parser.add_argument("--notify-fd", type=int, required=True)
    args = parser.parse_args(argv)
    # Before any thread starts (the log flusher, the commit threads): they inherit it.
    cpu = getattr(args, "cpu", None)
    refused = keep_to_cpu(cpu) if cpu is not None else None
    payload = json.loads(sys.stdin.read())
    cert = key = ""
    if listens:
        cert, key = pem_files(payload["cert_pem"], payload["key_pem"])
    config = config_from_dict(payload["config"], payload.get("source", ""))
    setup_logging(config.log.format, config.log.level, config.log.file, buffered=True)
    if refused is not None:
        log_event(log, "cpu affinity not set", level=logging.WARNING, error=refused)
    elif cpu is not None:
        log_event(log, "worker keeps to a cpu", cpu=cpu)
    listeners = []
    for item in args.listen if listens else ():
        kind, fd = item.split(":")
        sock = socket.socket(fileno=int(fd))
        sock.setblocking(False)
        listeners.append((kind, sock))
    install_event_loop_policy()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when to stop
    return WorkerStart(config, args.notify_fd, listeners, cert, key)


def on_stop_signal(stop: Callable[[], None]) -> None:
    """Call ``stop`` on SIGTERM (and SIGINT, should one be sent to this process)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)


def cannot_start(log: logging.Logger, event: str, exc: Exception) -> NoReturn:
    """Log why the worker cannot run and exit with status 1 (the supervisor sees it)."""
    log_event(log, event, level=logging.ERROR, error=str(exc))
    raise SystemExit(1) from None
