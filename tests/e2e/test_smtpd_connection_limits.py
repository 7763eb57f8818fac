"""smtpd end to end: connections on the implicit-TLS port count against the caps from
the moment they are accepted, handshakes have a deadline, and slow or endless
sessions in command mode are closed."""

from __future__ import annotations

import smtplib
import socket
import ssl
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support.smtpd_fakes import RawClient, RunningSmtpd, client_tls_context  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


@pytest.fixture(params=["asyncio", "uvloop"])
def loop_kind(request: pytest.FixtureRequest) -> str:
    return request.param


def raw_tcp(port: int, source: str = "127.0.0.1", timeout: float = 5.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                    source_address=(source, 0))


def closed_by_server(sock: socket.socket) -> bool:
    """True when the server closes (or resets) the connection before the socket's
    timeout; nothing is sent."""
    try:
        return sock.recv(1024) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def wait_for_sessions(smtpd: RunningSmtpd, count: int) -> None:
    deadline = time.monotonic() + 5
    while smtpd.connection_count() != count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert smtpd.connection_count() == count


def test_pre_handshake_connections_are_counted(tmp_path: Path, loop_kind: str) -> None:
    """Raw TCP connections to port 465 that never send a ClientHello count against
    smtpd.max_connections_per_ip: the 6th of 5 allowed is closed at once, port 25 is
    refused for that address too (421 4.7.0) and still greets another one."""
    with RunningSmtpd(tmp_path, max_connections_per_ip=5,
                      uvloop=loop_kind == "uvloop") as smtpd:
        port = smtpd.ports["submissions"]
        idle = [raw_tcp(port) for _ in range(5)]
        wait_for_sessions(smtpd, 5)
        with raw_tcp(port) as sixth:
            assert closed_by_server(sixth)
        with RawClient(smtpd.ports["smtp"]) as same_ip:
            assert same_ip.code() == "421 4.7.0"
        with raw_tcp(smtpd.ports["smtp"], source="127.0.0.2") as other:
            assert other.recv(1024).startswith(b"220 ")
        for sock in idle:
            sock.close()
        wait_for_sessions(smtpd, 0)
        with smtplib.SMTP_SSL("127.0.0.1", port, timeout=10,
                              context=client_tls_context()) as client:
            assert client.ehlo()[0] == 250


def test_handshake_that_never_starts_is_closed(tmp_path: Path, loop_kind: str) -> None:
    """smtpd.tls_handshake_timeout: a client that connects to port 465 and sends
    nothing is disconnected, and its slot is freed."""
    with RunningSmtpd(tmp_path, tls_handshake_timeout=0.5,
                      uvloop=loop_kind == "uvloop") as smtpd:
        with raw_tcp(smtpd.ports["submissions"], timeout=10) as sock:
            started = time.monotonic()
            assert closed_by_server(sock)
            assert 0.3 < time.monotonic() - started < 8
        wait_for_sessions(smtpd, 0)


def test_over_cap_on_465_is_closed_without_cleartext(tmp_path: Path) -> None:
    """A TLS client over the cap sees the connection closed during the handshake
    (no cleartext 421 on a TLS port)."""
    with RunningSmtpd(tmp_path, max_connections=1) as smtpd:
        port = smtpd.ports["submissions"]
        with RawClient(port, tls=True) as first:
            assert first.code() == "220"
            with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
                RawClient(port, tls=True)


def test_command_line_trickled_one_octet_at_a_time(tmp_path: Path, loop_kind: str) -> None:
    """A command line must be complete within smtpd.command_timeout of its first
    octet: one octet every 0.6 timeouts keeps the connection busy but never
    finishes a line, and gets 421 4.4.2."""
    timeout = 1.0
    with RunningSmtpd(tmp_path, command_timeout=timeout,
                      uvloop=loop_kind == "uvloop") as smtpd, RawClient(smtpd.ports["smtp"]) as raw:
        assert raw.code() == "220"
        raw.sock.settimeout(timeout * 0.6)
        started = time.monotonic()
        for octet in b"NOOP NOOP NOOP NOOP NOOP NOOP":
            try:
                raw.send(bytes([octet]))
                raw.buffer += raw.sock.recv(1024)
            except TimeoutError:
                continue
            except OSError:
                break
            if raw.buffer:
                break
        raw.sock.settimeout(5)
        assert raw.code() == "421 4.4.2"
        assert time.monotonic() - started < timeout * 3
        assert raw.closed()


def test_complete_lines_keep_a_session_alive(tmp_path: Path) -> None:
    """The per-line deadline does not touch a client that sends whole commands."""
    with (
        RunningSmtpd(tmp_path, command_timeout=1.0) as smtpd,
        RawClient(smtpd.ports["smtp"]) as raw,
    ):
        assert raw.code() == "220"
        for _ in range(4):
            time.sleep(0.6)
            assert raw.command(b"NOOP") == "250 2.0.0"


def test_session_time_limit(tmp_path: Path, loop_kind: str) -> None:
    """smtpd.max_session_time: a client that keeps sending commands is closed with
    421 4.4.2 once the session is that old."""
    with RunningSmtpd(tmp_path, max_session_time=1.0, command_timeout=30,
                      uvloop=loop_kind == "uvloop") as smtpd, RawClient(smtpd.ports["smtp"]) as raw:
        assert raw.code() == "220"
        started = time.monotonic()
        replies = []
        while time.monotonic() - started < 10:
            time.sleep(0.2)
            try:
                raw.send(b"NOOP\r\n")
                replies.append(raw.reply())
            except OSError:
                break
            if not replies[-1].startswith(b"250 "):
                break
        assert replies[-1] == b"421 4.4.2 Session time limit exceeded, closing connection"
        assert len(replies) > 1
        assert raw.closed()
