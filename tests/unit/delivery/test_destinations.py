"""Dead destinations and fair shares (mailyard.delivery.destinations), pure logic."""

from __future__ import annotations

from mailyard.config import DeliveryConfig
from mailyard.delivery.destinations import BUSY_WAIT, DEAD_AFTER, Destinations
from mailyard.proto.smtp.replies import REPLY_DESTINATION_BUSY
from tests.support.replies import reply

CONFIG = DeliveryConfig(retry_schedule=(60, 300), active_window=40)
REFUSED = reply(451, "4.4.1", "connect to mx: Connection refused")


def test_suspended_after_dead_after_unanswered_attempts_and_swept_once() -> None:
    d = Destinations(CONFIG)
    for _ in range(DEAD_AFTER - 1):
        d.attempt_ended("down.test", False, REFUSED, 100.0)
    assert d.suspension("down.test", 100.0) is None
    d.attempt_ended("down.test", False, REFUSED, 100.0)
    hold = d.suspension("down.test", 100.0)
    assert hold is not None and hold.until == 160.0
    assert (hold.reason.code, hold.reason.status) == (451, "4.4.1")
    assert str(REFUSED) in str(hold.reason) and "suspended" in str(hold.reason)
    assert [(s.domain, s.until) for s in d.take_sweeps()] == [("down.test", 160.0)]
    assert d.admit("down.test", 110.0) == hold
    assert d.take_sweeps() == []  # the queue was swept already for this suspension
    assert d.suspension("down.test", 160.0) is None  # over: the next attempt is a probe


def test_one_failed_probe_suspends_again_an_answer_lifts_it() -> None:
    d = Destinations(CONFIG)
    for _ in range(DEAD_AFTER):
        d.attempt_ended("down.test", False, REFUSED, 100.0)
    d.attempt_ended("down.test", False, REFUSED, 161.0)
    assert d.suspension("down.test", 161.0).until == 221.0
    d.attempt_ended("down.test", True, reply(250, "", "ok", "mx"), 162.0)
    assert d.suspension("down.test", 162.0) is None
    for _ in range(DEAD_AFTER - 1):
        d.attempt_ended("down.test", False, REFUSED, 163.0)
    assert d.suspension("down.test", 163.0) is None


def test_share_of_the_window_per_destination() -> None:
    d = Destinations(CONFIG)
    assert d.share == 10  # active_window // 4
    assert all(d.admit("busy.test", 0.0) is None for _ in range(10))
    assert d.admit("other.test", 0.0) is None
    hold = d.admit("busy.test", 0.0)
    assert hold is not None and hold.until == BUSY_WAIT
    assert hold.reason.reply == REPLY_DESTINATION_BUSY.fill(share=10, domain="busy.test")
    assert [s.domain for s in d.take_sweeps()] == ["busy.test"]
    # Still over its share when the wait ends: swept again, waiting twice as long.
    again = d.admit("busy.test", BUSY_WAIT)
    assert again is not None and again.until == BUSY_WAIT + 2 * BUSY_WAIT
    for _ in range(6):
        d.leave("busy.test")
    assert d.in_flight("busy.test") == 4
    assert d.admit("busy.test", 10.0) is None
