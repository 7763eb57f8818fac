"""Run a real ``mailyard serve`` in a temporary directory, for end-to-end tests and
benchmarks: free ports on 127.0.0.1, a generated config, CLI helpers, and a clean
stop (or a SIGKILL of the whole process group, for crash tests)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .ports import free_port

if TYPE_CHECKING:
    import httpx

__all__ = ["MailyardServer", "free_port", "render_toml"]


def _toml_key(key: str) -> str:
    """A bare key, or a quoted one (a domain name has dots)."""
    return key if key.replace("_", "").replace("-", "").isalnum() else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}"
                                for k, v in value.items()) + " }"
    raise TypeError(value)


def render_toml(cfg: dict[str, Any]) -> str:
    lines = []
    tables = []
    for key, value in cfg.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for name, table in tables:
        lines.append(f"\n[{name}]")
        for key, value in table.items():
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


class MailyardServer:
    def __init__(self, root: Path, *, domains: tuple[str, ...] = ("example.test",),
                 hostname: str = "mx.example.test", overrides: dict[str, Any] | None = None,
                 workers: int = 1, http: bool = False) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.ports = {"smtp": free_port(), "submission": free_port(),
                      "submissions": free_port(), "pop3": free_port(), "pop3s": free_port(),
                      "imap": free_port(), "imaps": free_port()}
        self.data_dir = self.root / "data"
        cfg: dict[str, Any] = {
            "hostname": hostname,
            "data_dir": str(self.data_dir),
            "local_domains": list(domains),
            "listen": {k: [f"127.0.0.1:{p}"] for k, p in self.ports.items()},
            "http": {},
            "smtpd": {"workers": workers, "max_connections_per_ip": 200},
            "log": {"file": str(self.root / "mailyard.log")},
            # Throwaway test passwords; the length rule has its own tests.
            "auth": {"min_password_length": 1},
            # No DNS from the inbound checks unless a test asks for them (with its own
            # loopback DNS server in delivery.dns_servers): tests stay hermetic.
            "dkim": {"verify": False},
            "dmarc": {"enabled": False},
        }
        if http:  # the HTTP service too, on a free port: self.http_url
            self.ports["http"] = free_port()
            cfg["listen"]["http"] = [f"127.0.0.1:{self.ports['http']}"]
            cfg["http"]["public_url"] = f"http://127.0.0.1:{self.ports['http']}"
        self.http_url = cfg["http"].get("public_url", "")
        if os.geteuid() == 0:
            # Tests run as root keep the server as root (it reads and writes the test's
            # files); tests of the privilege drop override `user`.
            cfg.update(user="root", allow_root=True)
        for key, value in (overrides or {}).items():
            if isinstance(value, dict):
                cfg.setdefault(key, {}).update(value)
            else:
                cfg[key] = value
        self.config_path = self.root / "mailyard.toml"
        self.config_path.write_text(render_toml(cfg))
        self.proc: subprocess.Popen[bytes] | None = None
        self.launcher: list[str] = []  # a command that runs `mailyard` (a wrapper)

    # --- lifecycle -------------------------------------------------------------
    def start(self, timeout: float = 120.0) -> MailyardServer:
        """Start ``mailyard serve`` and return once every listener answers.  The
        timeout is generous because an HTTP worker importing FastAPI on a machine
        under load takes long; a quiet machine returns in a second or two."""
        with open(self.root / "serve.out", "ab") as out:  # the child keeps its own copy
            self.proc = subprocess.Popen(
                [*self.launcher, sys.executable, "-m", "mailyard.cli.main", "--config",
                 str(self.config_path), "serve"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mailyard serve exited: {self.output()}")
            if all(self._banner_ok(p) for p in (self.ports["smtp"], self.ports["submission"])) \
                    and ("http" not in self.ports or self._http_ok()):
                return self
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"mailyard serve did not start: {self.output()}")

    def _banner_ok(self, port: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.settimeout(2)
                return s.recv(512).startswith(b"220")
        except OSError:
            return False

    def _http_ok(self) -> bool:
        import urllib.error
        import urllib.request

        try:
            urllib.request.urlopen(self.http_url + "/api/openapi.json", timeout=2).close()
            return True
        except (OSError, urllib.error.URLError):
            return False

    def output(self) -> str:
        parts = []
        for name in ("serve.out", "mailyard.log"):
            p = self.root / name
            if p.exists():
                parts.append(p.read_text(errors="replace")[-4000:])
        return "\n".join(parts)

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is not None:
            # the supervisor is gone: make sure no worker outlives it
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the supervisor and every worker at once (a crash)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def __enter__(self) -> MailyardServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self.proc is not None and self.proc.poll() is None:
            self.kill()

    # --- CLI -------------------------------------------------------------------
    def cli(self, *args: str, input: bytes | None = None, check: bool = True
            ) -> subprocess.CompletedProcess[bytes]:
        res = subprocess.run(
            [*self.launcher, sys.executable, "-m", "mailyard.cli.main", "--config",
             str(self.config_path), *args],
            input=input, capture_output=True, timeout=60)
        if check and res.returncode != 0:
            raise RuntimeError(f"mailyard {' '.join(args)} failed ({res.returncode}): "
                               f"{res.stderr.decode(errors='replace')}")
        return res

    def api_key(self, name: str, scope: str, *extra: str) -> str:
        """A new API key (``mailyard apikey create``): the secret it prints once."""
        out = self.cli("apikey", "create", "--name", name, "--scope", scope, *extra)
        return out.stdout.decode().splitlines()[0].strip()

    @contextlib.contextmanager
    def api_client(self, scope: str, *extra: str, name: str = "",
                   timeout: float = 60.0) -> Iterator[httpx.Client]:
        """An httpx client on the HTTP service with a new key of ``scope`` (``extra``:
        more ``apikey create`` flags)."""
        import httpx

        key = self.api_key(name or f"{scope}-key", scope, *extra)
        with httpx.Client(base_url=self.http_url, timeout=timeout,
                          headers={"Authorization": f"Bearer {key}"}) as client:
            yield client

    def add_user(self, address: str, password: str) -> None:
        self.cli("user", "add", address, "--password-stdin", input=password.encode() + b"\n")

    def queue(self) -> list[dict[str, Any]]:
        return json.loads(self.cli("queue", "list", "--json").stdout)

    # --- mailboxes -------------------------------------------------------------
    def maildir(self, address: str) -> Path:
        local, domain = address.rsplit("@", 1)
        return self.data_dir / "mail" / domain.lower() / local.lower()

    def message_files(self, address: str) -> list[Path]:
        box = self.maildir(address)
        out = []
        for sub in ("new", "cur"):
            d = box / sub
            if d.is_dir():
                out += [d / name for name in sorted(os.listdir(d))]
        return out

    def messages(self, address: str) -> list[bytes]:
        """The stored messages with CRLF line ends, as IMAP would give them (files
        have LF line ends; those of earlier versions CRLF: both read the same)."""
        from mailyard.store.maildir import read_message

        return [read_message(p) for p in self.message_files(address)]

    def wait_for_messages(self, address: str, count: int, timeout: float = 20.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while True:
            msgs = self.messages(address)
            if len(msgs) >= count or time.monotonic() > deadline:
                return msgs
            time.sleep(0.05)

    def wait_queue_empty(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.queue():
                return True
            time.sleep(0.2)
        return False
