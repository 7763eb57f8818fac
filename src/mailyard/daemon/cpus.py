"""Which CPUs the server may use, and which one each SMTP worker keeps to.

The SMTP workers do the most work per message, and most of it touches the same code
and data again and again (the session, the checks, the queue's commit path).  Left to
the scheduler, a worker moves between CPUs whenever both are busy for a moment, and
starts over on one whose caches hold another process's data; kept to one CPU, it finds
its own there.  On the bench machine (2 CPUs) 20 of 22 alternating pairs of runs
(relay, accept, local delivery) did better kept: a median 13% less CPU per message
and 18% more messages per second (bench/README.md, "SMTP workers on a CPU each").

``[smtpd] cpu_affinity = "auto"`` (the default) therefore keeps SMTP worker *i* on the
*i*-th CPU the server may use, when there are at least two and no fewer CPUs than
workers: with more workers than CPUs, two would share one while another might be
free, so then the scheduler decides.  The workers share their listening sockets, so
a worker whose CPU is busy with something else accepts fewer connections and the
others take them: nothing waits for a CPU that is taken.  The supervisor, the
campaign and HTTP workers stay free to run anywhere.  ``"none"``: no worker is kept.

The CPUs the server may use are its affinity mask (``taskset``, a container's
cpuset), not every CPU of the machine; ``workers = 0`` starts one worker per CPU of
that mask.
"""

from __future__ import annotations

import os

from mailyard.config import CpuAffinity


def allowed_cpus() -> list[int]:
    """The CPUs this process may run on, in order."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return list(range(os.cpu_count() or 1))


def worker_cpus(mode: CpuAffinity, workers: int, allowed: list[int]) -> list[int | None]:
    """The CPU each of ``workers`` SMTP workers keeps to (None: any of ``allowed``)."""
    if mode is CpuAffinity.AUTO and len(allowed) >= 2 and workers <= len(allowed):
        return list(allowed[:workers])  # list[int | None], for the type checker
    return [None] * workers


def keep_to_cpu(cpu: int) -> str | None:
    """Keep this process (and the threads it starts later) on ``cpu``; an error
    message when the system refuses (the process then runs anywhere, as before)."""
    try:
        os.sched_setaffinity(0, {cpu})
    except (AttributeError, OSError, ValueError) as exc:
        return f"cannot keep to CPU {cpu}: {exc}"
    return None
