"""In-memory Spool and Directory, and a running SmtpServer on 127.0.0.1, for the
smtpd end-to-end tests.

The server runs in its own thread with its own event loop (uvloop or asyncio), so
tests drive it with blocking clients (smtplib, raw sockets).  The fakes can be told
to fail (disk full, write or commit errors) and count what happened.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import socket
import ssl
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from mailyard.config import Config, DkimConfig, DmarcConfig, SmtpdConfig
from mailyard.directory.api import Resolution, ScramCredentials
from mailyard.envelope import Envelope, split_address
from mailyard.obs import Metrics
from mailyard.queue.api import StorageError
from mailyard.sasl.scram import derive_credentials as derive_scram_credentials
from mailyard.smtpd.server import SmtpServer
from mailyard.store.quota import QuotaLimits
from mailyard.tls import ensure_certificate, server_context

TIMEOUT = 10.0


class MemoryWriter:
    def __init__(self, spool: MemorySpool, envelope: Envelope, qid: str) -> None:
        self.spool = spool
        self.envelope = envelope
        self.qid = qid
        self.parts: list[bytes] = []
        self.aborted = False
        self.committed = False
        self.writes = 0
        self.largest_write = 0
        self.size = 0

    def write(self, data: bytes) -> None:
        after = self.spool.fail_write_after
        if self.spool.fail_write or (after is not None and len(self.parts) >= after):
            raise StorageError("simulated write failure")
        self.writes += 1
        self.largest_write = max(self.largest_write, len(data))
        self.size += len(data)
        if self.spool.keep_content:
            self.parts.append(data)

    async def commit(self) -> str:
        if self.spool.commit_gate is not None:
            await self.spool.commit_gate.wait()
        if self.spool.fail_commit:
            raise StorageError("simulated commit failure")
        self.committed = True
        self.spool.messages[self.qid] = (self.envelope, b"".join(self.parts))
        return self.qid

    def abort(self) -> None:
        self.aborted = True


class MemorySpool:
    """Just enough of the Spool protocol for smtpd."""

    def __init__(self) -> None:
        self.messages: dict[str, tuple[Envelope, bytes]] = {}
        self.writers: list[MemoryWriter] = []
        self.free = 1 << 40
        self.fail_write = False
        self.fail_write_after: int | None = None  # writes that succeed before failing
        self.fail_commit = False
        self.commit_gate: asyncio.Event | None = None
        self.keep_content = True  # False: only count octets (big-message tests)
        self._next = 0

    def open_message(self, envelope: Envelope) -> MemoryWriter:
        self._next += 1
        writer = MemoryWriter(self, envelope, f"Q{self._next:06d}")
        self.writers.append(writer)
        return writer

    def free_bytes(self) -> int:
        return self.free

    def content(self, qid: str) -> bytes:
        return self.messages[qid][1]


class MemoryDirectory:
    """Users with passwords, in the local domains; may_send_from = own address or
    a +tag of it."""

    def __init__(self, domains: tuple[str, ...], users: dict[str, str]) -> None:
        self.domains = {d.lower() for d in domains}
        self.users = {u.lower(): p for u, p in users.items()}
        self.scram = {u: derive_scram_credentials(p, b"salt-" + u.encode(), 4096)
                      for u, p in self.users.items()}
        self.quotas: dict[str, QuotaLimits] = {}  # mailbox -> limits (default: none)

    def is_local_domain(self, domain: str) -> bool:
        return domain.lower().rstrip(".") in self.domains

    def primary_domain(self) -> str | None:
        return min(self.domains) if self.domains else None

    def _canonical(self, address: str) -> str:
        local, domain = split_address(address)
        return f"{local.split('+', 1)[0].lower()}@{domain}"

    def resolve(self, address: str) -> Resolution:
        canonical = self._canonical(address)
        if canonical in self.users or canonical.startswith(("postmaster@", "abuse@")):
            return Resolution(mailboxes=(canonical,))
        return Resolution(unknown=True)

    def recipient_exists(self, address: str) -> bool:
        return self.resolve(address).exists

    def verify_password(self, username: str, password: str) -> bool:
        return self.users.get(username.lower()) == password

    def scram_credentials(self, username: str) -> ScramCredentials | None:
        return self.scram.get(username.lower())

    def may_send_from(self, username: str, address: str) -> bool:
        return bool(address) and self._canonical(address) == username.lower()

    def quota_limits(self, address: str) -> QuotaLimits:
        return self.quotas.get(address, QuotaLimits())

    def refresh(self) -> None:
        pass  # always current


class RunningSmtpd:
    """SmtpServer on ephemeral 127.0.0.1 ports, in a background event loop."""

    def __init__(self, tmp_path: Path, *,
                 kinds: tuple[str, ...] = ("smtp", "submission", "submissions"),
                 tls: bool = True, uvloop: bool = False, **smtpd: Any) -> None:
        self.config = Config(hostname="mx.test", data_dir=str(tmp_path),
                             local_domains=("mx.test",),
                             smtpd=dataclasses.replace(SmtpdConfig(), **smtpd),
                             # No DNS from the inbound checks: tests stay hermetic.
                             dkim=DkimConfig(verify=False), dmarc=DmarcConfig(enabled=False))
        self.config.validate()
        self.spool = MemorySpool()
        self.directory = MemoryDirectory(("mx.test",), {"user@mx.test": "secret",
                                                         "other@mx.test": "pw2"})
        self.metrics = Metrics()
        self.queued: list[str] = []
        self.ssl_context: ssl.SSLContext | None = None
        if tls:
            cert, key = ensure_certificate(tmp_path, "mx.test")
            self.ssl_context = server_context(cert, key)
        self.kinds = kinds
        self.ports: dict[str, int] = {}
        self.loop = self._new_loop(uvloop)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: SmtpServer | None = None

    @staticmethod
    def _new_loop(use_uvloop: bool) -> asyncio.AbstractEventLoop:
        if use_uvloop:
            import uvloop
            return uvloop.new_event_loop()
        return asyncio.new_event_loop()

    def __enter__(self) -> RunningSmtpd:
        self.thread.start()
        self.call(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _start(self) -> None:
        self.server = SmtpServer(self.config, self.spool, self.directory, self.ssl_context,
                                 self.metrics, self.queued.append)
        for kind in self.kinds:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
            sock.listen(128)
            sock.setblocking(False)
            self.ports[kind] = sock.getsockname()[1]
            await self.server.serve(kind, sock)

    def call(self, coro: Coroutine[Any, Any, Any], timeout: float = TIMEOUT) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def run(self, fn: Any, *args: Any) -> Any:
        """Call a plain function on the server's loop thread."""
        async def wrapper() -> Any:
            return fn(*args)
        return self.call(wrapper())

    def stop(self) -> None:
        if self.server is not None and self.loop.is_running():
            try:
                self.call(self.server.close(grace=2.0))
            finally:
                self.loop.call_soon_threadsafe(self.loop.stop)
                self.thread.join(TIMEOUT)
                self.loop.close()
        self.server = None

    def connection_count(self) -> int:
        assert self.server is not None
        return self.run(lambda: len(self.server.sessions))  # type: ignore[union-attr]


