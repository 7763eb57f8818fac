"""The AUTH guard (mailyard.smtpd.authguard): failure counters shared by worker
processes through SQLite, with an injected clock, and the per-process verification
slots (454 4.7.0 when saturated, RFC 4954 6)."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mailyard.proto.smtp.replies import REPLY_AUTH_BUSY, REPLY_AUTH_FAILED, REPLY_AUTH_LOCKED_OUT
from mailyard.smtpd.authguard import AuthGate, AuthGuard, AuthLimits, guard_path, ip_key

LIMITS = AuthLimits(window=600.0, max_per_ip=4, max_per_user=3, delay=0.5, delay_max=2.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def guard(tmp_path: Path, clock: Clock) -> AuthGuard:
    g = AuthGuard(guard_path(tmp_path), LIMITS, clock=clock)
    yield g
    g.close()


def test_no_failures_no_delay(guard: AuthGuard) -> None:
    verdict = guard.check("192.0.2.1", "alice@example.test")
    assert (verdict.locked, verdict.delay, verdict.ip_failures) == ("", 0.0, 0)


def test_delay_grows_then_caps(guard: AuthGuard) -> None:
    delays = []
    for i in range(3):  # different users: the address's counter alone grows
        guard.failed("192.0.2.1", f"u{i}@example.test")
        delays.append(guard.check("192.0.2.1", "new@example.test").delay)
    assert delays == [0.5, 1.0, 2.0]
    assert LIMITS.delay_after(10) == 2.0  # capped at delay_max


def test_address_locked_out_at_threshold(guard: AuthGuard) -> None:
    for i in range(4):
        assert not guard.check("192.0.2.1", f"u{i}@example.test").locked
        guard.failed("192.0.2.1", f"u{i}@example.test")
    verdict = guard.check("192.0.2.1", "someone@example.test")
    assert verdict.locked == "ip" and verdict.ip_failures == 4
    assert not guard.check("192.0.2.2", "someone@example.test").locked  # another client


def test_user_locked_out_from_any_address_and_success_clears_it(guard: AuthGuard) -> None:
    for i in range(3):
        guard.failed(f"192.0.2.{i + 1}", "Alice@Example.test")
    assert guard.check("198.51.100.7", "alice@example.test").locked == "user"
    guard.succeeded("alice@example.test")
    verdict = guard.check("192.0.2.1", "alice@example.test")
    assert verdict.locked == "" and verdict.user_failures == 0
    assert verdict.ip_failures == 1  # the address keeps its count


def test_window_expiry(guard: AuthGuard, clock: Clock) -> None:
    for i in range(4):
        guard.failed("192.0.2.1", f"u{i}@example.test")
    assert guard.check("192.0.2.1", "x@example.test").locked == "ip"
    clock.now += 599
    assert guard.check("192.0.2.1", "x@example.test").locked == "ip"
    clock.now += 2  # the window (from the first failure) is over
    verdict = guard.check("192.0.2.1", "x@example.test")
    assert (verdict.locked, verdict.ip_failures, verdict.delay) == ("", 0, 0.0)
    guard.failed("192.0.2.1", "x@example.test")  # a new window starts at 1
    assert guard.check("192.0.2.1", "y@example.test").ip_failures == 1


def test_ipv6_counted_per_64() -> None:
    assert ip_key("2001:db8:1:2::1") == ip_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert ip_key("2001:db8:1:3::1") != ip_key("2001:db8:1:2::1")
    assert ip_key("::ffff:192.0.2.1") == "192.0.2.1"


def test_database_is_owner_only(guard: AuthGuard, tmp_path: Path) -> None:
    guard.failed("192.0.2.1", "u@example.test")
    for name in ("authguard.db", "authguard.db-wal"):
        path = tmp_path / "run" / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, name


CHILD = """
import sys
from mailyard.smtpd.authguard import AuthGuard, AuthLimits
guard = AuthGuard(sys.argv[1], AuthLimits(max_per_ip=100, max_per_user=100))
for i in range(int(sys.argv[2])):
    guard.failed("203.0.113.9", "victim@example.test")
