"""A worker stopped (SIGTERM) while a batch is in flight neither loses nor commits that batch.

Faust stops a worker by cancelling its agents, and its ``take_events`` acks the batch in hand
when cancelled: measured with faust-streaming 0.15, a batch cut by SIGTERM was committed
unprocessed. Here Elasticsearch vanishes (a TCP proxy owned by the test) so the index agent's
batch cannot become durable; the worker is stopped; after ``stop_grace_s`` it must exit
without committing, and a new worker must index every document once ES is back.
"""
from __future__ import annotations

from urllib.parse import urlparse

import pytest

from services.feed.replay import replay
from services.stream.effects import EXIT_STOPPED_MID_BATCH
from tests.integration.pipeline_fixtures import (  # noqa: F401 - fixtures
    Pipeline,
    centroid_model_fixture,
    expected_minutes,
    pipeline_fixture,
    scenario,
)
from tests.integration.pipeline_support import TcpProxy, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]


async def test_sigterm_mid_batch_commits_nothing_unfinished(pipeline: Pipeline, unique):
    p = pipeline
    target = urlparse(p.settings.es_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 9200)
    port = await proxy.start()
    sc = scenario(unique, items=200)
    n_docs = len(sc.expected_ids)
    es_via_proxy = f"http://127.0.0.1:{port}"
    first = p.worker("all", es_url=es_via_proxy, stop_grace_s=3.0)
    try:
        async def some_indexed() -> bool:  # the index templates are in: ES was reached
            return await p.es_count() > 0

        assert await replay(sc.items[:10], p.settings, speed=0) == 10
        await wait_for("the first documents", some_indexed, 240, [first], 0.5)
        await proxy.stop()  # from here the index agent's batch cannot become durable
        before = await p.es_count()
        assert await replay(sc.items[10:], p.settings, speed=0) == len(sc.items) - 10

        async def trends_complete() -> bool:  # ingest and classify are done with everything
            return sum((await p.trend_minutes(sc.start, sc.end)).values()) >= n_docs

        await wait_for("trend counts", trends_complete, 120, [first])
        first.stop()  # SIGTERM while the index agent retries its batch
        assert first.proc is not None and first.proc.returncode == EXIT_STOPPED_MID_BATCH, (
            first.proc.returncode, first.log_tail())
        assert "finishing the batch in flight first" in first.log_tail(200)
        assert await p.es_count() == before

        await proxy.start()  # ES is back; a new worker takes over the same consumer groups
        second = p.worker("all", es_url=es_via_proxy, name="-second")

        async def all_indexed() -> bool:
            return await p.es_count() >= n_docs

        await wait_for("the uncommitted batch to be indexed", all_indexed, 240, [second], 1.0)
        docs = await p.es_docs()
        assert set(docs) == sc.expected_ids
        assert await p.trend_minutes(sc.start, sc.end) == expected_minutes(sc)  # not doubled
    finally:
        await proxy.stop()
