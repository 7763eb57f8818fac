"""RFC 3463 enhanced status codes and server text to hard/soft."""

from __future__ import annotations

import pytest

from mailyard.feedback.model import Severity
from mailyard.feedback.status import find_smtp_code, find_status, severity

HARD, SOFT, NONE = Severity.HARD, Severity.SOFT, Severity.NONE


@pytest.mark.parametrize("status,text,expected", [
    ("5.1.1", "550 5.1.1 User unknown", HARD),          # RFC 3463 3.2 bad destination mailbox
    ("5.1.2", "", HARD),                                # bad destination system
    ("5.1.10", "RecipientNotFound", HARD),
    ("5.0.0", "", HARD),
    ("5.2.1", "mailbox disabled", HARD),                # RFC 3463 3.3
    ("5.2.2", "552 5.2.2 Mailbox full", SOFT),          # decided: soft (see status.py)
    ("5.2.3", "message length exceeds limit", SOFT),
    ("5.4.4", "unable to route", HARD),                 # RFC 3463 3.5
    ("5.4.7", "delivery time expired", SOFT),
    ("5.7.1", "554 5.7.1 Message rejected as spam", SOFT),
    ("5.7.1", "550 5.7.1 Recipient address rejected: user unknown", HARD),
    ("5.5.0", "", SOFT),
    ("5.5.0", "550 5.5.0 Requested action not taken: mailbox unavailable", HARD),
    ("5.4.1", "550 5.4.1 Recipient address rejected: Access denied", HARD),
    ("5.4.1", "550 5.4.1 no answer from host", SOFT),
    (None, "554 delivery error: dd This user doesn't have a example.com account", HARD),
    ("5.1.1", "Mailbox quota exceeded", SOFT),          # text says full: soft wins
    ("4.2.2", "mailbox full", SOFT),
    ("4.4.1", "no answer from host", SOFT),
    ("2.0.0", "250 OK", NONE),
    (None, "550 Requested action not taken: mailbox unavailable", HARD),
    (None, "553 sorry, that domain isn't in my list of allowed rcpthosts", HARD),
    (None, "554 rejected by policy", SOFT),
    (None, "421 try again later", SOFT),
    (None, "no such user here", HARD),
    (None, "", SOFT),
    (None, "550-5.1.1 The email account that you tried to reach does not exist", HARD),
])
def test_severity(status: str | None, text: str, expected: Severity) -> None:
    assert severity(status, text) is expected


def test_find_status_ignores_ip_addresses_and_versions() -> None:
    assert find_status("host 192.0.2.1 said 550 5.1.1 no") == "5.1.1"
    assert find_status("connect to 4.3.2.1 failed") is None
    assert find_status("Exim 4.96.2") is None
    assert find_status("#5.1.10 smtp") == "5.1.10"


def test_find_smtp_code() -> None:
    assert find_smtp_code("host said: 552-too big") == "552"
    assert find_smtp_code("version 2.500") is None
