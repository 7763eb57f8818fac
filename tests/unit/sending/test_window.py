"""The sliding windows of the sending limits (mailyard.sending.window), on a fake
clock: per-minute buckets, what is in the hour and day windows, and when a refused
send would fit again."""

from __future__ import annotations

from mailyard.sending.window import (
    Bucket,
    Resource,
    SendLimits,
    Window,
    exceeded,
    in_window,
    usage_of,
)

T0 = 1_700_000_040.0  # the start of a minute (1_700_000_040 / 60 is whole)
M0 = int(T0 // 60)


def test_hour_window_is_the_current_minute_and_the_59_before() -> None:
    now = T0 + 30
    assert in_window(Bucket(M0, 1, 1), Window.HOUR, now)
    assert in_window(Bucket(M0 - 59, 1, 1), Window.HOUR, now)
    assert not in_window(Bucket(M0 - 60, 1, 1), Window.HOUR, now)
    assert in_window(Bucket(M0 - 60, 1, 1), Window.DAY, now)
    assert in_window(Bucket(M0 - 1439, 1, 1), Window.DAY, now)
    assert not in_window(Bucket(M0 - 1440, 1, 1), Window.DAY, now)


def test_usage_sums_each_window() -> None:
    buckets = [Bucket(M0, 2, 5), Bucket(M0 - 30, 1, 1), Bucket(M0 - 120, 4, 40),
               Bucket(M0 - 2000, 100, 100)]
    u = usage_of(buckets, T0)
    assert (u.messages_hour, u.recipients_hour) == (3, 6)
    assert (u.messages_day, u.recipients_day) == (7, 46)


def test_unlimited_and_within_limits_pass() -> None:
    buckets = [Bucket(M0, 5, 50)]
    assert exceeded(buckets, SendLimits(), T0, messages=1, recipients=100) is None
    limits = SendLimits(messages_per_hour=6, recipients_per_hour=51)
    assert exceeded(buckets, limits, T0, messages=1) is None
    assert exceeded(buckets, limits, T0, recipients=1) is None


def test_message_over_hourly_limit_waits_for_oldest_bucket_to_leave() -> None:
    # 3 per hour; one sent 50 minutes ago, two 10 minutes ago; now + 20 s.
    buckets = [Bucket(M0 - 50, 1, 1), Bucket(M0 - 10, 2, 2)]
    now = T0 + 20
    ex = exceeded(buckets, SendLimits(messages_per_hour=3), now, messages=1)
    assert ex is not None
    assert (ex.resource, ex.window, ex.limit, ex.permanent) == (
        Resource.MESSAGES, Window.HOUR, 3, False)
    # The bucket of minute M0-50 leaves at the start of minute M0+10.
    assert ex.retry_after == 10 * 60 - 20
    # ... and at that time the message fits.
    assert exceeded(buckets, SendLimits(messages_per_hour=3), now + ex.retry_after,
                    messages=1) is None
    assert exceeded(buckets, SendLimits(messages_per_hour=3), now + ex.retry_after - 1,
                    messages=1) is not None


def test_several_buckets_must_leave_for_several_recipients() -> None:
    buckets = [Bucket(M0 - 40, 0, 3), Bucket(M0 - 30, 0, 3), Bucket(M0 - 5, 0, 3)]
    ex = exceeded(buckets, SendLimits(recipients_per_hour=10), T0, recipients=5)
    assert ex is not None and ex.resource is Resource.RECIPIENTS
    # 9 used + 5 = 14: 4 must go, so the first two buckets (6): minute M0-30 leaves at M0+30.
    assert ex.retry_after == 30 * 60


def test_the_longest_wait_wins_and_day_limits_count() -> None:
    buckets = [Bucket(M0 - 1000, 10, 10), Bucket(M0 - 1, 1, 1)]
    limits = SendLimits(messages_per_hour=2, messages_per_day=11)
    ex = exceeded(buckets, limits, T0, messages=1)
    assert ex is not None and ex.window is Window.DAY
    assert ex.retry_after == (1440 - 1000) * 60


def test_request_larger_than_the_limit_is_permanent() -> None:
    ex = exceeded([], SendLimits(recipients_per_hour=5), T0, recipients=6)
    assert ex is not None and ex.permanent
