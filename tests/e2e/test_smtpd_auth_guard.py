"""AUTH guard end to end (mailyard.smtpd.authguard): the real ``mailyard serve`` with
real argon2id hashes, smtplib over implicit TLS (port 465 role), and client sockets
bound to 127.0.0.1 or 127.0.0.2 to play two client addresses."""

from __future__ import annotations

import base64
import os
import signal
import smtplib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.certs import unverified_tls
from tests.support.mailyard_server import MailyardServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def _plain(user: str, password: str) -> str:
    return "PLAIN " + base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def _connect(server: MailyardServer, source: str = "127.0.0.1") -> smtplib.SMTP_SSL:
    client = smtplib.SMTP_SSL("127.0.0.1", server.ports["submissions"], timeout=30,
                              context=unverified_tls(), source_address=(source, 0))
    client.ehlo("client.test")
    return client


def auth(server: MailyardServer, user: str, password: str, source: str = "127.0.0.1"
         ) -> tuple[int, bytes]:
    """One AUTH PLAIN on a new connection: the reply code and text."""
    client = _connect(server, source)
    try:
        return client.docmd("AUTH", _plain(user, password))
    finally:
        client.close()


def guard_server(tmp_path: Path, workers: int = 1, **smtpd: object) -> MailyardServer:
    overrides = {"smtpd": {"auth_failure_delay": 0.01, "auth_failure_delay_max": 0.05,
                           **smtpd}}
    server = MailyardServer(tmp_path, overrides=overrides, workers=workers)
    server.add_user("alice@example.test", "alice-secret")
    return server


def test_saturated_verification_slots_answer_454(tmp_path: Path) -> None:
    """RFC 4954 6: with every verification slot taken (auth_concurrency = 1, no queue),
    a further AUTH gets 454 4.7.0 at once, without hashing."""
    with guard_server(tmp_path, auth_concurrency=1, auth_queue=0,
                      auth_max_failures_per_ip=0, auth_max_failures_per_user=0) as server:
        clients = [_connect(server) for _ in range(6)]
        start = threading.Barrier(len(clients))
        replies: list[tuple[int, bytes]] = []

        def attempt(client: smtplib.SMTP_SSL) -> None:
            start.wait()
            replies.append(client.docmd("AUTH", _plain("nobody@example.test", "guess")))

        threads = [threading.Thread(target=attempt, args=(c,)) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for c in clients:
            c.close()
        codes = sorted(code for code, _ in replies)
        assert len(codes) == 6 and set(codes) == {454, 535}, replies
        busy = [text for code, text in replies if code == 454]
        assert all(text.startswith(b"4.7.0 Temporary authentication failure") for text in busy)
        # After the flood, a slot is free again.
        assert auth(server, "alice@example.test", "alice-secret")[0] == 235
    assert "result=busy" in (tmp_path / "mailyard.log").read_text()


def test_repeated_failures_lock_out_the_address_not_others(tmp_path: Path) -> None:
    """After auth_max_failures_per_ip failures from 127.0.0.1, AUTH from there gets
    421 4.7.0 and the connection closes (even with the right password); 127.0.0.2
    still authenticates."""
    with guard_server(tmp_path, auth_max_failures_per_ip=3, auth_max_failures_per_user=0) as server:
        codes = [auth(server, "nobody@example.test", f"guess-{i}")[0] for i in range(3)]
        assert codes == [535, 535, 535]
        code, text = auth(server, "alice@example.test", "alice-secret")
        assert (code, text) == (421, b"4.7.0 Too many authentication failures, try later")
        assert auth(server, "alice@example.test", "alice-secret", source="127.0.0.2")[0] == 235
    log = (tmp_path / "mailyard.log").read_text()
    failed = [line for line in log.splitlines() if "smtp auth" in line and "result=failed" in line]
    assert len(failed) == 3
    assert all("client=127.0.0.1 user=nobody@example.test" in line for line in failed)
    assert "result=locked" in log


def _worker_pids(server: MailyardServer) -> list[int]:
    assert server.proc is not None
    pid = server.proc.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    # the SMTP workers only (not the campaign or HTTP worker processes)
    return [int(c) for c in children
            if b"mailyard.daemon.worker" in Path(f"/proc/{c}/cmdline").read_bytes()]


@contextmanager
def _stopped(pid: int) -> Iterator[None]:
    """Only the other worker accepts while ``pid`` is stopped."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def test_failures_on_two_workers_add_up(tmp_path: Path) -> None:
    """The counters are per node, not per worker process: two failures served by each
    of the two workers reach auth_max_failures_per_ip = 4."""
    with guard_server(tmp_path, workers=2, auth_max_failures_per_ip=4,
                      auth_max_failures_per_user=0) as server:
        workers = _worker_pids(server)
        assert len(workers) == 2
        for busy_worker in workers:
            with _stopped(busy_worker):
                codes = [auth(server, "nobody@example.test", f"guess-{i}")[0] for i in range(2)]
            assert codes == [535, 535]
        assert auth(server, "nobody@example.test", "guess")[0] == 421
        assert auth(server, "alice@example.test", "alice-secret", source="127.0.0.2")[0] == 235


def test_scram_failures_count_and_scram_is_locked_out_too(tmp_path: Path) -> None:
    """SCRAM-SHA-256 (RFC 7677) costs no argon2id hash but is password guessing all the
    same: its failures count, and a locked-out address gets 421 4.7.0 at its first
    message (in-process server, real sockets)."""
    import time

    from mailyard.sasl.scram import scram_client_final
    from tests.support.smtpd_fakes import RawClient, RunningSmtpd

    def scram_start(raw: RawClient) -> tuple[bytes, str]:
        raw.code()
        raw.command(b"EHLO c")
        bare = "n=user@mx.test,r=abcdefgh"
        raw.send(b"AUTH SCRAM-SHA-256 " + base64.b64encode(("n,," + bare).encode()) + b"\r\n")
        return raw.reply(), bare

    with RunningSmtpd(tmp_path, auth_max_failures_per_ip=2, auth_max_failures_per_user=0,
                      auth_failure_delay=0.0, auth_failure_delay_max=0.0) as smtpd:
        port = smtpd.ports["submissions"]
        for _ in range(2):
            with RawClient(port, tls=True) as raw:
                challenge, bare = scram_start(raw)
                server_first = base64.b64decode(challenge[4:]).decode()
                final, _ = scram_client_final("wrong", bare, server_first)
                raw.send(base64.b64encode(final.encode()) + b"\r\n")
                assert raw.code() == "535 5.7.8"
        # SCRAM failures are counted just after their reply: allow that moment.
        for _ in range(50):
            with RawClient(port, tls=True) as raw:
                reply, _ = scram_start(raw)
                if reply.startswith(b"334 "):
                    assert raw.command(b"*") == "501 5.7.0"
                    time.sleep(0.05)
                    continue
                assert reply == b"421 4.7.0 Too many authentication failures, try later"
                assert raw.closed()
                break
        else:
            pytest.fail("SCRAM failures were not counted")
        with RawClient(port, tls=True) as raw:
            raw.code()
            raw.command(b"EHLO c")
            assert raw.command(b"AUTH " + _plain("user@mx.test", "secret").encode()) == "421 4.7.0"
