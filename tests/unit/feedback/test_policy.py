"""Soft bounces suppress an address after N distinct messages within D days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mailyard.feedback.policy import SoftBounce, SoftBouncePolicy, decide, should_suppress

NOW = datetime(2025, 11, 3, 12, 0, tzinfo=UTC)


def bounces(*spec: tuple[float, str]) -> list[SoftBounce]:
    return [SoftBounce(NOW - timedelta(days=days), msg) for days, msg in spec]


def test_threshold_reached_within_window() -> None:
    decision = decide(SoftBouncePolicy(3, 7), bounces((1, "c1"), (3, "c2"), (6, "c3")), NOW)
    assert decision.suppress and decision.counted == 3


def test_below_threshold() -> None:
    assert not decide(SoftBouncePolicy(3, 7), bounces((1, "c1"), (3, "c2")), NOW).suppress


def test_old_bounces_fall_out_of_the_window() -> None:
    decision = decide(SoftBouncePolicy(3, 7), bounces((1, "c1"), (3, "c2"), (8, "c3")), NOW)
    assert not decision.suppress and decision.counted == 2


def test_delay_and_failure_of_one_message_count_once() -> None:
    decision = decide(SoftBouncePolicy(2, 7), bounces((1, "c1"), (2, "c1"), (3, "c1")), NOW)
    assert not decision.suppress and decision.counted == 1


def test_success_resets_the_count() -> None:
    spec = bounces((1, "c1"), (4, "c2"), (5, "c3"))
    assert decide(SoftBouncePolicy(3, 7), spec, NOW).suppress
    decision = decide(SoftBouncePolicy(3, 7), spec, NOW, last_success=NOW - timedelta(days=2))
    assert not decision.suppress and decision.counted == 1


def test_future_bounces_are_ignored() -> None:
    assert decide(SoftBouncePolicy(1, 7), bounces((-1, "c1")), NOW).counted == 0


def test_threshold_one_suppresses_on_first() -> None:
    assert decide(SoftBouncePolicy(1, 1), bounces((0.5, "c1")), NOW).suppress
    assert should_suppress(SoftBouncePolicy(1, 1), 1)
    assert not should_suppress(SoftBouncePolicy(2, 1), 1)


@pytest.mark.parametrize("threshold,days", [(0, 7), (3, 0), (-1, -1)])
def test_invalid_policy(threshold: int, days: int) -> None:
    with pytest.raises(ValueError):
        SoftBouncePolicy(threshold, days)
