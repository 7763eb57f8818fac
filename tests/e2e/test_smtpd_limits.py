"""smtpd end to end: connection caps, timeouts, slow clients, disk and storage
failures, and shutdown."""

from __future__ import annotations

import asyncio
import smtplib
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support.smtpd_fakes import RawClient, RunningSmtpd  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

MESSAGE = b"Subject: t\r\n\r\nbody\r\n"


def start_data(raw: RawClient) -> None:
    assert raw.code() == "220"
    raw.send(b"EHLO c\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<user@mx.test>\r\nDATA\r\n")
    assert [raw.code() for _ in range(4)] == ["250", "250 2.1.0", "250 2.1.5", "354"]


def test_per_ip_connection_cap(tmp_path: Path) -> None:
    """smtpd.max_connections_per_ip: the next connection gets 421 4.7.0 at once;
    a slot frees when a client leaves."""
    with RunningSmtpd(tmp_path, max_connections_per_ip=2) as smtpd:
        first, second = RawClient(smtpd.ports["smtp"]), RawClient(smtpd.ports["smtp"])
        assert first.code() == "220" and second.code() == "220"
        with RawClient(smtpd.ports["smtp"]) as third:
            assert third.code() == "421 4.7.0"
            assert third.closed()
        assert first.command(b"QUIT") == "221 2.0.0"
        assert first.closed()
        first.close()
        deadline = time.monotonic() + 5
        while smtpd.connection_count() > 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        with RawClient(smtpd.ports["smtp"]) as again:
            assert again.code() == "220"
        second.close()


def test_total_connection_cap(tmp_path: Path) -> None:
    """smtpd.max_connections: 421 4.3.2 when the server is full."""
    with (
        RunningSmtpd(tmp_path, max_connections=1) as smtpd,
        RawClient(smtpd.ports["smtp"]) as first,
        RawClient(smtpd.ports["smtp"]) as second,
    ):
        assert first.code() == "220"
        assert second.code() == "421 4.3.2"


def test_idle_command_timeout(tmp_path: Path) -> None:
    """smtpd.command_timeout: an idle client gets 421 4.4.2 and is disconnected."""
    with (
        RunningSmtpd(tmp_path, command_timeout=0.3) as smtpd,
        RawClient(smtpd.ports["smtp"]) as raw,
    ):
        assert raw.code() == "220"
        started = time.monotonic()
        assert raw.code() == "421 4.4.2"
        assert 0.2 < time.monotonic() - started < 5
        assert raw.closed()


def test_data_idle_timeout(tmp_path: Path) -> None:
    """smtpd.data_timeout: silence in the middle of DATA: 421 4.4.2."""
    with RunningSmtpd(tmp_path, command_timeout=30, data_timeout=0.3, min_data_rate=0) as smtpd:
        with RawClient(smtpd.ports["smtp"]) as raw:
            start_data(raw)
            raw.send(b"Subject: x\r\n")
            assert raw.code() == "421 4.4.2"
            assert raw.closed()
        assert smtpd.spool.messages == {}
        assert all(w.aborted for w in smtpd.spool.writers)


def test_slow_client_dropped(tmp_path: Path) -> None:
    """smtpd.min_data_rate after smtpd.data_rate_grace: a trickling client gets
    421 4.4.2 (data rate too low) even though it never goes silent."""
    with RunningSmtpd(tmp_path, data_timeout=5, min_data_rate=10_000,
                      data_rate_grace=0.3) as smtpd:
        with RawClient(smtpd.ports["smtp"]) as raw:
            start_data(raw)
            raw.sock.settimeout(0.05)  # pacing: 3 octets every 50 ms
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not raw.buffer:
                try:
                    raw.send(b"x\r\n")
                    raw.buffer += raw.sock.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    break
            raw.sock.settimeout(5)
            assert raw.reply() == b"421 4.4.2 Data rate too low, closing connection"
            assert raw.closed()
        assert smtpd.spool.messages == {}


def test_disk_full(tmp_path: Path) -> None:
    """Free spool space under smtpd.min_free_disk: 452 4.3.1 at MAIL."""
    with RunningSmtpd(tmp_path, min_free_disk=1000) as smtpd:
        smtpd.spool.free = 999
        with smtplib.SMTP("127.0.0.1", smtpd.ports["smtp"], timeout=10) as client:
            client.ehlo("c")
            code, text = client.mail("a@c.test")
            assert (code, text[:5]) == (452, b"4.3.1")


@pytest.mark.parametrize("failure", ["write", "commit"])
def test_storage_failure(tmp_path: Path, failure: str) -> None:
    """A StorageError while writing or committing: 451 4.3.0, nothing queued, the
    writer aborted, and the session goes on."""
    with RunningSmtpd(tmp_path) as smtpd:
        if failure == "write":
            smtpd.spool.fail_write_after = 1  # the Received field, then fail
        else:
            smtpd.spool.fail_commit = True
        with smtplib.SMTP("127.0.0.1", smtpd.ports["smtp"], timeout=10) as client:
            client.ehlo("c")
            client.mail("a@c.test")
            client.rcpt("user@mx.test")
            code, text = client.data(MESSAGE)
            assert (code, text[:5]) == (451, b"4.3.0")
            assert client.noop()[0] == 250
        assert smtpd.spool.messages == {} and smtpd.queued == []
        assert all(w.aborted for w in smtpd.spool.writers)
        assert smtpd.metrics.get("messages_rejected_total", reason="storage_error") == 1