_FINAL = re.compile(rb"^\d{3}(?: |$)", re.M)


class RawClient:
    """A plain socket speaking SMTP by hand, for byte-exact hostile input."""

    def __init__(self, port: int, timeout: float = TIMEOUT, tls: bool = False) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls:
            self.sock = client_tls_context().wrap_socket(self.sock, server_hostname="mx.test")
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> bytes:
        """One complete (possibly multi-line) reply, without its final CRLF."""
        while True:
            lines = self.buffer.split(b"\r\n")
            for i, line in enumerate(lines[:-1]):
                if len(line) >= 3 and (len(line) == 3 or line[3:4] == b" "):
                    taken = b"\r\n".join(lines[: i + 1])
                    self.buffer = self.buffer[len(taken) + 2 :]
                    return taken
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed; unparsed: {self.buffer!r}")
            self.buffer += chunk

    def code(self) -> str:
        """'250 2.1.0' style code of the next reply."""
        last = self.reply().split(b"\r\n")[-1].decode("utf-8", "replace")
        m = re.match(r"(\d{3})(?: (\d\.\d+\.\d+))?", last)
        assert m, last
        return f"{m.group(1)} {m.group(2)}" if m.group(2) else m.group(1)

    def command(self, line: bytes) -> str:
        self.send(line + b"\r\n")
        return self.code()

    def closed(self) -> bool:
        """True when the server has closed the connection (after any pending bytes)."""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buffer += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False

    def starttls(self) -> None:
        self.sock = client_tls_context().wrap_socket(self.sock, server_hostname="mx.test")

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def client_tls_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx
