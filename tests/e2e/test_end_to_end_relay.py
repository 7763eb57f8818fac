"""Relay modes for a gateway route: store-and-forward (the default: accept, queue, bounce
later) and end-to-end (forward while the sender waits and answer with the next hop's
verdict; fall back to queueing when the next hop is unreachable)."""

from __future__ import annotations

import asyncio
import smtplib
import threading
from email.message import EmailMessage

import pytest

from tests.support.fake_smtp import FakeSmtpServer
from tests.support.mailyard_server import MailyardServer, free_port

pytestmark = pytest.mark.e2e


class ThreadedFake:
    """A FakeSmtpServer running in its own event loop thread."""

    def __init__(self, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.loop = asyncio.new_event_loop()
        self.fake = FakeSmtpServer(**kwargs)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> FakeSmtpServer:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.fake.__aenter__(), self.loop).result(10)
        return self.fake

    def __exit__(self, *exc: object) -> None:
        stopping = self.fake.__aexit__(None, None, None)
        asyncio.run_coroutine_threadsafe(stopping, self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def _server(tmp_path, port: int, mode: str) -> MailyardServer:
    srv = MailyardServer(tmp_path, domains=("example.test",), overrides={
        "relay_domains": ["gw.test"],
        "delivery": {"transports": [{"domain": "gw.test", "nexthop": f"127.0.0.1:{port}",
                                     "tls": "none", "mode": mode}],
                     "retry_schedule": [1], "connect_timeout": 3.0},
    })
    srv.add_user("alice@example.test", "pw")
    return srv


def _message(to: str) -> EmailMessage:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "alice@example.test", to, "gateway"
    m.set_content("through the gateway\n")
    return m


def _send(srv: MailyardServer, to: str) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=20) as s:
        s.ehlo("client.test")
        s.mail("alice@example.test")
        code, _ = s.rcpt(to)
        assert code == 250
        return s.data(_message(to).as_string())


def test_end_to_end_answers_with_the_next_hops_acceptance(tmp_path):
    with ThreadedFake() as fake:
        with _server(tmp_path, fake.port, "end-to-end") as srv:
            code, text = _send(srv, "bob@gw.test")
            assert code == 250 and b"Delivered to next hop" in text
            assert srv.queue() == []
        assert len(fake.messages) == 1
        assert fake.messages[0].rcpts == ["bob@gw.test"]


def test_end_to_end_passes_a_rejection_back_in_session(tmp_path):
    with (
        ThreadedFake(rcpt_replies={"bad@gw.test": b"550 5.1.1 No such user here\r\n"}) as fake,
        _server(tmp_path, fake.port, "end-to-end") as srv,
    ):
        code, text = _send(srv, "bad@gw.test")
        # The sender hears the next hop's verdict; nothing is queued, no bounce is due.
        assert code == 550 and text.startswith(b"5.1.1")
        assert srv.queue() == []
        assert srv.messages("alice@example.test") == []


def test_end_to_end_falls_back_to_queueing_when_next_hop_is_down(tmp_path):
    dead_port = free_port()
    with _server(tmp_path, dead_port, "end-to-end") as srv:
        code, text = _send(srv, "bob@gw.test")
        assert code == 250 and b"Queued as" in text
        entries = srv.queue()
        assert len(entries) == 1
        assert entries[0]["recipients"][0]["address"] == "bob@gw.test"


def test_store_and_forward_accepts_then_bounces(tmp_path):
    with (
        ThreadedFake(rcpt_replies={"bad@gw.test": b"550 5.1.1 No such user here\r\n"}) as fake,
        _server(tmp_path, fake.port, "store-and-forward") as srv,
    ):
        code, text = _send(srv, "bad@gw.test")
        assert code == 250 and b"Queued as" in text
        bounces = srv.wait_for_messages("alice@example.test", 1, timeout=20)
        assert len(bounces) == 1
        assert b"multipart/report" in bounces[0] and b"Status: 5.1.1" in bounces[0]
        assert srv.wait_queue_empty(20)
