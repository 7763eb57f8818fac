"""Helpers for end-to-end tests of outbound delivery.

The shape of every test: a :class:`~tests.support.dnsserver.DnsTestServer` gives the
remote test domains MX records pointing at hosts on distinct loopback addresses
(``127.0.0.2``, ``127.0.0.3``, ...), each running Postfix's ``smtp-sink``
(:class:`DumpSink`, which keeps every message it takes in a dump directory) or a
:class:`~tests.support.fake_mx.FakeMx`, all on one port that Mailyard uses as
``delivery.smtp_port``.  Mailyard is the real ``mailyard serve``
(:func:`outbound_server`); mail goes in through port 587 (:func:`submit`) or
``mailyard sendmail``, and comes back, when it bounces, into the local sender's
Maildir, where :func:`parse_dsn` reads the RFC 3464 report.
"""

from __future__ import annotations

import email
import email.policy
import os
import shutil
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.message import EmailMessage, Message
from pathlib import Path
from typing import Any, TypeVar

from tests.support.dnsserver import DnsTestServer
from tests.support.mailyard_server import MailyardServer

T = TypeVar("T")

SENDER = "alice@example.test"
SENDER_PASSWORD = "alice-secret"


def wait_until(predicate: Callable[[], T], timeout: float = 15.0, what: str = "condition",
               interval: float = 0.1) -> T:
    """Poll ``predicate`` until it returns something true; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# --- remote MX hosts -------------------------------------------------------------------
@dataclass
class SinkMessage:
    mail_from: str  # X-Mail-Args without parameters
    recipients: list[str]
    mail_args: str
    content: bytes  # the message as smtp-sink wrote it (LF line ends)


class DumpSink:
    """``smtp-sink`` on ``host:port`` that writes each message to its own file
    (``-d``).  ``args`` adds fault options such as ``-r MAIL`` (450), ``-f RCPT``
    (500), ``-Q DATA`` (421 and hang up) or ``-q .`` (hang up without a reply)."""

    def __init__(self, host: str, port: int, *args: str, name: str = "smtp-sink") -> None:
        self.host, self.port, self.args, self.name = host, port, list(args), name
        # Under /tmp, not pytest's 0700 tmp_path: smtp-sink drops to the postfix user.
        self.dump_dir = Path(tempfile.mkdtemp(prefix="mailyard-sink-"))
        if os.geteuid() == 0:
            shutil.chown(self.dump_dir, "postfix")
        # smtp-sink's log: kept open while it runs, read on failure, closed at stop.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> DumpSink:
        argv = [shutil.which("smtp-sink", path="/usr/sbin:/usr/bin") or "smtp-sink",
                "-h", self.name, "-d", f"{self.dump_dir}/%Y%m%d%H%M%S."]
        if os.geteuid() == 0:
            argv += ["-u", "postfix"]
        argv += [*self.args, f"{self.host}:{self.port}", "64"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        wait_until(self._listening, timeout, f"smtp-sink on {self.host}:{self.port}", 0.05)
        return self

    def _listening(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            self._log.seek(0)
            raise RuntimeError(f"smtp-sink exited: {self._log.read().decode(errors='replace')}")
        try:
            with socket.create_connection((self.host, self.port), timeout=1):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dump_dir, ignore_errors=True)
        self._log.close()

    def __enter__(self) -> DumpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def messages(self) -> list[SinkMessage]:
        """Every complete dump: a file smtp-sink no longer holds open (it keeps one
        open per transaction in progress, and closes it before answering the dot)."""
        paths = sorted(p for p in self.dump_dir.rglob("*") if p.is_file())
        busy = self._open_files()
        return [parse_sink_dump(p.read_bytes()) for p in paths if str(p) not in busy]

    def _open_files(self) -> set[str]:
        if self.proc is None or self.proc.poll() is not None:
            return set()
        fd_dir = Path(f"/proc/{self.proc.pid}/fd")
        busy = set()
        try:
            for fd in fd_dir.iterdir():
                try:
                    busy.add(os.readlink(fd))
                except OSError:
                    continue
        except OSError:
            return set()
        return busy

    def wait_messages(self, count: int, timeout: float = 15.0) -> list[SinkMessage]:
        return wait_until(lambda: (m := self.messages()) and len(m) >= count and m,
                          timeout, f"{count} message(s) at {self.host}")


def parse_sink_dump(data: bytes) -> SinkMessage:
    """One ``smtp-sink -d`` file: X-* records, smtp-sink's own three-line Received
    header, the message, and a trailing empty line."""
    lines = data.split(b"\n")
    mail_args, rcpts = "", []
    i = 0
    while i < len(lines) and not lines[i].startswith(b"Received:"):
        key, _, value = lines[i].decode(errors="replace").partition(": ")
        if key == "X-Mail-Args":
            mail_args = value
        elif key == "X-Rcpt-Args":
            rcpts.append(value.split(">")[0].lstrip("<"))
        i += 1
    i += 1
    while i < len(lines) and lines[i][:1] in (b"\t", b" "):
        i += 1
    content = b"\n".join(lines[i:])
    if content.endswith(b"\n\n"):
        content = content[:-1]
    return SinkMessage(mail_args.split(">")[0].lstrip("<"), rcpts, mail_args, content)


# --- DNS ---------------------------------------------------------------------------------
def remote_zones(**extra: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """remote.test: MX 10 mx1 (127.0.0.2), MX 20 mx2 (127.0.0.3); other.test: one MX
    (127.0.0.4); nullmx.test: a Null MX (RFC 7505)."""
    zones: dict[str, dict[str, Any]] = {
        # Listed worst first: the order must come from the preferences.
        "remote.test": {"MX": ["20 mx2.remote.test", "10 mx1.remote.test"]},
        "mx1.remote.test": {"A": ["127.0.0.2"]},
        "mx2.remote.test": {"A": ["127.0.0.3"]},
        "other.test": {"MX": ["10 mx.other.test"]},
        "mx.other.test": {"A": ["127.0.0.4"]},
        "nullmx.test": {"MX": ["0 ."]},
    }
    zones.update(extra)
    return zones


# --- Mailyard ----------------------------------------------------------------------------
def outbound_server(root: Path, dns: DnsTestServer, mx_port: int,
                    delivery: dict[str, Any] | None = None, *,
                    domains: tuple[str, ...] = ("example.test",),
                    users: Iterable[tuple[str, str]] = ((SENDER, SENDER_PASSWORD),),
                    start: bool = True,
                    sections: dict[str, dict[str, Any]] | None = None) -> MailyardServer:
    """A real Mailyard that resolves through ``dns`` and delivers to port ``mx_port``,
    with quick retries and short timeouts (override any of them in ``delivery``);
    ``sections``: more configuration tables (``{"mta_sts": {...}}``)."""
    settings: dict[str, Any] = {
        "dns_servers": [dns.server_spec],
        "dns_timeout": 1.0,
        "smtp_port": mx_port,
        "retry_schedule": [1, 2],
        "connect_timeout": 3,
        "command_timeout": 3,
        "data_timeout": 3,
    }
    settings.update(delivery or {})
    server = MailyardServer(root, domains=domains,
                            overrides={"delivery": settings, **(sections or {})})
    for address, password in users:
        server.add_user(address, password)
    return server.start() if start else server


def _client_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def make_message(sender: str, recipients: list[str], subject: str,
                 body: str = "") -> tuple[EmailMessage, str]:
    """A message carrying a unique ``X-Test-Token``; (message, token)."""
    token = uuid.uuid4().hex
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Subject"] = subject
    msg["X-Test-Token"] = token
    msg.set_content(body or f"Test message {token}.\n")
    return msg, token


def submit(server: MailyardServer, recipients: list[str], subject: str, *,
           sender: str = SENDER, password: str = SENDER_PASSWORD, body: str = "",
           mail_options: tuple[str, ...] = (),
           rcpt_options: tuple[str, ...] = ()) -> str:
    """Send through port 587 (STARTTLS, then AUTH); the message's token."""
    msg, token = make_message(sender, recipients, subject, body)
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=10) as client:
        client.ehlo("client.example.test")
        client.starttls(context=_client_tls())
        client.ehlo("client.example.test")
        client.login(sender, password)
        refused = client.send_message(msg, from_addr=sender, to_addrs=recipients,
                                      mail_options=list(mail_options),
                                      rcpt_options=list(rcpt_options))
    assert not refused, refused
    return token


