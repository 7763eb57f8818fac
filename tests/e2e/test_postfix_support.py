"""The private-Postfix helper (tests/support/postfix.py) against real Postfix on loopback."""

from __future__ import annotations

import smtplib
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support.postfix import PostfixInstance, SmtpSink, postfix_available  # noqa: E402

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.postfix,
    pytest.mark.timeout(90),
    pytest.mark.skipif(postfix_available() is not None, reason=str(postfix_available())),
]

MESSAGE = b"Subject: helper test\r\n\r\nbody\r\n"


def send(port: int, rcpt: str, count: int = 1) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        for _ in range(count):
            client.sendmail("sender@origin.test", [rcpt], MESSAGE)


@pytest.mark.parametrize("deferral,queue", [("defer", "deferred"), ("hold", "hold")])
def test_accept_mode_keeps_mail_queued(deferral: str, queue: str) -> None:
    with PostfixInstance.accept("bench.test", deferral=deferral) as postfix:
        send(postfix.port, "postmaster@bench.test", 3)
        postfix.wait_queue_count(3, timeout=10)
        postfix.wait_queue_count(3, timeout=20, queues=[queue])
        assert postfix.queue_count() == 3
        entries = postfix.queue_entries()
        assert [e["recipients"][0]["address"] for e in entries] == ["postmaster@bench.test"] * 3
    assert postfix.master_pid() is None
    assert not postfix.root.exists()


def test_accept_mode_refuses_unknown_recipient() -> None:
    with PostfixInstance.accept("bench.test") as postfix:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as err:
            send(postfix.port, "nobody@bench.test")
        assert err.value.recipients["nobody@bench.test"][0] == 550
        assert postfix.queue_count() == 0


def test_relay_mode_empties_queue_into_sink() -> None:
    with SmtpSink() as sink, PostfixInstance.relay(sink.address) as postfix:
        send(postfix.port, "anyone@elsewhere.test", 5)
        sink.wait_messages(5, timeout=30)
        postfix.wait_queue_empty(timeout=30)
    assert sink.message_count() == 5


def test_deliver_mode_routes_one_domain_and_refuses_relay() -> None:
    with SmtpSink() as sink, PostfixInstance.deliver("dest.test", sink.address,
                                                     extra={"mynetworks": ""}) as postfix:
        send(postfix.port, "user@dest.test", 2)
        sink.wait_messages(2, timeout=30)
        postfix.wait_queue_empty(timeout=30)
        with pytest.raises(smtplib.SMTPRecipientsRefused) as err:
            send(postfix.port, "user@other.test")
        # Postfix 3 answers relay attempts with defer_unauth_destination (454).
        assert err.value.recipients["user@other.test"][0] in (454, 554)


def test_stop_is_idempotent() -> None:
    postfix = PostfixInstance.accept("bench.test").start()
    postfix.stop()
    postfix.stop()
    assert postfix.master_pid() is None