guard.close()
"""


def test_counters_shared_between_processes(tmp_path: Path) -> None:
    """Worker processes share one count: two processes, 25 failures each, at once."""
    path = guard_path(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(path), "25"], env=env)
             for _ in range(2)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    guard = AuthGuard(path, AuthLimits(max_per_ip=100, max_per_user=100))
    verdict = guard.check("203.0.113.9", "victim@example.test")
    guard.close()
    assert (verdict.ip_failures, verdict.user_failures) == (50, 50)


# --- AuthGate ----------------------------------------------------------------------

def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_gate_saturated_answers_454_without_hashing(tmp_path: Path) -> None:
    async def scenario() -> list[object]:
        gate = AuthGate(AuthGuard(guard_path(tmp_path), LIMITS), concurrency=1, queue=1)
        release = threading.Event()
        calls: list[str] = []

        def slow_check(name: str) -> bool:
            calls.append(name)
            release.wait(10)
            return False

        first = asyncio.ensure_future(gate.verify("192.0.2.1", "a", lambda: slow_check("a"),
                                                  lambda: True))
        while not calls:
            await asyncio.sleep(0.01)
        queued = asyncio.ensure_future(gate.verify("192.0.2.2", "b", lambda: slow_check("b"),
                                                   lambda: True))
        await asyncio.sleep(0.05)  # through the counters, now waiting for the slot
        busy = await gate.verify("192.0.2.3", "c", lambda: slow_check("c"), lambda: True)
        release.set()
        results = [busy, await first, await queued, list(calls)]
        gate.close()
        return results

    busy, first, queued, calls = run(scenario())
    assert busy == REPLY_AUTH_BUSY
    assert first == queued == REPLY_AUTH_FAILED
    assert calls == ["a", "b"]  # "c" was never hashed


def test_gate_locked_out_answers_421_without_hashing(tmp_path: Path) -> None:
    async def scenario() -> list[object]:
        limits = AuthLimits(max_per_ip=2, max_per_user=0, delay=0.0)
        gate = AuthGate(AuthGuard(guard_path(tmp_path), limits), concurrency=1, queue=0)
        calls: list[int] = []

        def wrong() -> bool:
            calls.append(1)
            return False

        out = [await gate.verify("192.0.2.1", f"u{i}", wrong, lambda: True) for i in range(3)]
        out.append(await gate.verify("192.0.2.2", "u9", lambda: True, lambda: True))
        gate.close()
        return [out, len(calls)]

    out, hashed = run(scenario())
    assert out == [REPLY_AUTH_FAILED, REPLY_AUTH_FAILED, REPLY_AUTH_LOCKED_OUT, None]
    assert hashed == 2


def test_gate_rechecks_a_queued_try_before_hashing(tmp_path: Path) -> None:
    """A try that waited for the slot while the one ahead failed, reaching the
    address's limit, is refused (421) without being hashed."""
    async def scenario() -> list[object]:
        limits = AuthLimits(max_per_ip=1, max_per_user=0, delay=0.0)
        gate = AuthGate(AuthGuard(guard_path(tmp_path), limits), concurrency=1, queue=2)
        release = threading.Event()
        calls: list[str] = []

        def slow_wrong(name: str) -> bool:
            calls.append(name)
            release.wait(10)
            return False

        first = asyncio.ensure_future(gate.verify("192.0.2.1", "a", lambda: slow_wrong("a"),
                                                  lambda: True))
        while not calls:
            await asyncio.sleep(0.01)
        queued = asyncio.ensure_future(gate.verify("192.0.2.1", "b", lambda: slow_wrong("b"),
                                                   lambda: True))
        await asyncio.sleep(0.05)
        release.set()
        out = [await first, await queued, list(calls)]
        gate.close()
        return out

    assert run(scenario()) == [REPLY_AUTH_FAILED, REPLY_AUTH_LOCKED_OUT, ["a"]]


def test_gate_works_without_a_usable_database(tmp_path: Path) -> None:
    """The counters are skipped (and logged) when their database cannot be opened;
    AUTH itself keeps working."""
    path = guard_path(tmp_path)
    path.mkdir(parents=True)  # a directory where the database should be

    async def scenario() -> list[object]:
        gate = AuthGate(AuthGuard(path, LIMITS), concurrency=1, queue=0)
        out = [await gate.verify("192.0.2.1", "u", lambda: True, lambda: True),
               await gate.verify("192.0.2.1", "u", lambda: False, lambda: True)]
        gate.close()
        return out

    assert run(scenario()) == [None, REPLY_AUTH_FAILED]
