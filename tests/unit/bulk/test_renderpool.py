"""The render processes' executor (``_PipeExecutor``): calls answered in order, a
next call already in the pipe while one runs, calls larger than the pipe, errors, and
a process that dies with two calls in flight."""

from __future__ import annotations

import array
import fcntl
import os
import pathlib
import termios
from concurrent.futures.process import BrokenProcessPool

import pytest

from mailyard.bulk.campaigns.renderpool import DEPTH, RenderPool, _PipeExecutor
from tests.support.waiting import wait_for


@pytest.fixture
def executor():
    ex = _PipeExecutor(1, None)
    yield ex
    ex.shutdown(wait=False, cancel_futures=True)


def _in_pipe(fd: int) -> int:
    """Bytes written into a pipe and not yet read (FIONREAD works on either end)."""
    buf = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, buf)
    return buf[0]


def test_answers_come_back_to_their_calls_in_order(executor):
    futures = [executor.submit(len, b"x" * i) for i in range(50)]
    assert [f.result(timeout=30) for f in futures] == list(range(50))


def test_the_next_call_waits_in_the_pipe_while_one_runs(executor, tmp_path):
    """While the process is busy with one call, the next is already written to it, so
    it starts that one without waiting for the campaign worker."""
    assert DEPTH >= 2
    fifo = tmp_path / "hold"
    os.mkfifo(fifo)
    held = executor.submit(pathlib.Path(fifo).read_bytes)  # blocks until we write
    wait_for(lambda: held.running(), timeout=30)
    second = executor.submit(len, b"abc")
    stdin = executor._procs[0].stdin
    assert stdin is not None
    assert wait_for(lambda: _in_pipe(stdin.fileno()) > 0, timeout=30)
    assert not held.done() and not second.done()
    with open(fifo, "wb") as writer:
        writer.write(b"done")
    assert held.result(timeout=30) == b"done"
    assert second.result(timeout=30) == 3


def test_calls_larger_than_the_pipe_go_through_one_at_a_time(executor):
    big = b"y" * (3 << 20)  # more than a widened pipe holds
    futures = [executor.submit(len, big), executor.submit(len, big), executor.submit(len, b"z")]
    assert [f.result(timeout=60) for f in futures] == [3 << 20, 3 << 20, 1]


def test_an_error_in_a_call_is_raised_by_its_future_only(executor):
    bad = executor.submit(int, "not a number")
    good = executor.submit(len, b"ok")
    with pytest.raises(ValueError):
        bad.result(timeout=30)
    assert good.result(timeout=30) == 2


def test_a_process_that_dies_breaks_every_call_in_flight_and_after(executor):
    dying = executor.submit(os._exit, 3)
    queued = [executor.submit(len, b"x") for _ in range(4)]
    for future in (dying, *queued):
        with pytest.raises(BrokenProcessPool):
            future.result(timeout=30)
    with pytest.raises(BrokenProcessPool):
        executor.submit(len, b"x").result(timeout=30)


def test_a_pool_starts_afresh_after_reset():
    pool = RenderPool(1)
    try:
        with pytest.raises(BrokenProcessPool):
            pool.executor().submit(os._exit, 3).result(timeout=30)
        pool.reset()
        assert pool.executor().submit(len, b"abcd").result(timeout=30) == 4
    finally:
        pool.close()
