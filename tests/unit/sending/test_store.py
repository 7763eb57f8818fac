"""The SQLite store of the sending counters: shared by processes, kept across
restarts, private file mode; and the limiter over it on a fake clock."""

from __future__ import annotations

import multiprocessing
import os
import stat
from pathlib import Path

from mailyard.config import SendingConfig
from mailyard.sending.limiter import SendLimiter, user_subject
from mailyard.sending.store import LimitOverrides, SqliteSendCounters

T0 = 1_700_000_040.0


def _count(path: str, n: int) -> None:
    store = SqliteSendCounters(path)
    for _ in range(n):
        store.add(["user:a@example.test", "domain:example.test"], int(T0 // 60), 1, 2)
    store.close()


def test_counts_from_several_processes_add_up(tmp_path: Path) -> None:
    path = str(tmp_path / "sending.db")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_count, args=(path, 50)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    store = SqliteSendCounters(path)
    got = store.buckets(["user:a@example.test", "domain:example.test"], 0)
    assert [(b.messages, b.recipients) for b in got["user:a@example.test"]] == [(150, 300)]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert store._conn().execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_limiter_refuses_over_limit_and_survives_reopening(tmp_path: Path) -> None:
    now = [T0]
    config = SendingConfig(user_messages_per_hour=2, domain_recipients_per_day=100)
    limiter = SendLimiter(SqliteSendCounters(tmp_path / "s.db"), config, lambda: now[0])
    assert limiter.check("Alice@Example.test", 1) is None
    limiter.record("alice@example.test", 1)
    limiter.record("alice@example.test", 1)
    limiter.close()
    now[0] += 60
    again = SendLimiter(SqliteSendCounters(tmp_path / "s.db"), config, lambda: now[0])
    refusal = again.check("alice@example.test", 1)
    assert refusal is not None and refusal.subject == "user:alice@example.test"
    assert refusal.retry_after == 59 * 60
    assert refusal.reply.code == 451 and refusal.reply.status == "4.7.0"
    assert "2 messages per hour for user alice@example.test" in refusal.text
    assert again.check("bob@example.test", 1) is None  # another user
    # The domain's daily recipients: 2 counted, 99 more do not fit.
    refusal = again.check("bob@example.test", 99)
    assert refusal is not None and refusal.subject == "domain:example.test"


def test_overrides_replace_defaults_per_limit(tmp_path: Path) -> None:
    store = SqliteSendCounters(tmp_path / "s.db")
    limiter = SendLimiter(store, SendingConfig(user_messages_per_hour=5,
                                               user_messages_per_day=50))
    store.set_overrides(user_subject("a@x.test"), LimitOverrides(messages_per_hour=0))
    limits, own = limiter.user_limits("a@x.test")
    assert (limits.messages_per_hour, limits.messages_per_day) == (0, 50)
    assert own.messages_per_hour == 0 and own.messages_per_day is None
    store.set_overrides(user_subject("a@x.test"), LimitOverrides())
    assert limiter.user_limits("a@x.test")[0].messages_per_hour == 5


def test_allowance_answers_each_rcpt_without_io(tmp_path: Path) -> None:
    """Read once at MAIL; RCPT n is refused when the recipients already taken in the
    transaction plus this one would go over (the 4th of 3, not a 'permanent' refusal)."""
    store = SqliteSendCounters(tmp_path / "s.db")
    limiter = SendLimiter(store, SendingConfig(user_recipients_per_hour=3), lambda: T0)
    limiter.record("a@x.test", 1)
    allowance = limiter.allowance("a@x.test")
    store.close()
    (tmp_path / "s.db").unlink()  # nothing more is read
    assert allowance.message_refusal() is None
    assert allowance.recipient_refusal(0) is None
    assert allowance.recipient_refusal(1) is None
    refusal = allowance.recipient_refusal(2)
    assert refusal is not None and not refusal.exceeded.permanent
    assert refusal.retry_after == 3600
    assert refusal.text == ("Sending limit reached (3 recipients per hour for user "
                            "a@x.test), try again in 60 minutes")
