"""Private metric and log files, metric files of processes that are gone, and
tracebacks of failed tasks in the log."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from mailyard import obs
from mailyard.delivery.dispatcher import Dispatcher
from mailyard.metrics import DELIVERY_ACTIVE, WORKER_RESTARTS
from mailyard.obs import Metrics, collect, log_event, setup_logging


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger("mailyard")
    saved = root.handlers[:], root.level, root.propagate
    yield
    for handler in root.handlers:
        handler.close()
    root.handlers[:], root.level, root.propagate = saved


@pytest.fixture
def loose_umask() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_metric_dumps_are_private(tmp_path: Path, loose_umask: None):
    m = Metrics()
    m.inc(WORKER_RESTARTS)
    m.dump(tmp_path)
    assert mode(tmp_path / f"{os.getpid()}.json") == 0o600


@pytest.mark.parametrize("buffered", [False, True])
def test_log_file_not_readable_by_others(tmp_path: Path, loose_umask: None,
                                         restore_logging: None, buffered: bool):
    log = tmp_path / "mailyard.log"
    setup_logging(file=str(log), buffered=buffered)
    assert mode(log) == 0o640
    log.chmod(0o644)  # made by an older version: repaired at the next start
    setup_logging(file=str(log), buffered=buffered)
    assert mode(log) == 0o640


def _snap(**values: tuple[str, float]) -> str:
    return json.dumps({"kinds": {n: k for n, (k, _) in values.items()},
                       "values": [[n, [], v] for n, (_, v) in values.items()]})


def test_retired_process_keeps_its_counters_not_its_gauges(tmp_path: Path):
    (tmp_path / "4242.json").write_text(_snap(worker_restarts_total=("counter", 5),
                                              delivery_active=("gauge", 100)))
    supervisor = Metrics()
    supervisor.inc(WORKER_RESTARTS, 2)
    obs.retire_metrics_file(tmp_path / "4242.json", supervisor)
    assert not (tmp_path / "4242.json").exists()
    assert supervisor.get(WORKER_RESTARTS) == 7
    assert supervisor.get(DELIVERY_ACTIVE) == 0
    obs.retire_metrics_file(tmp_path / "4242.json", supervisor)  # already gone: no error


def test_files_of_an_earlier_run_are_removed(tmp_path: Path):
    (tmp_path / "1.json").write_text(_snap(delivery_active=("gauge", 100)))
    (tmp_path / ".1.tmp").write_text("")
    obs.remove_metrics_files(tmp_path)
    assert list(tmp_path.iterdir()) == []
    assert "delivery_active" not in collect(tmp_path)


def _crash() -> None:
    raise RuntimeError("delivery bug")


def test_failed_delivery_task_logs_its_traceback(tmp_path: Path, restore_logging: None):
    log = tmp_path / "mailyard.log"
    setup_logging(file=str(log))
    released = []

    async def release_lease(qid: str) -> None:
        released.append(qid)

    stub = SimpleNamespace(active={}, _wake=asyncio.Event(), sweeping=set(),
                           queue=SimpleNamespace(release_lease=release_lease))
    stub._release = lambda qid: Dispatcher._release(stub, qid)  # type: ignore[arg-type]
    stub._spawn = lambda job: Dispatcher._spawn(stub, job)  # type: ignore[arg-type]

    async def failing() -> None:
        _crash()

    async def run() -> None:
        task = asyncio.ensure_future(failing())
        await asyncio.wait([task])
        Dispatcher._done(stub, "Q1", task)  # type: ignore[arg-type]
        await asyncio.gather(*stub.sweeping)

    asyncio.run(run())
    logging.getLogger("mailyard").handlers[0].flush()
    lines = log.read_text().splitlines()
    assert len(lines) == 1  # the traceback stays within the event's line
    assert "delivery task failed" in lines[0] and "qid=Q1" in lines[0]
    assert "Traceback (most recent call last)" in lines[0] and "in _crash" in lines[0]
    assert released == ["Q1"]


def test_traceback_field_in_json(tmp_path: Path, restore_logging: None):
    log = tmp_path / "mailyard.log"
    setup_logging(fmt="json", file=str(log))
    try:
        _crash()
    except RuntimeError as exc:
        log_event(logging.getLogger("mailyard.test"), "failed", logging.ERROR, exc_info=exc)
    logging.getLogger("mailyard").handlers[0].flush()
    event = json.loads(log.read_text())
    assert event["traceback"].startswith("Traceback (most recent call last)")
    assert event["traceback"].endswith("RuntimeError: delivery bug")
