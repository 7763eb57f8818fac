"""A private Postfix instance for interop tests and benchmarks.

:class:`PostfixInstance` writes its own ``main.cf``/``master.cf`` into a temporary
directory (with its own queue and data directories), listens on one loopback port
only, and is driven with the stock ``postfix -c DIR start|stop`` commands, so it
never touches the system's Postfix.  Three shapes are built in:

* :meth:`PostfixInstance.accept`: final destination for a domain, with delivery
  deferred (``defer_transports``) or every message put on hold, so accepted mail just
  stays in the queue.  Postfix fsyncs each queue file before it answers 250, the
  same durability promise Mailyard makes.
* :meth:`PostfixInstance.relay`: send everything to one next hop (``relayhost``).
* :meth:`PostfixInstance.deliver`: send mail for one domain to a next hop
  (``transport_maps``), refusing to relay anything else.

:class:`SmtpSink` runs Postfix's ``smtp-sink``, a next hop that accepts and discards
mail and counts what it received.

Starting Postfix needs root (the master process switches to ``mail_owner``).
Logs go to ``<root>/postfix.log`` through ``postlogd`` (no syslog needed).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from .ports import free_port

__all__ = [
    "PostfixError",
    "PostfixInstance",
    "PostfixUnavailable",
    "QUEUE_NAMES",
    "SmtpSink",
    "free_port",
    "postfix_available",
    "postfix_tool",
]

# Queue directories that hold mail (in the order mail moves through them).
QUEUE_NAMES = ("maildrop", "incoming", "active", "deferred", "hold")

_MASTER_CF = """\
# service  type  private unpriv chroot wakeup maxproc command
{listen}   inet  n       -       n       -       -       smtpd
pickup     unix  n       -       n       60      1       pickup
cleanup    unix  n       -       n       -       0       cleanup
qmgr       unix  n       -       n       300     1       qmgr
rewrite    unix  -       -       n       -       -       trivial-rewrite
bounce     unix  -       -       n       -       0       bounce
defer      unix  -       -       n       -       0       bounce
trace      unix  -       -       n       -       0       bounce
verify     unix  -       -       n       -       1       verify
flush      unix  n       -       n       1000?   0       flush
proxymap   unix  -       -       n       -       -       proxymap
proxywrite unix  -       -       n       -       1       proxymap
smtp       unix  -       -       n       -       -       smtp
relay      unix  -       -       n       -       -       smtp
showq      unix  n       -       n       -       -       showq
error      unix  -       -       n       -       -       error
retry      unix  -       -       n       -       -       error
discard    unix  -       -       n       -       -       discard
local      unix  -       n       n       -       -       local
anvil      unix  -       -       n       -       1       anvil
scache     unix  -       -       n       -       1       scache
postlog    unix-dgram n  -       n       -       1       postlogd
"""


class PostfixUnavailable(RuntimeError):
    """Postfix is not installed, or cannot be started here (not root)."""


class PostfixError(RuntimeError):
    """A postfix command failed or the instance did not come up; carries the log tail."""


def postfix_tool(name: str) -> str:
    """Full path of a Postfix program (``postfix``, ``smtp-source``, ...)."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin")
    if not found:
        raise PostfixUnavailable(f"{name} not found (install the 'postfix' package)")
    return found


def postfix_available() -> str | None:
    """None when a private instance can run here, else the reason it cannot."""
    try:
        for name in ("postfix", "postconf", "postqueue", "smtp-source", "smtp-sink"):
            postfix_tool(name)
    except PostfixUnavailable as exc:
        return str(exc)
    if os.geteuid() != 0:
        return "starting Postfix needs root"
    return None


def _inline_map(entries: Mapping[str, str]) -> str:
    return "inline:{ " + ", ".join(f"{k}={v}" for k, v in entries.items()) + " }"


