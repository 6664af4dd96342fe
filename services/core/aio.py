"""Small asyncio helpers that behave the same on every supported Python.

Why: on Python 3.11, ``asyncio.wait_for(event.wait(), t)`` can lose a cancellation that arrives
as the event fires or the timeout expires (fixed in 3.12, where ``wait_for`` is built on
``asyncio.timeout``). A polling loop written with it can then survive ``task.cancel()`` and run
forever, which hangs whatever waits for the task (a shutdown, the test runner's loop close).
``asyncio.timeout`` re-raises an outside cancellation in every case, so the waits here use it.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")


async def wait_event(event: asyncio.Event, within_s: float) -> bool:
    """Wait until ``event`` is set or ``within_s`` seconds pass; True when it is set.

    A cancellation of the calling task always propagates."""
    if event.is_set():
        return True
    try:
        async with asyncio.timeout(max(0.0, within_s)):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True


async def hold_off_cancel(task: asyncio.Future[Any], grace_s: float | None = None, *,
                          cancelled: bool = False) -> bool:
    """Wait for ``task`` to finish, absorbing cancellations of the caller (never passing them to
    ``task``); once one arrived (``cancelled``: one already has), wait at most ``grace_s`` more
    (None: to the end). Returns whether the caller was cancelled; ``task`` may still be running
    when ``grace_s`` ran out."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace_s if cancelled and grace_s is not None else None
    while not task.done():
        left = None if deadline is None else deadline - loop.time()
        if left is not None and left <= 0:
            break
        try:
            await asyncio.wait([task], timeout=left)  # never cancels it, never raises its error
        except asyncio.CancelledError:
            if not cancelled and grace_s is not None:
                deadline = loop.time() + grace_s
            cancelled = True
    return cancelled


async def finish_despite_cancel(aw: Awaitable[T]) -> T:
    """Await ``aw`` to the end even if the calling task is cancelled meanwhile, then re-raise
    that cancellation.

    Why: a cleanup such as ``consumer.stop()`` in a ``finally`` is itself cut short by a second
    ``cancel()`` (a shutdown cancelling twice, a supervisor and a timeout both cancelling), which
    leaves the client's background tasks and group membership behind. If the cleanup fails
    after a cancel, the CancelledError carries that failure as its cause."""
    task = asyncio.ensure_future(aw)
    if await hold_off_cancel(task):
        failure = None if task.cancelled() else task.exception()
        raise asyncio.CancelledError from failure
    return task.result()