def sendmail(server: MailyardServer, recipients: list[str], subject: str, *,
             sender: str = SENDER) -> str:
    """Queue through ``mailyard sendmail -f SENDER`` (``"<>"``: the null sender)."""
    msg, token = make_message(sender if sender != "<>" else "mailer-daemon@example.test",
                              recipients, subject)
    server.cli("sendmail", "-i", "-f", sender, *recipients, input=msg.as_bytes())
    return token


# --- the queue ---------------------------------------------------------------------------
def recipient_states(server: MailyardServer) -> dict[str, dict[str, Any]]:
    """Every queued recipient by address (``queue list --json``)."""
    return {r["address"]: r | {"qid": e["id"]}
            for e in server.queue() for r in e["recipients"]}


def wait_deferred(server: MailyardServer, address: str, attempts: int = 1,
                  timeout: float = 20.0) -> dict[str, Any]:
    """The queue record of ``address`` once it is deferred after ``attempts`` tries."""
    def check() -> dict[str, Any] | None:
        r = recipient_states(server).get(address)
        if r and r["state"] == "deferred" and r["attempts"] >= attempts:
            return r
        return None
    return wait_until(check, timeout, f"{address} deferred after {attempts} attempt(s)", 0.2)


def wait_queue_empty(server: MailyardServer, timeout: float = 20.0) -> None:
    wait_until(lambda: not server.queue(), timeout, "an empty queue", 0.2)


