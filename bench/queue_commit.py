"""Micro benchmark of the queue's hot path: durable commits per second.

``N`` concurrent writers in one process (like the sessions of one SMTP worker) each
stream a message of ``SIZE`` bytes into a :class:`FileSpool` and await its commit,
over and over, for ``SECONDS``.  Reported: commits per second, latency percentiles,
and how many group commits (directory fsync + index insert) served them.  Optionally
also ``--processes`` worker processes doing the same at once (like several SMTP
workers sharing one spool).

Run: ``python3 bench/queue_commit.py [--writers 20] [--size 2048] [--seconds 5]``
(the spool goes into a fresh directory under ``--dir``, default the system temp dir,
which must be on the disk you want to measure).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from mailyard.envelope import Envelope, Recipient  # noqa: E402
from mailyard.queue.spool import COMMIT_THREADS, FileSpool  # noqa: E402

ENVELOPE = Envelope("sender@example.org", (Recipient("rcpt@example.net"),),
                    client_ip="127.0.0.1", client_helo="bench.example.org")


def make_content(size: int) -> bytes:
    head = b"From: sender@example.org\r\nTo: rcpt@example.net\r\nSubject: bench\r\n\r\n"
    line = b"x" * 76 + b"\r\n"
    body = line * ((size - len(head)) // len(line) + 1)
    return (head + body)[:size]


async def run_writers(spool: FileSpool, writers: int, content: bytes,
                      seconds: float) -> list[float]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def writer() -> None:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            w = spool.open_message(ENVELOPE)
            w.write(content)
            await w.commit()
            latencies.append(time.perf_counter() - start)

    await asyncio.gather(*(writer() for _ in range(writers)))
    return latencies


def one_process(root: str, writers: int, size: int, seconds: float,
                threads: int = COMMIT_THREADS, use_uvloop: bool = True) -> dict[str, float]:
    if use_uvloop:
        try:
            import uvloop
            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        except ImportError:
            pass
    spool = FileSpool(Path(root), "bench.example.org", commit_threads=threads)
    cpu = time.process_time()
    start = time.perf_counter()
    latencies = asyncio.run(run_writers(spool, writers, make_content(size), seconds))
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
    batches = spool._r.group.batches  # noqa: SLF001 - a figure for the report
    spool.close()
    latencies.sort()
    return {
        "commits": len(latencies),
        "seconds": round(elapsed, 3),
        "commits_per_s": round(len(latencies) / elapsed, 1),
        "group_commits": batches,
        "cpu_ms_per_commit": round(cpu / len(latencies) * 1000, 3),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
    }


def sequential_baseline(root: Path, size: int, seconds: float) -> dict[str, float]:
    """The same disk work without the spool, one message at a time: write, fdatasync,
    rename, directory fsync.  Shows what the disk gives at this moment."""
    tmp, final = root / "baseline-tmp", root / "baseline-msg"
    tmp.mkdir()
    final.mkdir()
    content = make_content(size)
    dir_fd = os.open(final, os.O_RDONLY | os.O_DIRECTORY)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        path = tmp / str(n)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, content)
        os.fdatasync(fd)
        os.close(fd)
        os.rename(path, final / str(n))
        os.fsync(dir_fd)
        n += 1
    elapsed = time.perf_counter() - start
    os.close(dir_fd)
    return {"commits_per_s": round(n / elapsed, 1), "ms_each": round(elapsed / n * 1000, 3)}


def _child(args: tuple[str, int, int, float, int, bool],
           queue: multiprocessing.Queue[dict]) -> None:
    queue.put(one_process(*args))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--writers", type=int, default=20)
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--processes", type=int, default=1)
    p.add_argument("--threads", type=int, default=COMMIT_THREADS,
                   help="file-stage threads per process")
    p.add_argument("--no-uvloop", action="store_true", help="use the default event loop")
    p.add_argument("--dir", default=None)
    p.add_argument("--baseline", type=float, default=2.0, metavar="SECONDS",
                   help="first measure sequential write+fdatasync+rename+dirfsync (0: skip)")
    args = p.parse_args()
    base = Path(tempfile.mkdtemp(prefix="mailyard-bench-", dir=args.dir))
    root = str(base / "queue")
    FileSpool(Path(root), "bench.example.org").close()
    try:
        baseline = sequential_baseline(base, args.size, args.baseline) if args.baseline else {}
        if args.processes == 1:
            results = [one_process(root, args.writers, args.size, args.seconds, args.threads,
                                   not args.no_uvloop)]
        else:
            ctx = multiprocessing.get_context("spawn")
            queue: multiprocessing.Queue[dict] = ctx.Queue()
            procs = [ctx.Process(target=_child, args=((root, args.writers, args.size,
                                                       args.seconds, args.threads,
                                                       not args.no_uvloop), queue))
                     for _ in range(args.processes)]
            for proc in procs:
                proc.start()
            results = [queue.get() for _ in procs]
            for proc in procs:
                proc.join()
        total = sum(r["commits_per_s"] for r in results)
        print(json.dumps({"writers_per_process": args.writers, "size": args.size,
                          "threads": args.threads, "uvloop": not args.no_uvloop,
                          "processes": args.processes, "total_commits_per_s": round(total, 1),
                          "sequential_baseline": baseline,
                          "per_process": results}, indent=2))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
