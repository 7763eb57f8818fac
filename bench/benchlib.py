"""Shared pieces of the benchmarks in this directory.

* :class:`MailyardServer` runs ``mailyard serve`` on a private data directory and port.
* :class:`ProcessTreeSampler` samples the memory (RSS summed over a process and all its
  descendants, and PSS, which counts shared pages once) and CPU time of a server's
  process tree from ``/proc``; ``ps`` could do the same but one read of ``/proc`` per
  sample is cheaper and gives the whole tree at one instant.
* :func:`run_smtp_source` drives Postfix's ``smtp-source`` load generator.
* :func:`write_result` stores a run's figures as JSON under ``bench/results/``.

The private Postfix instance and ``smtp-sink`` come from ``tests/support/postfix.py``.
Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
sys.path.insert(0, str(REPO / "tests"))

from support.postfix import (  # noqa: E402  (needs the path above)
    PostfixError,
    PostfixInstance,
    SmtpSink,
    free_port,
    postfix_available,
    postfix_tool,
)

__all__ = [
    "BenchError",
    "MailyardServer",
    "PostfixError",
    "PostfixInstance",
    "ProcessTreeSampler",
    "SmtpSink",
    "SourceRun",
    "TreeUsage",
    "free_port",
    "install_signal_handlers",
    "machine_info",
    "postfix_available",
    "raise_nofile",
    "spread_out",
    "run_smtp_source",
    "write_result",
]

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

#: Mailyard's inbound checks (SPF, DKIM and ARC verification, DMARC), on by default in
#: the server, turned off where a bench compares the MTA's own work with Postfix's,
#: which runs no such check (``--inbound-checks`` keeps them on).
INBOUND_CHECKS_OFF: dict[str, Any] = {
    "spf": {"enabled": False}, "dkim": {"verify": False}, "dmarc": {"enabled": False}}


def add_inbound_checks_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--inbound-checks", action="store_true",
                   help="keep Mailyard's inbound checks (SPF, DKIM/ARC, DMARC) on, as "
                        "its defaults have them; off by default here: Postfix runs none")


def inbound_checks(args: argparse.Namespace) -> dict[str, Any]:
    """The configuration sections that set the inbound checks as ``args`` asks."""
    return {} if args.inbound_checks else dict(INBOUND_CHECKS_OFF)


class BenchError(RuntimeError):
    """A benchmark step failed; the message says which and how."""


class Interrupted(BaseException):
    """SIGTERM/SIGHUP received: unwind so every server is stopped."""


def install_signal_handlers() -> None:
    def handler(signum: int, _frame: object) -> None:
        raise Interrupted(f"signal {signum}")
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


def raise_nofile(wanted: int) -> int:
    """Raise the open-file limit (inherited by servers started later); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def spread_out(directory: Path) -> bool:
    """Have ext4 place the directories made in ``directory`` like top-level ones
    (``chattr +T``: the Orlov allocator puts each in a block group with plenty of free
    inodes), away from the block group where everything else in /tmp is created and
    deleted.  Without a journal, ext4 skips every inode of a group freed in the last
    one to six minutes, one by one, before it hands out a new one; on a machine where
    tests come and go, creating a queue file then costs several times more, for
    whichever server runs.  Best effort: False when it could not be set."""
    try:
        done = subprocess.run(["chattr", "+T", str(directory)], capture_output=True,
                              timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


# --- /proc sampling -------------------------------------------------------------------

def _read_stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the command name (which may contain spaces); index 0 is "state".
    return text.rsplit(")", 1)[1].split()


def tree_pids(root: int) -> list[int]:
    """``root`` and all its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _read_stat(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(children.get(pid, ()))
    return pids


def _kb_fields(path: str, names: Sequence[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    try:
        with open(path) as f:
            for line in f:
                key = line.split(":", 1)[0]
                if key in names:
                    found[key] = int(line.split()[1])
    except OSError:
        pass
    return found


def tree_memory_kb(pids: Sequence[int]) -> tuple[int, int]:
    """(sum of RSS, sum of PSS) in KiB over ``pids``."""
    pss = sum(_kb_fields(f"/proc/{pid}/smaps_rollup", ("Pss",)).get("Pss", 0) for pid in pids)
    return tree_rss_kb(pids), pss


def tree_rss_kb(pids: Sequence[int]) -> int:
    """Sum of RSS in KiB over ``pids`` from ``statm`` (processes gone count 0)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm", "rb") as f:
                total += int(f.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total * PAGE_KB


def tree_cpu_seconds(root: int) -> float:
    """User+system CPU of the live tree, plus what ``root`` collected from reaped children.

    Processes reaped by a descendant other than ``root`` are lost when their parent
    dies; the servers measured here reap their children from the root or keep them."""
    total = 0
    for pid in tree_pids(root):
        fields = _read_stat(pid)
        if fields is None:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
        total += int(fields[13]) + int(fields[14])  # cutime, cstime (reaped children)
    return total / CLK_TCK


@dataclass
class TreeUsage:
    """Memory of a process tree over a sampling window (KiB; MiB in the properties)."""

    baseline_rss_kb: int = 0
    baseline_pss_kb: int = 0
    peak_rss_kb: int = 0
    peak_pss_kb: int = 0
    last_rss_kb: int = 0
    peak_processes: int = 0
    samples: int = 0

    def as_dict(self) -> dict[str, Any]:
        mib = 1024.0
        return asdict(self) | {
            "peak_rss_mib": round(self.peak_rss_kb / mib, 1),
            "peak_pss_mib": round(self.peak_pss_kb / mib, 1),
            "rss_growth_mib": round((self.peak_rss_kb - self.baseline_rss_kb) / mib, 1),
            "pss_growth_mib": round((self.peak_pss_kb - self.baseline_pss_kb) / mib, 1),
        }


class ProcessTreeSampler:
    """Samples a process tree's memory in a background thread until stopped.

    The sampler shares the machine with the server it measures, so it keeps its own
    cost down: every ``interval`` it adds up the resident set of the processes it
    knows (``/proc/PID/statm``, a counter read), and only every ``full_every``
    samples does it look for new processes (a scan of ``/proc``) and read PSS
    (``smaps_rollup``, which walks every page table of the process).  Reading all of
    it ten times a second took 22% of a core during a Postfix relay round (70
    processes) and 7% during a Mailyard one (4): an unequal tax on the servers compared
    (bench/README.md)."""

    def __init__(self, root_pid: int, interval: float = 0.1, full_every: int = 10) -> None:
        self.root_pid = root_pid
        self.interval = interval
        self.full_every = max(1, full_every)
        self.usage = TreeUsage()
        self._pids: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def sample(self, full: bool = True) -> tuple[int, int, int]:
        """One sample: (RSS KiB, PSS KiB or 0 when not ``full``, processes)."""
        u = self.usage
        if full or not self._pids:
            self._pids = tree_pids(self.root_pid)
            rss, pss = tree_memory_kb(self._pids)
            u.peak_pss_kb = max(u.peak_pss_kb, pss)
        else:
            rss, pss = tree_rss_kb(self._pids), 0
        u.samples += 1
        u.last_rss_kb = rss
        u.peak_rss_kb = max(u.peak_rss_kb, rss)
        u.peak_processes = max(u.peak_processes, len(self._pids))
        return rss, pss, len(self._pids)

    def start(self) -> ProcessTreeSampler:
        rss, pss, _ = self.sample()
        self.usage.baseline_rss_kb, self.usage.baseline_pss_kb = rss, pss
        self._thread.start()
        return self

    def _run(self) -> None:
        n = 0
        while not self._stop.wait(self.interval):
            n += 1
            self.sample(full=n % self.full_every == 0)

    def stop(self) -> TreeUsage:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.sample()
        return self.usage


# --- Mailyard --------------------------------------------------------------------------

def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def to_toml(data: Mapping[str, Any]) -> str:
    """A TOML document for ``data``: top-level keys, then one [table] per nested dict."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, Mapping)]
    for name, table in data.items():
        if isinstance(table, Mapping):
            lines += ["", f"[{name}]"]
            lines += [f"{k} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def mailyard_command() -> list[str]:
    """How to run the ``mailyard`` console script of the interpreter running us."""
    beside = Path(sys.executable).parent / "mailyard"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("mailyard")
    if found:
        return [found]
    # Not installed: the server runs this checkout's code, as the bench itself does.
    if not os.environ.get("PYTHONPATH"):
        os.environ["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent / "src")
    return [sys.executable, "-m", "mailyard.cli.main"]


class MailyardServer:
    """``mailyard serve`` with a generated configuration under ``workdir``."""

    def __init__(self, workdir: Path, settings: Mapping[str, Any], *,
                 port: int | None = None, hostname: str = "mailyard.bench.test") -> None:
        self.workdir = workdir
        self.port = port if port is not None else free_port()
        self.data_dir = workdir / "data"
        self.config_path = workdir / "mailyard.toml"
        self.log_path = workdir / "mailyard.log"
        self.config: dict[str, Any] = {
            "hostname": hostname,
            "data_dir": str(self.data_dir),
            "listen": {"smtp": [f"127.0.0.1:{self.port}"]},
        }
        if os.geteuid() == 0:  # benchmarks run as root keep the server as root
            self.config.update(user="root", allow_root=True)
        for key, value in settings.items():
            if isinstance(value, Mapping) and isinstance(self.config.get(key), dict):
                self.config[key] = {**self.config[key], **value}
            else:
                self.config[key] = value
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise BenchError("mailyard is not running")
        return self.proc.pid

    def command(self, *args: str) -> list[str]:
        return [*mailyard_command(), "--config", str(self.config_path), *args]

    def start(self, timeout: float = 60.0) -> MailyardServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(to_toml(self.config))
        argv = [*mailyard_command(), "serve", "--config", str(self.config_path)]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"`{' '.join(argv)}` exited with status "
                                 f"{self.proc.returncode}:\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                    sock.settimeout(5)
                    banner = sock.recv(512)
                    sock.sendall(b"QUIT\r\n")
                if banner.startswith(b"220"):
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise BenchError(f"mailyard on port {self.port} sent no 220 banner within "
                         f"{timeout}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, then SIGKILL to the whole process group after ``timeout``."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # workers left behind, if any
        if proc.poll() is None:
            proc.wait(5)

    def cli(self, *args: str, timeout: float = 120.0) -> str:
        argv = self.command(*args)
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"`{' '.join(argv)}` timed out after {timeout}s") from exc
        if done.returncode != 0:
            raise BenchError(f"`{' '.join(argv)}` exited {done.returncode}:\n"
                             f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
        return done.stdout

    def queue_entries(self) -> list[dict[str, Any]]:
        """``mailyard queue list --json``."""
        out = self.cli("queue", "list", "--json")
        try:
            entries = json.loads(out)
        except json.JSONDecodeError as exc:
            raise BenchError(f"queue list --json printed no JSON: {out[:500]!r}") from exc
        if not isinstance(entries, list):
            raise BenchError(f"queue list --json printed {type(entries).__name__}, not a list")
        return entries

    def queue_file_count(self) -> int:
        """Committed message files in the spool (``queue/msg``): a cheap poll for an
        empty queue, confirmed afterwards with :meth:`queue_entries`."""
        try:
            return sum(1 for _ in os.scandir(self.data_dir / "queue" / "msg"))
        except FileNotFoundError:
            return 0

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return "(no log)"
        return "\n".join(text)

    def __enter__(self) -> MailyardServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- smtp-source ------------------------------------------------------------------------

@dataclass
class SourceRun:
    argv: list[str]
    elapsed: float
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def failure(self) -> str:
        """What went wrong: its last output line first, then the command and output."""
        lines = [line for line in self.output.splitlines() if line.strip()]
        last = lines[-1] if lines else "(no output)"
        return (f"smtp-source exited {self.returncode}: {last}\n"
                f"command: {' '.join(self.argv)}\n{self.output}")


def run_smtp_source(port: int, *, messages: int, sessions: int, size: int,
                    sender: str, recipient: str, timeout: float,
                    extra: Sequence[str] = (), message_file: Path | None = None) -> SourceRun:
    """One ``smtp-source`` run (a new connection per message: no ``-d``); wall time.
    With ``message_file`` every message is that file as it is (``-F``: header and body,
    LF line ends, sent with CRLF and dot-stuffed) instead of a generated ``size``-byte
    one."""
    content = ["-F", str(message_file)] if message_file is not None else ["-l", str(size)]
    argv = [postfix_tool("smtp-source"), "-s", str(sessions), "-m", str(messages),
            *content, "-f", sender, "-t", recipient, "-M", "source.bench.test",
            *extra, f"127.0.0.1:{port}"]
    start = time.monotonic()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"") + (exc.stderr or b"")
        text = out.decode(errors="replace") if isinstance(out, bytes) else str(out)
        return SourceRun(argv, time.monotonic() - start, -1, f"timed out after {timeout}s\n{text}")
    return SourceRun(argv, time.monotonic() - start, done.returncode,
                     (done.stdout + done.stderr)[-4000:])


# --- results ------------------------------------------------------------------------------

def host_cpu_times() -> list[int]:
    """The machine's CPU time counters (the first line of /proc/stat), for
    :func:`host_cpu_share`."""
    try:
        with open("/proc/stat") as f:
            return [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return []


def host_cpu_share(before: list[int]) -> dict[str, float]:
    """How the machine's CPU time went since ``before``: the share, in percent, that
    was idle and that the hypervisor gave to other guests (steal).  A round with much
    steal ran on a slower machine than one without."""
    after = host_cpu_times()
    delta = [b - a for a, b in zip(before, after, strict=False)]
    total = sum(delta)
    if len(delta) < 8 or total <= 0:
        return {}
    return {"idle_pct": round(100 * (delta[3] + delta[4]) / total, 1),
            "steal_pct": round(100 * delta[7] / total, 1)}


def host_note(share: Mapping[str, float]) -> str:
    """``share`` for a round's line: ", steal 3.1%, idle 12.0%"."""
    if not share:
        return ""
    return f", steal {share['steal_pct']}%, idle {share['idle_pct']}%"


def machine_info() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = _kb_fields("/proc/meminfo", ("MemTotal",)).get("MemTotal", 0)
    try:
        fs = subprocess.run(["df", "--output=source,fstype", tempfile.gettempdir()],
                            capture_output=True, text=True,
                            timeout=10).stdout.splitlines()[-1].split()
    except (OSError, subprocess.TimeoutExpired, IndexError):
        fs = ["?", "?"]
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": round(mem / 1024 / 1024, 1),
        "tmp_device": fs[0],
        "tmp_fs": fs[-1],
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postfix": _postfix_version(),
        "loadavg_at_start": os.getloadavg()[0],
    }


def _postfix_version() -> str:
    try:
        out = subprocess.run([postfix_tool("postconf"), "-d", "-h", "mail_version"],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired, RuntimeError):
        return "?"
    return out.strip() or "?"


def write_result(name: str, data: Mapping[str, Any]) -> Path:
    """bench/results/<name>-<UTC time>.json, plus <name>-latest.json; the first path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    data = {**data, "loadavg_at_end": os.getloadavg()[0]}
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    text = json.dumps(data, indent=2, default=str) + "\n"
    path = RESULTS_DIR / f"{name}-{stamp}.json"
    path.write_text(text)
    (RESULTS_DIR / f"{name}-latest.json").write_text(text)
    return path


@dataclass
class SideResult:
    """What one server did in one benchmark (filled in step by step)."""

    server: str
    ok: bool = False
    error: str = ""
    figures: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"server": self.server, "ok": self.ok, "error": self.error, **self.figures}


def ratio(a: float | None, b: float | None) -> float | None:
    if not a or not b:
        return None
    return round(a / b, 3)


def combine_rounds(server: str, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One server's rounds in one record: the median round's figures at the top level
    (rates, CPU, memory), min/max of the rate, and every round under ``rounds``."""
    failed = [r for r in rounds if not r["ok"]]
    if failed or not rounds:
        first = failed[0] if failed else {"error": "no rounds run"}
        return {**first, "server": server, "ok": False, "rounds": rounds}
    ordered = sorted(rounds, key=lambda r: r["msgs_per_s"])
    median = ordered[len(ordered) // 2]
    rates = [r["msgs_per_s"] for r in rounds]
    return {**median, "server": server, "ok": True, "msgs_per_s_min": min(rates),
            "msgs_per_s_max": max(rates), "rounds": rounds}


def run_main(main: Callable[[], int]) -> int:
    """Run a bench's ``main``; an interruption (Ctrl-C, SIGTERM, SIGHUP) exits 130 after
    the servers were stopped by the ``finally`` blocks on the way out."""
    install_signal_handlers()
    try:
        return main()
    except (Interrupted, KeyboardInterrupt) as exc:
        print(f"\ninterrupted ({exc or 'Ctrl-C'}); servers stopped", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"{Path(sys.argv[0]).name}: {exc}", file=sys.stderr)
        return 1
