"""Elasticsearch unavailable for 30 s mid-stream: the pipeline waits and catches up, nothing lost.

The worker reaches Elasticsearch through a TCP proxy owned by this test; switching the proxy
off (listener and open connections) makes ES vanish for the worker only -- the shared ES that
other tests use is never touched.
"""
from __future__ import annotations

import asyncio
import time
from urllib.parse import urlparse

import pytest

from services.feed.replay import replay
from tests.integration.pipeline_fixtures import (  # noqa: F401 - fixtures
    Pipeline,
    centroid_model_fixture,
    expected_minutes,
    pipeline_fixture,
    scenario,
)
from tests.integration.pipeline_support import TcpProxy, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

OUTAGE_S = 30


async def test_es_outage_pipeline_waits_and_catches_up(pipeline: Pipeline, unique):
    p = pipeline
    target = urlparse(p.settings.es_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 9200)
    port = await proxy.start()
    sc = scenario(unique, items=400)
    n_docs = len(sc.expected_ids)
    half = len(sc.items) // 2
    worker = p.worker("all", es_url=f"http://127.0.0.1:{port}")
    try:
        assert await replay(sc.items[:half], p.settings, speed=0) == half

        async def first_half_in() -> bool:
            return await p.es_count() >= n_docs // 3

        await wait_for("documents before the outage", first_half_in, 240, [worker], 0.5)
        await proxy.stop()
        t_down = time.monotonic()
        before = await p.es_count()
        assert before < n_docs
        assert await replay(sc.items[half:], p.settings, speed=0) == len(sc.items) - half

        # during the outage: other stages go on (trends complete), ES does not move
        async def trends_complete() -> bool:
            return sum((await p.trend_minutes(sc.start, sc.end)).values()) >= n_docs

        await wait_for("trend counts during the outage", trends_complete, OUTAGE_S, [worker])
        await asyncio.sleep(max(0.0, t_down + OUTAGE_S - time.monotonic()))
        assert worker.alive()
        assert await p.es_count() == before
        await proxy.start()  # same port: Elasticsearch is back

        async def caught_up() -> bool:
            return await p.es_count() >= n_docs

        await wait_for("the index to catch up", caught_up, 180, [worker], 1.0)
        print(f"outage {time.monotonic() - t_down:.0f}s incl. catch-up; {before} documents "
              f"indexed before, {n_docs} after")
        await asyncio.sleep(2)
        docs = await p.es_docs()
        assert set(docs) == sc.expected_ids
        assert await p.trend_minutes(sc.start, sc.end) == expected_minutes(sc)
        distinct, _ = await p.dead_letters()
        assert {d.reason for d in distinct.values()} <= set(sc.expected_dlq)  # no index failures
        assert sum(1 for d in distinct.values() if d.stage != "ingest") == 0
    finally:
        await proxy.stop()
