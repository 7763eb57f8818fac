"""The session's timeouts (mailyard.smtpd.deadlines), with ``now`` given: no waiting."""

from __future__ import annotations

from mailyard.proto.smtp.replies import REPLY_SESSION_TOO_LONG, REPLY_TIMEOUT, REPLY_TOO_SLOW
from mailyard.smtpd.context import SessionTimers
from mailyard.smtpd.deadlines import RATE_CHECK_INTERVAL, Deadlines, Verdict

TIMERS = SessionTimers(command=30, data=60, min_rate=100, rate_grace=10, tls_handshake=5,
                       max_session=1000)


def test_idle_command_timeout_and_activity_moves_it() -> None:
    d = Deadlines(TIMERS, now=0)
    assert d.first_check() == 30
    assert d.check(29.9, False).reply is None
    d.activity(20, 10)
    verdict = d.check(30, False)
    assert verdict.reply is None and verdict.next_check == 50
    assert d.check(50, False).reply == REPLY_TIMEOUT


def test_a_trickled_command_line_gets_command_timeout_from_its_first_octet() -> None:
    d = Deadlines(TIMERS, now=0)
    d.line(True, 5)
    d.activity(20, 1)
    d.line(True, 20)  # still the same line: its start is kept
    assert d.check(34, False).next_check == 35
    assert d.check(35, False).reply == REPLY_TIMEOUT
    d.line(False, 35)
    assert d.check(35, False).reply is None


def test_waiting_for_our_own_answer_never_counts() -> None:
    d = Deadlines(TIMERS, now=0)
    verdict = d.check(500, True)
    assert verdict.reply is None and verdict.next_check == 530


def test_session_age_limit_applies_between_commands() -> None:
    d = Deadlines(TIMERS, now=0)
    d.activity(990, 10)
    assert d.check(995, False).next_check == 1000
    assert d.check(1000, False).reply == REPLY_SESSION_TOO_LONG


def test_content_rate_after_the_grace_period() -> None:
    d = Deadlines(TIMERS, now=0)
    assert d.content(True, 100) == 110  # first look: after the grace period
    d.activity(105, 500)
    assert d.check(109, False).reply is None  # within the grace: no rate check
    verdict = d.check(110, False)  # 500 octets in 10 s: 50/s < 100/s
    assert verdict.reply == REPLY_TOO_SLOW
    d.activity(110, 2000)
    verdict = d.check(110, False)
    assert verdict.reply is None and verdict.next_check == 110 + RATE_CHECK_INTERVAL
    assert d.content(False, 120) == 150  # back to commands


def test_content_silence_uses_the_data_timeout() -> None:
    timers = SessionTimers(command=30, data=60, min_rate=0, rate_grace=10, tls_handshake=5,
                           max_session=1000)
    d = Deadlines(timers, now=0)
    assert d.content(True, 0) == 60
    assert d.check(59, False).reply is None
    assert d.check(60, False).reply == REPLY_TIMEOUT


def test_an_early_first_check_comes_no_later_than_a_content_check() -> None:
    d = Deadlines(TIMERS, now=0)
    assert d.first_check(early=True) == 10  # rate_grace: content may start at once
    assert d.content(True, 4) == 14  # later than the timer armed at 10: no re-arm needed
    # Looking early changes nothing: no verdict, and the next check is the rate check.
    assert d.check(10, False) == Verdict(None, 11)
    no_rate = Deadlines(SessionTimers(command=30, data=60, min_rate=0, rate_grace=10,
                                      tls_handshake=5, max_session=20), now=0)
    assert no_rate.first_check(early=True) == 20  # the session's end comes first
    assert no_rate.first_check() == 20
