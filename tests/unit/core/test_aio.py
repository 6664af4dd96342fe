"""The cancel-safe waits: a cancelled polling loop must stop, a cleanup must run to its end."""
from __future__ import annotations

import asyncio

import pytest

from services.core.aio import finish_despite_cancel, wait_event


async def test_wait_event_reports_set_or_timeout() -> None:
    ev = asyncio.Event()
    assert await wait_event(ev, 0.01) is False
    asyncio.get_running_loop().call_later(0.01, ev.set)
    assert await wait_event(ev, 5) is True
    assert await wait_event(ev, 0) is True  # already set: no wait at all


@pytest.mark.parametrize("fire", ["event", "timeout"])
async def test_a_polling_loop_stops_when_cancelled_as_its_wait_ends(fire: str) -> None:
    """The cancel lands in the same loop iteration as the event firing (or the timeout
    expiring) -- the case Python 3.11's wait_for can swallow."""
    rounds = 0
    ev = asyncio.Event()

    async def poll() -> None:
        nonlocal rounds
        while True:
            rounds += 1
            ev.clear()
            await wait_event(ev, 0.02)

    for _ in range(30):
        task = asyncio.create_task(poll())
        await asyncio.sleep(0.005)
        if fire == "event":
            ev.set()
        else:
            await asyncio.sleep(0.015)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 2)  # a lost cancel would make this a TimeoutError
    assert rounds >= 30


async def test_cleanup_survives_a_second_cancel() -> None:
    closed: list[str] = []

    async def close() -> str:
        await asyncio.sleep(0.05)
        closed.append("closed")
        return "ok"

    async def worker() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            await finish_despite_cancel(close())

    task = asyncio.create_task(worker())
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.sleep(0)  # the cleanup has started ...
    task.cancel()  # ... and a supervisor cancels again
    with pytest.raises(asyncio.CancelledError):
        await task
    assert closed == ["closed"]


async def test_cleanup_result_and_errors_pass_through() -> None:
    async def fine() -> int:
        return 7

    async def broken() -> None:
        raise OSError("disk gone")

    assert await finish_despite_cancel(fine()) == 7
    with pytest.raises(OSError, match="disk gone"):
        await finish_despite_cancel(broken())


async def test_a_cancel_landing_as_the_cleanup_ends_is_not_lost() -> None:
    cleanup: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def worker() -> str:
        return await finish_despite_cancel(cleanup)

    task = asyncio.create_task(worker())
    await asyncio.sleep(0)  # waiting on the cleanup
    cleanup.set_result("closed")
    task.cancel()  # in the same step as the cleanup finishing
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_cleanup_failing_after_a_cancel_still_cancels() -> None:
    async def close() -> None:
        await asyncio.sleep(0.02)
        raise OSError("broker gone")

    task = asyncio.create_task(finish_despite_cancel(close()))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError) as info:
        await task
    assert isinstance(info.value.__cause__, OSError)
