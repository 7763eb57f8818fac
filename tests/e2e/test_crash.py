"""Crash safety: SIGKILL the whole server (supervisor and workers) at random points
while clients are sending and mail is being delivered, restart it, and check the
mailbox: every message that got 250 is delivered exactly once; no message whose DATA
was cut off is delivered; a message whose final dot was sent but whose reply was lost
is delivered at most once (the client cannot know; RFC 1047)."""

from __future__ import annotations

import contextlib
import random
import re
import socket
import threading
import time

import pytest

from tests.support.mailyard_server import MailyardServer

pytestmark = pytest.mark.e2e

RCPT = "sink@crash.test"
ACKED, AMBIGUOUS, CUT = "acked", "ambiguous", "cut"


class Client(threading.Thread):
    """Sends messages one by one over raw sockets, in two halves with a pause between,
    so kills land before, during and after DATA."""

    def __init__(self, port_ref, outcomes, lock, prefix, stop):  # type: ignore[no-untyped-def]
        super().__init__(daemon=True)
        self.port_ref, self.outcomes, self.lock = port_ref, outcomes, lock
        self.prefix, self.stop_event = prefix, stop
        self.rng = random.Random(prefix)
        self.n = 0

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.n += 1
            token = f"{self.prefix}-{self.n}"
            state = self.send_one(token)
            with self.lock:
                self.outcomes[token] = state
            if state != ACKED:
                time.sleep(0.05)

    def send_one(self, token: str) -> str:
        head = (f"From: a@remote.test\r\nTo: {RCPT}\r\nSubject: crash\r\n"
                f"X-Token: {token}\r\n\r\n").encode()
        body = head + (b"x" * 76 + b"\r\n") * self.rng.randint(1, 250)
        try:
            s = socket.create_connection(("127.0.0.1", self.port_ref[0]), timeout=5)
        except OSError:
            return CUT
        f = s.makefile("rb")
        try:
            def reply() -> bytes:
                while True:
                    line = f.readline()
                    if not line:
                        raise ConnectionError("closed")
                    if line[3:4] != b"-":
                        return line
            if not reply().startswith(b"220"):
                return CUT
            s.sendall(b"EHLO crash.test\r\n")
            reply()
            s.sendall(b"MAIL FROM:<a@remote.test>\r\n")
            if not reply().startswith(b"250"):
                return CUT
            s.sendall(f"RCPT TO:<{RCPT}>\r\n".encode())
            if not reply().startswith(b"250"):
                return CUT
            s.sendall(b"DATA\r\n")
            if not reply().startswith(b"354"):
                return CUT
            half = len(body) // 2
            s.sendall(body[:half])
            time.sleep(self.rng.random() * 0.02)
            s.sendall(body[half:])
        except OSError:
            return CUT
        try:
            s.sendall(b".\r\n")
        except OSError:
            return AMBIGUOUS  # the dot may or may not have arrived
        try:
            final = reply()
        except OSError:
            return AMBIGUOUS
        finally:
            with contextlib.suppress(OSError):
                s.sendall(b"QUIT\r\n")
            s.close()
        return ACKED if final.startswith(b"250") else CUT


def _tokens(server: MailyardServer) -> list[str]:
    found = []
    for msg in server.messages(RCPT):
        m = re.search(rb"X-Token: (\S+)", msg)
        assert m, "delivered message without its token"
        found.append(m.group(1).decode())
    return found


@pytest.mark.timeout(600)  # six restarts: each start waits for every worker to listen
def test_sigkill_at_random_points_loses_nothing_and_duplicates_nothing(tmp_path):
    rng = random.Random(20261129)
    srv = MailyardServer(tmp_path, domains=("crash.test",), workers=2)
    srv.add_user(RCPT, "pw")
    srv.start()
    port_ref = [srv.ports["smtp"]]
    outcomes: dict[str, str] = {}
    lock = threading.Lock()
    stop = threading.Event()
    clients = [Client(port_ref, outcomes, lock, f"c{i}", stop) for i in range(6)]
    for c in clients:
        c.start()
    try:
        try:
            for _round in range(6):
                time.sleep(0.3 + rng.random() * 1.2)
                srv.kill()
                time.sleep(rng.random() * 0.3)
                srv.start()
            time.sleep(1.0)
        finally:
            stop.set()
            for c in clients:
                c.join(15)
        assert srv.wait_queue_empty(60), f"queue did not drain: {srv.queue()}"
        delivered = _tokens(srv)
    finally:
        srv.stop()
    counts: dict[str, int] = {}
    for t in delivered:
        counts[t] = counts.get(t, 0) + 1
    acked = [t for t, s in outcomes.items() if s == ACKED]
    print(f"acked={len(acked)} delivered={len(delivered)} "
          f"ambiguous={sum(1 for s in outcomes.values() if s == AMBIGUOUS)}")
    assert len(acked) > 50, "the test did not exercise enough traffic"
    lost = [t for t in acked if counts.get(t, 0) == 0]
    dupes = [t for t, n in counts.items() if n > 1]
    cut_but_delivered = [t for t, s in outcomes.items() if s == CUT and t in counts]
    unknown = [t for t in counts if t not in outcomes]
    assert not lost, f"acknowledged but not delivered: {lost[:10]}"
    assert not dupes, f"delivered more than once: {dupes[:10]}"
    assert not cut_but_delivered, \
        f"not acknowledged (DATA cut) but delivered: {cut_but_delivered[:10]}"
    assert not unknown
