"""format_date: RFC 5322 3.3 date-time in UTC, as ``email.utils.format_datetime``
writes it."""

from __future__ import annotations

import datetime
import email.utils

import pytest

from mailyard.message.headers import format_date


@pytest.mark.parametrize("timestamp", [
    0.0, 1.5, 59.999, 951_782_400.0,  # 2000-02-29, a leap day
    1_740_830_400.25, 1_767_225_599.9999, 4_102_444_800.0, -86_400.0])
def test_format_date_is_rfc_5322_3_3_as_the_email_package_writes_it(timestamp: float) -> None:
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    assert format_date(timestamp) == email.utils.format_datetime(moment)


def test_format_date_example() -> None:
    assert format_date(1_740_830_400.0) == "Sat, 01 Mar 2025 12:00:00 +0000"
