"""Remote delivery against Postfix's smtp-sink on 127.0.0.1: replies at each stage of
the transaction (RFC 5321 4.2.5 / 4.5.3.2), next-hop fallback (RFC 5321 5.1), 421,
hang-ups, timeouts and connection reuse."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailyard.config import Config, DeliveryConfig
from mailyard.delivery.remote import ConnectionPool, RemoteResult, deliver_remote
from mailyard.envelope import Envelope, Recipient
from mailyard.queue.api import RecipientState
from tests.support.postfix import free_port

SINK = shutil.which("smtp-sink") or shutil.which("smtp-sink", path="/usr/sbin:/usr/bin")

pytestmark = [pytest.mark.e2e, pytest.mark.postfix, pytest.mark.timeout(60),
              pytest.mark.skipif(SINK is None, reason="smtp-sink not installed (postfix)")]

DELIVERED = RecipientState.DELIVERED
DEFERRED = RecipientState.DEFERRED
FAILED = RecipientState.FAILED
CONTENT = b"From: a@origin.test\r\nSubject: sink\r\n\r\n.starts with a dot\r\nbody\r\n"
ENV = Envelope("a@origin.test", (Recipient("x@dest.test"), Recipient("y@dest.test")))
CONFIG = Config(hostname="client.test",
                delivery=DeliveryConfig(connect_timeout=2.0, command_timeout=1.5, data_timeout=1.5))


@dataclass(frozen=True)
class Hop:
    host: str
    ip: str
    port: int
    tls_policy: str = "none"
    auth: object = None
    tls_ca_file: str = ""
    tls_fingerprints: tuple[str, ...] = ()
    tls_tlsa: tuple[str, ...] = ()
    tls_names: tuple[str, ...] = ()
    tls_report: object = None


def _listening(port: int) -> bool:
    hexport = f":{port:04X} "
    with open("/proc/net/tcp") as f:
        return any(hexport in line and line.split()[3] == "0A" for line in f)


class Sink:
    """One smtp-sink process; ``options`` are its flags (see smtp-sink(1))."""

    def __init__(self, *options: str) -> None:
        self.port = free_port()
        # smtp-sink writes as "nobody": a directory it can reach (pytest's tmp_path is 0700)
        self.dump = Path(tempfile.mkdtemp(prefix="mailyard-sink-"))
        os.chmod(self.dump, 0o777)
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        self.proc = subprocess.Popen(
            [SINK, *user, "-d", f"{self.dump}/%M.", *options, f"127.0.0.1:{self.port}", "50"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 5
        while not _listening(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"smtp-sink did not start: {self.proc.stderr.read()!r}")
            time.sleep(0.02)

    @property
    def hop(self) -> Hop:
        return Hop(f"sink{self.port}.test", "127.0.0.1", self.port)

    def messages(self) -> list[bytes]:
        return [p.read_bytes() for p in sorted(self.dump.iterdir())]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)
        shutil.rmtree(self.dump, ignore_errors=True)


@pytest.fixture
def sinks():
    started: list[Sink] = []

    def start(*options: str) -> Sink:
        sink = Sink(*options)
        started.append(sink)
        return sink
    yield start
    for sink in started:
        sink.stop()


def deliver(hops, env: Envelope = ENV, content: bytes = CONTENT, pool=None) -> list[RemoteResult]:
    async def run() -> list[RemoteResult]:
        return await deliver_remote(hops, env, list(enumerate(env.recipients)),
                                    lambda: io.BytesIO(content), len(content), CONFIG, pool)
    return asyncio.run(run())


def states(results: list[RemoteResult]) -> list[RecipientState]:
    return [r.state for r in results]


def closed_port() -> Hop:
    return Hop("down.test", "127.0.0.1", free_port())


def test_delivered_and_content_unstuffed_by_the_server(sinks) -> None:
    sink = sinks()
    results = deliver([sink.hop])
    assert states(results) == [DELIVERED, DELIVERED]
    assert str(results[0].reply).startswith("250") and results[0].remote_host == sink.hop.host
    (dump,) = sink.messages()
    assert b"X-Mail-Args: <a@origin.test>" in dump
    assert b"X-Rcpt-Args: <x@dest.test>\nX-Rcpt-Args: <y@dest.test>" in dump
    assert dump.endswith(CONTENT.replace(b"\r\n", b"\n") + b"\n")  # RFC 5321 4.5.2


@pytest.mark.parametrize("command", ["CONNECT", "EHLO", "MAIL", "RCPT", "DATA", "."])
def test_4xx_at_each_stage_defers(sinks, command: str) -> None:
    """RFC 5321 4.2.1: 4yz is a transient failure at any stage."""
    sink = sinks("-r", command)
    results = deliver([sink.hop])
    assert states(results) == [DEFERRED, DEFERRED]
    assert str(results[0].reply).startswith("4"), str(results[0].reply)


@pytest.mark.parametrize("command", ["MAIL", "RCPT", "DATA", "."])
def test_5xx_in_the_transaction_fails(sinks, command: str) -> None:
    sink = sinks("-f", command)
    results = deliver([sink.hop])
    assert states(results) == [FAILED, FAILED]
    assert str(results[0].reply).startswith("5"), str(results[0].reply)


def test_5xx_greeting_fails_when_it_is_the_only_hop(sinks) -> None:
    sink = sinks("-f", "CONNECT")
    assert states(deliver([sink.hop])) == [FAILED, FAILED]


def test_5xx_ehlo_falls_back_to_helo(sinks) -> None:
    """RFC 5321 3.2: a 5xx to EHLO is followed by HELO."""
    sink = sinks("-f", "EHLO")
    assert states(deliver([sink.hop])) == [DELIVERED, DELIVERED]
    assert b"X-Client-Proto: SMTP\n" in sink.messages()[0]


@pytest.mark.parametrize("command", ["CONNECT", "EHLO", "MAIL"])
def test_4xx_early_moves_to_the_next_hop(sinks, command: str) -> None:
    bad, good = sinks("-r", command), sinks()
    results = deliver([bad.hop, good.hop])
    assert states(results) == [DELIVERED, DELIVERED]
    assert results[0].remote_host == good.hop.host
    assert len(good.messages()) == 1


def test_5xx_greeting_moves_to_the_next_hop(sinks) -> None:
    bad, good = sinks("-f", "CONNECT"), sinks()
    assert states(deliver([bad.hop, good.hop])) == [DELIVERED, DELIVERED]


def test_5xx_greeting_on_the_backup_after_a_temporary_failure_defers(sinks) -> None:
    """A backup refusing while the primary is down must not bounce the mail."""
    bad = sinks("-f", "CONNECT")
    results = deliver([closed_port(), bad.hop])
    assert states(results) == [DEFERRED, DEFERRED]


def test_421_mid_session_defers(sinks) -> None:
    """RFC 5321 3.8: 421 closes the session; nothing is delivered."""
    sink = sinks("-Q", "RCPT")
    results = deliver([sink.hop])
    assert states(results) == [DEFERRED, DEFERRED]
    assert str(results[0].reply).startswith("421")


def test_421_mid_session_then_next_hop(sinks) -> None:
    bad, good = sinks("-Q", "RCPT"), sinks()
    results = deliver([bad.hop, good.hop])
    assert states(results) == [DELIVERED, DELIVERED]
    assert len(good.messages()) == 1


def test_connection_refused_defers(sinks) -> None:
    (result, _) = deliver([closed_port()])
    assert result.state is DEFERRED and "4.4.1" in str(result.reply)
    assert "Connection refused" in str(result.reply)


def test_all_hops_down(sinks) -> None:
    results = deliver([closed_port(), closed_port(), closed_port()])
    assert states(results) == [DEFERRED, DEFERRED]


def test_connection_refused_then_next_hop(sinks) -> None:
    good = sinks()
    assert states(deliver([closed_port(), good.hop])) == [DELIVERED, DELIVERED]


def test_hangup_before_content_tries_the_next_hop(sinks) -> None:
    bad, good = sinks("-q", "DATA"), sinks()
    assert states(deliver([bad.hop, good.hop])) == [DELIVERED, DELIVERED]
    assert len(good.messages()) == 1


def test_hangup_after_the_final_dot_defers_and_stays(sinks) -> None:
    """Never delivered without the final 250, and not sent to a second host: the first
    may have the message already (RFC 5321 6.1 would make it a duplicate)."""
    bad, good = sinks("-q", "."), sinks()
    results = deliver([bad.hop, good.hop])
    assert states(results) == [DEFERRED, DEFERRED]
    assert good.messages() == []


@pytest.mark.parametrize("option", [["-W", "MAIL:4"], ["-w", "4"], ["-W", "CONNECT:4"]])
def test_slow_remote_times_out(sinks, option: list[str]) -> None:
    """RFC 5321 4.5.3.2 timeouts, from delivery.command_timeout (small here)."""
    sink = sinks(*option)
    started = time.monotonic()
    results = deliver([sink.hop])
    assert states(results) == [DEFERRED, DEFERRED]
    assert "Timed out" in str(results[0].reply)
    assert time.monotonic() - started < 4


def test_connection_reuse(sinks) -> None:
    """Several messages over one connection (smtp-sink -n 1 serves a single session)."""
    sink = sinks("-n", "1")

    async def run() -> ConnectionPool:
        pool = ConnectionPool(CONFIG)
        for i in range(4):
            env = Envelope("a@origin.test", (Recipient(f"r{i}@dest.test"),))
            res = await deliver_remote([sink.hop], env, [(0, env.recipients[0])],
                                       lambda: io.BytesIO(CONTENT), len(CONTENT), CONFIG, pool)
            assert res[0].state is DELIVERED, res
        await pool.close()
        return pool
    pool = asyncio.run(run())
    assert (pool.opened, pool.reused) == (1, 3)
    assert len(sink.messages()) == 4


def test_message_limit_per_connection(sinks) -> None:
    sink = sinks()
    config = Config(hostname="client.test", delivery=DeliveryConfig(
        connect_timeout=2.0, command_timeout=2.0, max_messages_per_connection=2))

    async def run() -> ConnectionPool:
        pool = ConnectionPool(config)
        for _ in range(5):
            res = await deliver_remote([sink.hop], ENV, list(enumerate(ENV.recipients)),
                                       lambda: io.BytesIO(CONTENT), len(CONTENT), config, pool)
            assert states(res) == [DELIVERED, DELIVERED]
        await pool.close()
        return pool
    pool = asyncio.run(run())
    assert pool.opened == 3
    assert len(sink.messages()) == 5


def test_dead_idle_connection_is_replaced(sinks) -> None:
    """A pooled connection the server dropped fails the RSET probe; a new one is opened."""
    sink = sinks("-q", "RSET")

    async def run() -> ConnectionPool:
        pool = ConnectionPool(CONFIG, probe_after=0.0)
        for _ in range(2):
            res = await deliver_remote([sink.hop], ENV, list(enumerate(ENV.recipients)),
                                       lambda: io.BytesIO(CONTENT), len(CONTENT), CONFIG, pool)
            assert states(res) == [DELIVERED, DELIVERED]
        await pool.close()
        return pool
    pool = asyncio.run(run())
    assert pool.opened == 2


def test_auth_plain_with_routings_next_hop(sinks) -> None:
    """RFC 4954: smtp-sink announces AUTH PLAIN LOGIN and accepts any credentials; the
    hop is routing's own NextHop (with SmtpAuth), sent in clear only with policy "none"
    and the operator's explicit relayhost_auth_unverified."""
    from mailyard.delivery.routing import NextHop, SmtpAuth

    sink = sinks("-v")
    hop = NextHop("relay.test", "127.0.0.1", sink.port, "none",
                  SmtpAuth("user", "secret", unverified_ok=True))
    assert states(deliver([hop])) == [DELIVERED, DELIVERED]
    sink.stop()
    assert b"AUTH PLAIN AHVzZXIAc2VjcmV0" in sink.proc.stderr.read()
    refused = sinks()
    hop = NextHop("relay.test", "127.0.0.1", refused.port, "may",
                  SmtpAuth("user", "secret", unverified_ok=True))
    results = deliver([hop])
    assert states(results) == [DEFERRED, DEFERRED] and "credentials" in str(results[0].reply)


def test_large_message_is_streamed(sinks, tmp_path) -> None:
    sink = sinks()
    path = tmp_path / "big.eml"
    line = b"." + b"x" * 76 + b"\n"
    path.write_bytes(b"Subject: big\n\n" + line * 40000)

    async def run() -> list[RemoteResult]:
        return await deliver_remote([sink.hop], ENV, list(enumerate(ENV.recipients)),
                                    lambda: open(path, "rb"), path.stat().st_size, CONFIG, None)
    assert states(asyncio.run(run())) == [DELIVERED, DELIVERED]
    (dump,) = sink.messages()
    assert dump.endswith(line * 40000 + b"\n")