# --- bounces -----------------------------------------------------------------------------
@dataclass
class Dsn:
    message: EmailMessage
    per_message: Message
    recipients: list[Message]
    returned: Message | None

    def recipient(self, address: str) -> Message:
        for block in self.recipients:
            if str(block.get("Final-Recipient", "")).lower().endswith(address.lower()):
                return block
        raise AssertionError(f"no report for {address}: "
                             f"{[str(b.get('Final-Recipient')) for b in self.recipients]}")


def parse_dsn(raw: bytes) -> Dsn:
    """An RFC 3464 delivery status notification, checked for its RFC 6522 shape."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    assert msg.get_content_type() == "multipart/report", msg.get_content_type()
    assert msg.get_param("report-type") == "delivery-status"
    parts = msg.get_payload()
    assert isinstance(parts, list) and len(parts) in (2, 3), len(parts)
    assert parts[0].get_content_maintype() == "text"
    status = parts[1]
    assert status.get_content_type() == "message/delivery-status", status.get_content_type()
    blocks = status.get_payload()
    assert isinstance(blocks, list) and len(blocks) >= 2, blocks
    returned = parts[2] if len(parts) == 3 else None
    return Dsn(msg, blocks[0], blocks[1:], returned)


def bounces(server: MailyardServer, address: str = SENDER) -> list[bytes]:
    """Delivery reports in ``address``'s mailbox."""
    return [m for m in server.messages(address) if b"multipart/report" in m]


def wait_bounce(server: MailyardServer, address: str = SENDER, count: int = 1,
                timeout: float = 20.0) -> list[Dsn]:
    found = wait_until(lambda: (b := bounces(server, address)) and len(b) >= count and b,
                       timeout, f"{count} bounce(s) for {address}")
    return [parse_dsn(raw) for raw in found]
