"""Open-file limits: raising RLIMIT_NOFILE, fitting smtpd.max_connections into it, and
the rate-limited report of accept failures for want of descriptors."""

from __future__ import annotations

import errno
import logging
import resource
from typing import Any

import pytest

from mailyard.config import Config, DeliveryConfig, SmtpdConfig, TransportRoute
from mailyard.daemon import fdlimit, worker
from mailyard.daemon.fdlimit import (
    RESERVED_DESCRIPTORS,
    AcceptErrorReporter,
    connection_budget,
    plan_worker,
    raise_nofile_limit,
)


def config(max_connections: int = 2000, end_to_end: bool = False) -> Config:
    transports = (TransportRoute(domain="x.test", mode="end-to-end"),) if end_to_end else ()
    return Config(hostname="mx.test", smtpd=SmtpdConfig(max_connections=max_connections),
                  delivery=DeliveryConfig(transports=transports))


def test_budget_fits_two_descriptors_per_connection() -> None:
    assert connection_budget(2000, 1024, 2) == (1024 - RESERVED_DESCRIPTORS) // 2
    assert connection_budget(100, 1024, 2) == 100
    assert connection_budget(2000, 10, 2) == 1  # never zero


def test_plan_worker_counts_the_next_hop_of_end_to_end_routes() -> None:
    plain = plan_worker(config(), 1024)
    relaying = plan_worker(config(end_to_end=True), 1024)
    assert plain.clamped and plain.max_connections == 480
    assert relaying.max_connections == (1024 - RESERVED_DESCRIPTORS) // 3
    assert not plan_worker(config(), 1 << 20).clamped


class FakeLimits:
    def __init__(self, soft: int, hard: int) -> None:
        self.limits = (soft, hard)
        self.calls: list[tuple[int, int]] = []

    def getrlimit(self, which: int) -> tuple[int, int]:
        return self.limits

    def setrlimit(self, which: int, limits: tuple[int, int]) -> None:
        self.calls.append(limits)
        self.limits = limits


def test_soft_limit_raised_to_hard(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeLimits(1024, 65536)
    monkeypatch.setattr(fdlimit.resource, "getrlimit", fake.getrlimit)
    monkeypatch.setattr(fdlimit.resource, "setrlimit", fake.setrlimit)
    assert raise_nofile_limit() == 65536
    assert fake.calls == [(65536, 65536)]


def test_unlimited_hard_limit_gets_a_finite_soft_one(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeLimits(1024, resource.RLIM_INFINITY)
    monkeypatch.setattr(fdlimit.resource, "getrlimit", fake.getrlimit)
    monkeypatch.setattr(fdlimit.resource, "setrlimit", fake.setrlimit)
    assert raise_nofile_limit() == fdlimit.UNLIMITED_TARGET
    assert fake.calls == [(fdlimit.UNLIMITED_TARGET, resource.RLIM_INFINITY)]


def test_refused_raise_keeps_the_soft_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeLimits(256, 4096)

    def refuse(which: int, limits: tuple[int, int]) -> None:
        raise ValueError("not allowed")
    monkeypatch.setattr(fdlimit.resource, "getrlimit", fake.getrlimit)
    monkeypatch.setattr(fdlimit.resource, "setrlimit", refuse)
    assert raise_nofile_limit() == 256


def test_worker_lowers_max_connections_and_names_the_key(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mailyard.limits")
    monkeypatch.setattr(worker, "raise_nofile_limit", lambda: 256)
    fitted, nofile = worker.fit_open_file_limit(config(2000))
    assert nofile == 256
    assert fitted.smtpd.max_connections == (256 - RESERVED_DESCRIPTORS) // 2
    [record] = caplog.records
    fields: dict[str, Any] = record.fields  # type: ignore[attr-defined]
    assert "smtpd.max_connections" in record.getMessage()
    assert fields["configured"] == 2000 and fields["effective"] == 96


def test_worker_keeps_a_cap_that_fits(monkeypatch: pytest.MonkeyPatch,
                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mailyard.limits")
    monkeypatch.setattr(worker, "raise_nofile_limit", lambda: 65536)
    cfg = config(2000)
    assert worker.fit_open_file_limit(cfg) == (cfg, 65536)
    assert caplog.records == []


class FakeLoop:
    def __init__(self) -> None:
        self.default: list[dict[str, Any]] = []

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        self.default.append(context)


def test_accept_errors_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="mailyard.limits")
    now = [100.0]
    reporter = AcceptErrorReporter(interval=60, clock=lambda: now[0])
    loop = FakeLoop()
    emfile = {"message": "socket.accept() out of system resource",
              "exception": OSError(errno.EMFILE, "Too many open files")}
    for _ in range(5):
        reporter(loop, emfile)
    now[0] += 61
    reporter(loop, {"exception": OSError(errno.ENFILE, "File table overflow")})
    lines = [r for r in caplog.records if r.name == "mailyard.limits"]
    assert len(lines) == 2
    assert lines[0].fields["error"] == "EMFILE"  # type: ignore[attr-defined]
    assert lines[1].fields == {**lines[1].fields, "error": "ENFILE", "suppressed": 4}  # type: ignore[attr-defined]
    assert loop.default == []


def test_other_loop_errors_go_to_the_default_handler() -> None:
    reporter = AcceptErrorReporter()
    loop = FakeLoop()
    context = {"exception": OSError(errno.ECONNRESET, "reset")}
    reporter(loop, context)
    assert loop.default == [context]