def test_storage_failure_at_data(tmp_path: Path) -> None:
    """The spool cannot even take the Received field: 451 4.3.0 to DATA."""
    with RunningSmtpd(tmp_path) as smtpd:
        smtpd.spool.fail_write = True
        with smtplib.SMTP("127.0.0.1", smtpd.ports["smtp"], timeout=10) as client:
            client.ehlo("c")
            client.mail("a@c.test")
            client.rcpt("user@mx.test")
            code, text = client.docmd("DATA")
            assert (code, text[:5]) == (451, b"4.3.0")
            assert client.rset()[0] == 250
        assert smtpd.spool.messages == {}


def test_reply_only_after_commit(tmp_path: Path) -> None:
    """The 250 comes only once commit() returned (durability, DESIGN 8), and pipelined
    commands wait for it."""
    with RunningSmtpd(tmp_path) as smtpd:
        gate = smtpd.run(asyncio.Event)
        smtpd.spool.commit_gate = gate
        with RawClient(smtpd.ports["smtp"]) as raw:
            start_data(raw)
            raw.send(MESSAGE + b".\r\nNOOP\r\n")
            raw.sock.settimeout(0.3)
            with pytest.raises((TimeoutError, OSError)):
                raw.reply()
            raw.sock.settimeout(5)
            smtpd.run(gate.set)
            assert raw.code() == "250 2.0.0"
            assert raw.code() == "250 2.0.0"
        assert len(smtpd.spool.messages) == 1


def test_shutdown_sends_421(tmp_path: Path) -> None:
    """close(): connected clients get 421 4.3.2 and are disconnected."""
    smtpd = RunningSmtpd(tmp_path)
    with smtpd:
        raw = RawClient(smtpd.ports["smtp"])
        assert raw.code() == "220"
        assert smtpd.server is not None
        smtpd.call(smtpd.server.close(grace=2.0))
        assert raw.code() == "421 4.3.2"
        assert raw.closed()
        raw.close()


def test_session_error_is_not_a_traceback(tmp_path: Path) -> None:
    """An unexpected exception in policy code: 421 4.3.0 to that client only."""
    with RunningSmtpd(tmp_path) as smtpd:
        def broken(*args: object) -> bool:
            raise ZeroDivisionError("bug")
        smtpd.directory.recipient_exists = broken  # type: ignore[method-assign]
        with RawClient(smtpd.ports["smtp"]) as raw, RawClient(smtpd.ports["smtp"]) as other:
            assert raw.code() == "220" and other.code() == "220"
            raw.send(b"EHLO c\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<user@mx.test>\r\n")
            assert [raw.code() for _ in range(3)] == ["250", "250 2.1.0", "421 4.3.0"]
            assert raw.closed()
            assert other.command(b"NOOP") == "250 2.0.0"


def test_big_message_is_streamed(tmp_path: Path) -> None:
    """A 50 MB message reaches the spool in pieces as it arrives, never whole."""
    size_mb = 50
    with RunningSmtpd(tmp_path, max_message_size=60 * 1024 * 1024) as smtpd:
        smtpd.spool.keep_content = False
        line = b"A" * 76 + b"\r\n"
        block = line * 800  # 62.4 KB
        blocks = size_mb * 1024 * 1024 // len(block)
        with RawClient(smtpd.ports["smtp"], timeout=60) as raw:
            start_data(raw)
            for _ in range(blocks):
                raw.send(block)
            raw.send(b".\r\n")
            assert raw.code() == "250 2.0.0"
        writer = smtpd.spool.writers[0]
        assert writer.committed
        assert writer.size > blocks * len(block)
        assert writer.writes > 100 and writer.largest_write < 1024 * 1024


def test_client_gone_during_commit(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The client disconnects while the message is being committed: the message stays
    queued (it is durable), on_queued is called and the log line says queued."""
    import logging

    caplog.set_level(logging.INFO, logger="mailyard.smtpd")
    with RunningSmtpd(tmp_path) as smtpd:
        gate = smtpd.run(asyncio.Event)
        smtpd.spool.commit_gate = gate
        with RawClient(smtpd.ports["smtp"]) as raw:
            start_data(raw)
            raw.send(MESSAGE + b".\r\n")
        deadline = time.monotonic() + 5
        while smtpd.connection_count() and time.monotonic() < deadline:
            time.sleep(0.01)
        smtpd.run(gate.set)
        deadline = time.monotonic() + 5
        while not smtpd.queued and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(smtpd.queued) == 1 and len(smtpd.spool.messages) == 1
    results = [r.fields["result"] for r in caplog.records  # type: ignore[attr-defined]
               if r.getMessage() == "smtp transaction"]
    assert results == ["queued"]
