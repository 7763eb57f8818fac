"""Retry schedule, queue lifetime and delay warnings (pure functions of the clock)."""

from __future__ import annotations

import random

from mailyard.config import DeliveryConfig
from mailyard.delivery.retry import EXPIRED_STATUS, RetryPolicy, describe_duration
from mailyard.message.dsn import status_of
from mailyard.proto.smtp.replies import Reply
from mailyard.queue.api import DeliveryReply, RecipientState, ReplyOrigin

POLICY = RetryPolicy(schedule=(60, 300, 900), max_lifetime=86400.0, delay_warning=3600.0)


def test_from_config():
    cfg = DeliveryConfig()
    policy = RetryPolicy.from_config(cfg)
    assert policy.schedule == cfg.retry_schedule
    assert policy.max_lifetime == cfg.max_lifetime
    assert policy.delay_warning == cfg.delay_warning


def test_schedule_steps_then_repeats_last():
    assert [POLICY.base_delay(n) for n in (1, 2, 3, 4, 10)] == [60, 300, 900, 900, 900]
    assert POLICY.base_delay(0) == 60


def test_jitter_is_small_and_varies():
    rng = random.Random(7)
    times = [POLICY.next_attempt(2, 1000.0, rng=rng) for _ in range(200)]
    assert all(1000 + 270 <= t <= 1000 + 330 for t in times)
    assert len({round(t, 3) for t in times}) > 100


def test_no_jitter_when_disabled():
    policy = RetryPolicy((60,), 1000.0, 0.0, jitter=0.0)
    assert policy.next_attempt(1, 10.0) == 70.0


def test_last_retry_pulled_in_to_expiry():
    arrival = 0.0
    now = POLICY.max_lifetime - 100
    assert POLICY.next_attempt(5, now, arrival=arrival, rng=random.Random(1)) == 86400.0
    assert POLICY.next_attempt(5, now, rng=random.Random(1)) > 86400.0


def test_expiry():
    assert not POLICY.expired(1000.0, 1000.0 + 86399)
    assert POLICY.expired(1000.0, 1000.0 + 86400)


def test_temporary_failure_defers_until_lifetime_then_fails_with_4_4_7():
    """RFC 3463 X.4.7: delivery time expired."""
    later = DeliveryReply(Reply(451, "4.3.0", "Try later"), "mx.example")
    deferred = POLICY.after_temporary_failure(2, later, 0.0, 1, 500.0, random.Random(1))
    assert deferred.state is RecipientState.DEFERRED and deferred.reply == later
    assert 500 + 54 <= deferred.next_attempt <= 500 + 66
    expired = POLICY.after_temporary_failure(2, later, 0.0, 9, 86400.0)
    assert expired.state is RecipientState.FAILED and expired.index == 2
    assert expired.reply.status == EXPIRED_STATUS and expired.reply.origin is ReplyOrigin.LOCAL
    assert "451 4.3.0 Try later" in expired.reply.text and "1 day" in expired.reply.text
    assert status_of(expired.reply.reply) == "4.4.7"


def test_delay_warning_once_after_the_delay():
    assert not POLICY.delay_warning_due(0.0, 3599.0, False)
    assert POLICY.delay_warning_due(0.0, 3600.0, False)
    assert not POLICY.delay_warning_due(0.0, 7200.0, True)
    assert POLICY.delay_warning_due(0.0, 7200.0)


def test_delay_warning_off():
    assert not RetryPolicy((60,), 3600.0, 0.0).delay_warning_due(0.0, 5000.0, False)
    assert not RetryPolicy((60,), 3600.0, 3600.0).delay_warning_due(0.0, 5000.0, False)


def test_describe_duration():
    assert describe_duration(5 * 86400) == "5 days"
    assert describe_duration(3600) == "1 hour"
    assert describe_duration(90 * 60) == "90 minutes"
    assert describe_duration(61) == "61 seconds"
