"""The checks' time budget (``mailyard.senderauth.hook.within``): the semantics of
``asyncio.timeout`` around an await, with no timer set for a coroutine that finishes
without waiting."""

from __future__ import annotations

import asyncio

import pytest

from mailyard.senderauth.hook import within


async def answered() -> str:
    return "answer"


def test_a_coroutine_that_does_not_wait_sets_no_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    async def go() -> str:
        loop = asyncio.get_running_loop()
        timers: list[float] = []
        call_at = loop.call_at
        monkeypatch.setattr(loop, "call_at", lambda when, *a, **k: (
            timers.append(when), call_at(when, *a, **k))[1])
        result = await within(5.0, answered())
        assert timers == []
        return result

    assert asyncio.run(go()) == "answer"


def test_a_coroutine_that_waits_gets_its_answers_and_errors() -> None:
    """Results, a bare yield and a failed future reach the coroutine as they would
    under ``await`` (it may catch the error)."""
    async def waits(fut: asyncio.Future[str], failing: asyncio.Future[str]) -> str:
        await asyncio.sleep(0)
        first = await fut
        try:
            await failing
        except LookupError as exc:
            return f"{first} then {exc}"
        return "not reached"

    async def go() -> str:
        loop = asyncio.get_running_loop()
        fut, failing = loop.create_future(), loop.create_future()
        loop.call_later(0.01, fut.set_result, "one")
        loop.call_later(0.02, failing.set_exception, LookupError("two"))
        return await within(5.0, waits(fut, failing))

    assert asyncio.run(go()) == "one then two"


def test_beyond_the_budget_is_a_timeout_and_the_coroutine_is_cancelled() -> None:
    seen: list[str] = []

    async def stalls() -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise
        return "not reached"

    async def go() -> None:
        with pytest.raises(TimeoutError):
            await within(0.02, stalls())

    asyncio.run(go())
    assert seen == ["cancelled"]


def test_an_exception_at_the_first_step_propagates() -> None:
    async def broken() -> str:
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        asyncio.run(within(1.0, broken()))


def test_cancelling_the_task_is_a_cancellation_not_a_timeout() -> None:
    async def stalls() -> None:
        await asyncio.Event().wait()

    async def go() -> None:
        task = asyncio.ensure_future(within(60.0, stalls()))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
