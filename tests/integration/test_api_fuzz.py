"""Property-based fuzzing of the OpenAPI document with schemathesis: no request, however odd,
gets a 5xx. The app runs in uvicorn on a free port against the real backends, with an admin key
so every operation is reachable; examples per operation are few to keep the run under a minute.
"""
from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase, given, settings
from redis import Redis as SyncRedis
from schemathesis.checks import not_a_server_error

from services.api.app import create_app
from services.api.auth import KeyStore
from services.core.config import Settings

pytestmark = pytest.mark.integration

MAX_EXAMPLES = 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _admin_key(s: Settings) -> str:
    from redis.asyncio import Redis

    redis = Redis.from_url(s.redis_url)
    try:
        return (await KeyStore(redis, s.redis_prefix).create("fuzz", ["admin"])).key
    finally:
        await redis.aclose()


async def _drop_topic(s: Settings) -> None:
    """The labels topic the fuzzed feedback calls auto-created (if any)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=s.kafka_bootstrap)
    await admin.start()
    try:
        if s.topic_labels in await admin.list_topics():
            await admin.delete_topics([s.topic_labels])
    finally:
        await admin.close()


@pytest.fixture(scope="module")
def fuzz_server():
    tag = uuid.uuid4().hex[:10]
    base = Settings()
    s = base.model_copy(update={"namespace": f"test-fuzz{tag}"})
    app = create_app(s)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    key = asyncio.run(_admin_key(s))
    yield f"http://127.0.0.1:{port}", key, app
    server.should_exit = True
    thread.join(10)
    asyncio.run(_drop_topic(s))
    r = SyncRedis.from_url(s.redis_url)
    keys = list(r.scan_iter(match=f"{s.redis_prefix}:*", count=1000))
    if keys:
        r.delete(*keys)
    r.close()


def test_no_server_errors(fuzz_server):
    """Every operation, a few generated cases each (schemathesis' pytest plugin does not run
    under pytest 9, so the operations are driven here with their hypothesis strategies)."""
    base_url, key, app = fuzz_server
    schema = schemathesis.openapi.from_dict(app.openapi())
    failures: list[str] = []
    operations, cases, statuses = 0, 0, set()
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.generate])
        def run(case):
            nonlocal cases
            cases += 1
            response = case.call_and_validate(base_url=base_url, headers={"X-API-Key": key},
                                              checks=[not_a_server_error], timeout=30)
            statuses.add(response.status_code)

        operations += 1
        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # report every failing operation
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert not failures, "\n\n".join(failures)
    assert operations == sum(len(ops) for ops in app.openapi()["paths"].values())
    assert cases >= operations
    assert {200, 422} <= statuses  # both accepted and refused requests were generated
