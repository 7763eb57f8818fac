"""SPF at MAIL FROM: the result-to-reply table of ``[spf]`` (RFC 7208 8, RFC 7372
codes) and the clients it skips.  The session side is in test_smtpd_session_seams."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from mailyard.config import SpfAction, SpfConfig
from mailyard.dns import StaticResolver
from mailyard.proto.smtp.replies import (
    REPLY_SPF_FAIL,
    REPLY_SPF_FAIL_TEMP,
    REPLY_SPF_PERMERROR,
    REPLY_SPF_TEMPERROR,
)
from mailyard.smtpd.spf import SpfCheck, refusal_for
from mailyard.spf import Identity, SpfResult, SpfStatus


def result(status: SpfStatus, explanation: str = "") -> SpfResult:
    return SpfResult(status, Identity.MAILFROM, "192.0.2.7", "a@x.test", "x.test",
                     explanation=explanation)


@pytest.mark.parametrize(("status", "expected"), [
    (SpfStatus.PASS, None), (SpfStatus.NEUTRAL, None), (SpfStatus.NONE, None),
    (SpfStatus.FAIL, REPLY_SPF_FAIL), (SpfStatus.SOFTFAIL, None),
    (SpfStatus.PERMERROR, None), (SpfStatus.TEMPERROR, None),
])
def test_defaults(status: SpfStatus, expected: Any) -> None:
    """The issue's defaults: fail -> 550 5.7.23, everything else recorded only."""
    refusal = refusal_for(result(status), SpfConfig())
    assert (refusal.code, refusal.status) == (expected.code, expected.status) if expected \
        else refusal is None


def test_configured_actions() -> None:
    strict = SpfConfig(fail=SpfAction.DEFER, softfail=SpfAction.DEFER,
                       permerror=SpfAction.REJECT, temperror=SpfAction.DEFER)
    codes = {s: refusal_for(result(s), strict) for s in SpfStatus}
    assert codes[SpfStatus.FAIL].status == REPLY_SPF_FAIL_TEMP.status == "4.7.23"
    assert codes[SpfStatus.SOFTFAIL].status == "4.7.23"
    assert codes[SpfStatus.PERMERROR].status == REPLY_SPF_PERMERROR.status == "5.7.24"
    assert codes[SpfStatus.TEMPERROR].status == REPLY_SPF_TEMPERROR.status == "4.7.24"
    assert codes[SpfStatus.PASS] is None
    # temperror is never a permanent refusal
    assert refusal_for(result(SpfStatus.TEMPERROR),
                       replace(strict, temperror=SpfAction.REJECT)).code == 451


def test_fail_reply_carries_the_explanation_cleaned() -> None:
    """RFC 7208 8.4: the domain's explanation in the reply, printable and short."""
    refusal = refusal_for(result(SpfStatus.FAIL, "See https://x.test/why\x07 " + "y" * 500),
                          SpfConfig())
    assert refusal is not None and refusal.text.startswith(
        "SPF validation failed: See https://x.test/why? y")
    assert len(refusal.text) < 260 and refusal.text.isascii()


def test_skip_addresses() -> None:
    check = SpfCheck(SpfConfig(), StaticResolver(), "mx.test")
    assert not check.applies("127.0.0.1") and not check.applies("::1")
    assert not check.applies("::ffff:127.0.0.9") and not check.applies("")
    assert check.applies("192.0.2.7") and check.applies("2001:db8::1")


def test_known_verdict_without_a_task_once_both_identities_are_remembered() -> None:
    zones = {"x.test": {"TXT": ["v=spf1 ip4:192.0.2.0/24 -all"]},
             "mail.x.test": {"TXT": ["v=spf1 -all"]}}
    check = SpfCheck(SpfConfig(), StaticResolver(zones), "mx.test")
    args = ("198.51.100.7", "mail.x.test", "a@x.test")
    assert check.known(*args) is None
    verdict = asyncio.run(check.check(*args))
    assert verdict.refusal is not None and verdict.refusal.status == REPLY_SPF_FAIL.status
    assert check.known(*args) == verdict
    # HELO fail counts only when MAIL FROM did not pass: the same rule both ways.
    passing = ("192.0.2.7", "mail.x.test", "a@x.test")
    verdict = asyncio.run(check.check(*passing))
    assert verdict.refusal is None and check.known(*passing) == verdict
    no_helo = SpfCheck(replace(SpfConfig(), check_helo=False), StaticResolver(zones), "mx.test")
    asyncio.run(no_helo.check(*args))
    known = no_helo.known(*args)
    assert known is not None and known.helo_result is None and known.refusal is not None
