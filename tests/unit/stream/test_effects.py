"""finish_batch: a stopping worker finishes the batch in flight, or exits without acking it."""
from __future__ import annotations

import asyncio

import pytest

from services.stream import effects
from services.stream.effects import EXIT_STOPPED_MID_BATCH, EXIT_UNEXPECTED, finish_batch


class Exited(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


@pytest.fixture(autouse=True)
def no_real_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_exit(code: int) -> None:
        raise Exited(code)

    monkeypatch.setattr(effects.os, "_exit", fake_exit)


async def test_a_batch_without_a_stop_returns_its_result() -> None:
    async def work() -> int:
        await asyncio.sleep(0.01)
        return 7

    assert await finish_batch("t", work(), grace_s=1) == 7


async def test_a_stop_waits_for_the_batch_then_cancels() -> None:
    done: list[str] = []

    async def work() -> None:
        await asyncio.sleep(0.1)
        done.append("durable")

    task = asyncio.create_task(finish_batch("t", work(), grace_s=5))
    await asyncio.sleep(0.02)
    task.cancel()  # the worker is stopping
    await asyncio.sleep(0)
    task.cancel()  # and cancels again: still waits
    with pytest.raises(asyncio.CancelledError):
        await task
    assert done == ["durable"]  # the cancel came out only after the effect


async def test_a_batch_that_cannot_finish_in_the_grace_exits_without_acking() -> None:
    async def stuck() -> None:
        await asyncio.sleep(60)

    task = asyncio.create_task(finish_batch("t", stuck(), grace_s=0.05))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(Exited) as info:
        await task
    assert info.value.code == EXIT_STOPPED_MID_BATCH
    for t in asyncio.all_tasks():  # the process would be gone; here the stuck work remains
        if t.get_coro().__qualname__.endswith("stuck"):
            t.cancel()


async def test_an_unexpected_error_never_leaves_the_loop_as_an_exception() -> None:
    async def broken() -> None:
        raise KeyError("bug")

    with pytest.raises(Exited) as info:
        await finish_batch("t", broken(), grace_s=1)
    assert info.value.code == EXIT_UNEXPECTED


async def test_an_outage_logs_a_start_reminders_and_an_end_not_every_retry(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    from services.core.errors import BackendUnavailable
    from services.stream.effects import until_durable

    now = [0.0]
    calls = [0]

    async def no_sleep(s: float) -> None:
        now[0] += s

    monkeypatch.setattr(effects.asyncio, "sleep", no_sleep)

    async def effect() -> str:
        calls[0] += 1
        if calls[0] <= 60:
            raise BackendUnavailable("connection refused", "redis")
        return "ok"

    with caplog.at_level("INFO", logger="services.stream.effects"):
        assert await until_durable("trends record", effect, clock=lambda: now[0]) == "ok"
    lines = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert 3 <= len(lines) <= 3 + int(now[0] // effects.OUTAGE_REMINDER_S)
    assert "retrying" in lines[0] and "still failing" in lines[1]
    assert "succeeded again" in lines[-1] and "61 attempts" in lines[-1]
