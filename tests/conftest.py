"""Shared fixtures. Integration fixtures talk to the real services that `ops/stack up` started;
there are no mocks of Kafka, Redis or Elasticsearch anywhere in this suite."""
from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def unique() -> str:
    """A short random suffix that keeps one test's topics, indices and keys apart from others'."""
    return uuid.uuid4().hex[:10]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything under tests/integration is an integration test, whatever its module says."""
    for item in items:
        if "/tests/integration/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.integration)


# The session's own Kafka clients open a broker connection (with its reader task) the first time a
# test makes them talk to that broker; such a task is theirs, not a leak of the test.
_SESSION_CLIENT_TASKS = {"AIOKafkaConnection._read"}


def _qualname(task: asyncio.Task) -> str:
    return getattr(task.get_coro(), "__qualname__", repr(task))


@pytest_asyncio.fixture(autouse=True)
async def no_leaked_tasks(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Fail a test that leaves asyncio tasks running on the shared session loop.

    Why: a leaked Kafka consumer or sender loop keeps running under every later test, and one
    that does not die on cancel hangs the loop's close at the end of the session (a CI run
    that never finishes). Leftovers are cancelled here, so the next test starts clean."""
    before = asyncio.all_tasks()
    yield
    me = asyncio.current_task()

    def new() -> list[asyncio.Task]:
        return [t for t in asyncio.all_tasks() if t not in before and t is not me
                and not t.done() and _qualname(t) not in _SESSION_CLIENT_TASKS]

    for _ in range(100):  # clients close their connections a moment after stop()
        if not new():
            return
        await asyncio.sleep(0.05)
    leaked = new()
    names = sorted({_qualname(t) for t in leaked})
    for t in leaked:
        t.cancel()
    _, alive = await asyncio.wait(leaked, timeout=10)
    note = f"; {len(alive)} ignored cancel()" if alive else ""
    pytest.fail(f"{request.node.nodeid} left {len(leaked)} asyncio tasks running: {names}{note}")