class PostfixInstance:
    """One private Postfix listening on ``127.0.0.1:port``.

    Use as a context manager, or call :meth:`start` and :meth:`stop`; ``stop`` is safe
    to call twice and removes the directory when this object created it.
    """

    def __init__(
        self,
        settings: Mapping[str, str],
        *,
        port: int | None = None,
        hostname: str = "postfix.test",
        root: str | os.PathLike[str] | None = None,
    ) -> None:
        self.port = port if port is not None else free_port()
        self.hostname = hostname
        self._owns_root = root is None
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="postfix-"))
        # The daemons run as mail_owner and must be able to reach the queue directory.
        os.chmod(self.root, 0o755)
        self.config_dir = self.root / "etc"
        self.queue_dir = self.root / "queue"
        self.data_dir = self.root / "data"
        self.log_path = self.root / "postfix.log"
        self.settings = dict(settings)
        self._started = False

    # --- the three shapes ------------------------------------------------------------
    @classmethod
    def accept(
        cls,
        domain: str,
        *,
        recipients: Iterable[str] = ("postmaster",),
        deferral: str = "defer",
        extra: Mapping[str, str] | None = None,
        **kwargs: object,
    ) -> PostfixInstance:
        """Final destination for ``domain`` (only ``recipients``, local parts, exist);
        accepted mail stays queued.  ``deferral`` is ``"defer"`` (``defer_transports``:
        the queue manager moves mail to the deferred queue) or ``"hold"`` (every
        message goes straight to the hold queue)."""
        if deferral not in ("defer", "hold"):
            raise ValueError("deferral must be 'defer' or 'hold'")
        users = list(recipients)
        table = {u: "ok" for u in users} | {f"{u}@{domain}": "ok" for u in users}
        settings = {
            "mydestination": domain,
            "local_recipient_maps": _inline_map(table),
            "local_transport": "local",
        }
        if deferral == "defer":
            settings["defer_transports"] = "local smtp relay"
        else:
            settings["smtpd_end_of_data_restrictions"] = (
                "check_client_access " + _inline_map({"127.0.0.1": "HOLD"}))
        return cls(settings | dict(extra or {}), **kwargs)  # type: ignore[arg-type]

    @classmethod
    def relay(
        cls, nexthop: tuple[str, int], *, extra: Mapping[str, str] | None = None,
        **kwargs: object,
    ) -> PostfixInstance:
        """Accept mail for any domain from loopback and send it all to ``nexthop``."""
        host, port = nexthop
        settings = {"mydestination": "", "relayhost": f"[{host}]:{port}"}
        return cls(settings | dict(extra or {}), **kwargs)  # type: ignore[arg-type]

    @classmethod
    def deliver(
        cls, domain: str, nexthop: tuple[str, int], *,
        extra: Mapping[str, str] | None = None, **kwargs: object,
    ) -> PostfixInstance:
        """Accept mail for ``domain`` from anyone and send it to ``nexthop``; mail for
        other domains is relayed only for loopback clients (``mynetworks``)."""
        host, port = nexthop
        settings = {
            "mydestination": "",
            "relay_domains": domain,
            "transport_maps": _inline_map({domain: f"smtp:[{host}]:{port}"}),
        }
        return cls(settings | dict(extra or {}), **kwargs)  # type: ignore[arg-type]

    # --- configuration -----------------------------------------------------------------
    def main_cf(self) -> dict[str, str]:
        """Every parameter written to main.cf (base settings, then the shape's)."""
        base = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.data_dir),
            "meta_directory": "/etc/postfix",
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": self.hostname,
            "mydomain": self.hostname.partition(".")[2] or self.hostname,
            "myorigin": "$myhostname",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "relayhost": "",
            "alias_maps": "",
            "alias_database": "",
            "biff": "no",
            "append_dot_mydomain": "no",
            "delay_warning_time": "0",
            "smtpd_banner": "$myhostname ESMTP Postfix",
            "syslog_name": f"postfix-{self.port}",
            "maillog_file": str(self.log_path),
            "maillog_file_prefixes": str(self.root),
        }
        return base | self.settings

    def write_config(self) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        for d in (self.queue_dir, self.data_dir):
            d.mkdir(exist_ok=True)
        shutil.chown(self.data_dir, "postfix", "postfix")
        lines = [f"{k} = {v}" for k, v in self.main_cf().items()]
        (self.config_dir / "main.cf").write_text("\n".join(lines) + "\n")
        (self.config_dir / "master.cf").write_text(
            _MASTER_CF.format(listen=f"127.0.0.1:{self.port}"))
        self.log_path.touch()

    # --- running -------------------------------------------------------------------------
    def run(self, program: str, *args: str, timeout: float = 30.0) -> str:
        """Run a Postfix command against this instance's configuration; its output."""
        argv = [postfix_tool(program), "-c", str(self.config_dir), *args]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise PostfixError(f"{' '.join(argv)} timed out after {timeout}s") from exc
        if done.returncode != 0:
            raise PostfixError(
                f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}{done.stderr}"
                f"{self.log_tail()}")
        return done.stdout + done.stderr

    def start(self, timeout: float = 30.0) -> PostfixInstance:
        reason = postfix_available()
        if reason:
            raise PostfixUnavailable(reason)
        self.write_config()
        self.run("postfix", "check")
        self._started = True
        try:
            self.run("postfix", "start")
            self._wait_for_banner(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_for_banner(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                    banner = sock.recv(512)
                    sock.sendall(b"QUIT\r\n")
                if banner.startswith(b"220"):
                    return
                last = PostfixError(f"unexpected banner {banner!r}")
            except OSError as exc:
                last = exc
            time.sleep(0.1)
        raise PostfixError(f"Postfix on port {self.port} not ready after {timeout}s: "
                           f"{last}{self.log_tail()}")

    def master_pid(self) -> int | None:
        """PID of the running master process, or None."""
        try:
            pid = int((self.queue_dir / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the instance (``postfix stop``, then ``abort``, then SIGKILL)."""
        if self._started:
            self._started = False
            pid = self.master_pid()
            for command in ("stop", "abort"):
                if pid is None:
                    break
                with contextlib.suppress(PostfixError):
                    self.run("postfix", command, timeout=timeout)
                if _wait_gone(pid, timeout / 2):
                    pid = None
            if pid is not None:
                _kill_tree(pid)
        if self._owns_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostfixInstance:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    # --- the queue ---------------------------------------------------------------------
    def queue_files(self, queues: Iterable[str] = QUEUE_NAMES) -> list[Path]:
        """Complete queue files (Postfix sets the owner-execute bit once a file is whole)."""
        found: list[Path] = []
        for name in queues:
            base = self.queue_dir / name
            for dirpath, _dirs, files in os.walk(base):
                for fname in files:
                    path = Path(dirpath, fname)
                    try:
                        mode = path.lstat().st_mode
                    except FileNotFoundError:
                        continue  # moved to the next queue while we looked
                    if stat.S_ISREG(mode) and mode & stat.S_IXUSR:
                        found.append(path)
        return found

    def queue_count(self, queues: Iterable[str] = QUEUE_NAMES) -> int:
        """Messages queued.  A file moving to a later queue while we look is counted
        once (queue files keep their name; queues are scanned in the order mail moves)."""
        return len({path.name for path in self.queue_files(queues)})

    def queue_entries(self) -> list[dict[str, object]]:
        """The queue as ``postqueue -j`` reports it (one dict per message)."""
        out = self.run("postqueue", "-j")
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    def flush(self) -> None:
        """Ask the queue manager to retry deferred mail now."""
        self.run("postqueue", "-f")

    def wait_queue_empty(self, timeout: float = 60.0, interval: float = 0.05) -> float:
        """Wait until no message is queued; the seconds waited.  Raises PostfixError."""
        return self.wait_queue_count(0, timeout, interval, at_least=False)

    def wait_queue_count(self, count: int, timeout: float = 60.0, interval: float = 0.05,
                         *, at_least: bool = True,
                         queues: Iterable[str] = QUEUE_NAMES) -> float:
        """Wait until ``count`` complete messages (or more, with ``at_least``) are in
        ``queues``, or, with ``at_least=False``, until exactly ``count`` files (complete
        or not) are; the seconds waited."""
        queues = tuple(queues)
        start = time.monotonic()
        while True:
            n = self.queue_count(queues) if at_least else len(self._all_queue_files(queues))
            if (n >= count) if at_least else (n == count):
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                raise PostfixError(f"queue has {n} message(s), wanted {count} "
                                   f"after {timeout}s{self.log_tail()}")
            time.sleep(interval)

    def _all_queue_files(self, queues: Iterable[str] = QUEUE_NAMES) -> list[Path]:
        return [p for name in queues for p in (self.queue_dir / name).rglob("*")
                if p.is_file()]

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return "\n--- postfix.log (tail) ---\n" + "\n".join(text) if text else ""


class SmtpSink:
    """Postfix's ``smtp-sink`` on ``127.0.0.1:port``: accepts every message, keeps
    none, and counts them (its ``-c`` counters, read from its output file)."""

    def __init__(self, port: int | None = None, *, backlog: int = 256,
                 max_sessions: int = 256, extra_args: Iterable[str] = ()) -> None:
        self.port = port if port is not None else free_port()
        self.backlog = backlog
        self.max_sessions = max_sessions
        self.extra_args = list(extra_args)
        # Kept open for the sink's lifetime (its output, read and closed at stop).
        self._out = tempfile.NamedTemporaryFile(prefix="smtp-sink-", suffix=".out")  # noqa: SIM115
        self.proc: subprocess.Popen[bytes] | None = None
        self._final: str | None = None

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def start(self, timeout: float = 10.0) -> SmtpSink:
        argv = [postfix_tool("smtp-sink"), "-c", "-m", str(self.max_sessions)]
        if os.geteuid() == 0:
            argv += ["-u", "postfix"]
        argv += [*self.extra_args, f"127.0.0.1:{self.port}", str(self.backlog)]
        self.proc = subprocess.Popen(argv, stdout=self._out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PostfixError(f"smtp-sink exited {self.proc.returncode}: {self.output()}")
            try:
                with socket.create_connection(self.address, timeout=1) as sock:
                    if sock.recv(256).startswith(b"220"):
                        sock.sendall(b"QUIT\r\n")
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise PostfixError(f"smtp-sink on port {self.port} not ready after {timeout}s")

    def output(self) -> str:
        if self._final is not None:
            return self._final
        return Path(self._out.name).read_bytes().decode(errors="replace")

    def counters(self) -> dict[str, int]:
        """The latest counters: ``sess`` (sessions ended), ``quit``, ``mesg`` (messages)."""
        records = [r for r in self.output().split("\r") if "mesg=" in r]
        if not records:
            return {"sess": 0, "quit": 0, "mesg": 0}
        pairs = (item.split("=", 1) for item in records[-1].split())
        return {k: int(v) for k, v in pairs if v.isdigit()}

    def message_count(self) -> int:
        return self.counters().get("mesg", 0)

    def wait_messages(self, count: int, timeout: float = 60.0, interval: float = 0.05) -> float:
        """Wait until at least ``count`` messages arrived; the seconds waited."""
        start = time.monotonic()
        while (n := self.message_count()) < count:
            if time.monotonic() - start > timeout:
                raise PostfixError(f"smtp-sink got {n} message(s), wanted {count} "
                                   f"after {timeout}s")
            if self.proc is not None and self.proc.poll() is not None:
                raise PostfixError(f"smtp-sink exited {self.proc.returncode} after {n} "
                                   f"message(s): {self.output()[-500:]}")
            time.sleep(interval)
        return time.monotonic() - start

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._final is None:
            self._final = self.output()
            self._out.close()

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _kill_tree(pid: int) -> None:
    """SIGKILL the master and every process whose parent it is."""
    children = [int(p.name) for p in Path("/proc").iterdir()
                if p.name.isdigit() and _ppid(int(p.name)) == pid]
    for victim in [pid, *children]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)


def _ppid(pid: int) -> int | None:
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat_line.rsplit(")", 1)[1].split()[1])
