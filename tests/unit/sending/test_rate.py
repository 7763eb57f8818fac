"""Per-destination rates of a delivery pool (mailyard.sending.rate) on a fake clock."""

from __future__ import annotations

import pytest

from mailyard.sending.rate import RatePacer, parse_rate


def test_parse_rate() -> None:
    assert parse_rate("300/h").interval == 12.0
    assert parse_rate("10/m").interval == 6.0
    assert parse_rate(" 50 / 10m ").interval == 12.0
    for bad in ("", "0/h", "5", "5/y", "-1/h", "5/0m"):
        with pytest.raises(ValueError):
            parse_rate(bad)


def test_pacer_spaces_messages_evenly() -> None:
    pacer = RatePacer({"gmail.com": "60/m", ".example.org": "1/s"})
    now = 1000.0
    assert pacer.reserve("gmail.com", now) is None
    assert pacer.reserve("gmail.com", now) == now + 1.0  # not yet
    assert pacer.reserve("gmail.com", now + 0.5) == now + 1.0
    assert pacer.reserve("gmail.com", now + 1.0) is None
    assert pacer.reserve("other.test", now) is None  # not limited
    assert pacer.reserve("a.example.org", now) is None
    assert pacer.reserve("b.Example.ORG", now) == now + 1.0  # the entry's one budget


def test_burst_after_quiet_period() -> None:
    pacer = RatePacer({"gmail.com": "60/m"}, burst=3)
    now = 0.0
    assert [pacer.reserve("gmail.com", now) for _ in range(3)] == [None, None, None]
    assert pacer.reserve("gmail.com", now) == 1.0
