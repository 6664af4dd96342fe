"""EsSink against the real Elasticsearch: templates, daily indices + alias, idempotent _id,
per-item rejections, retention by name date, alerts, and backpressure when ES is unreachable."""
from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from elasticsearch import AsyncElasticsearch

from services.core.errors import SinkBackpressure
from services.core.schemas import Alert, ScoredDoc, Sentiment
from services.index.sink import BulkBackpressure, EsSink

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 29, 6, 0, tzinfo=UTC)


def _doc(i: int, days_ago: int = 0, **kw: object) -> ScoredDoc:
    base = dict(doc_id=f"news:src:{i}", kind="news", source="src", source_id=str(i),
                title=f"Apple beats estimates {i}", text="Apple beats estimates. 阿里巴巴股价大涨",
                published_at=NOW - timedelta(days=days_ago), ingested_at=NOW,
                entities=["AAPL", "BABA"], topics=["earnings"], classified_at=NOW,
                sentiment=Sentiment(label="positive", model_version="v1",
                                    probabilities={"negative": 0.1, "neutral": 0.2,
                                                   "positive": 0.7}))
    base.update(kw)
    return ScoredDoc.model_validate(base)


@pytest_asyncio.fixture
async def sink(es: AsyncElasticsearch, es_prefix: str) -> AsyncIterator[EsSink]:
    yield EsSink(es, f"{es_prefix}-docs", alerts_index=f"{es_prefix}-alerts", max_docs=2,
                 retries=2, backoff_s=0.01)
    # Component templates are not covered by es_prefix's clean-up, and cannot go while the
    # index templates composed of them exist: remove all three layers here, in order.
    await es.options(ignore_status=404).indices.delete(index=f"{es_prefix}*",
                                                       expand_wildcards="all")
    await es.options(ignore_status=404).indices.delete_index_template(name=f"{es_prefix}*")
    await es.options(ignore_status=404).cluster.delete_component_template(name=f"{es_prefix}*")


async def test_templates_daily_indices_alias_and_idempotent_ids(es: AsyncElasticsearch,
                                                                sink: EsSink) -> None:
    docs = [_doc(1), _doc(2), _doc(3, days_ago=1), _doc(4, days_ago=2), _doc(5)]
    sink.add(docs[0])
    assert len(sink) == 1 and not sink.full
    res = await sink.write(docs[1:])
    assert (res.indexed, res.failures) == (5, [])
    assert len(sink) == 0
    alias = sink.prefix
    await es.indices.refresh(index=alias)
    # One index per UTC publication date, all behind the alias.
    got = await es.indices.get_alias(name=alias)
    assert sorted(got) == [f"{alias}-2026.11.27", f"{alias}-2026.11.28", f"{alias}-2026.11.29"]
    assert (await es.count(index=alias))["count"] == 5
    # Explicit mapping from the template.
    mapping = (await es.indices.get_mapping(index=f"{alias}-2026.11.29"))[
        f"{alias}-2026.11.29"]["mappings"]
    assert mapping["dynamic"] == "false"
    props = mapping["properties"]
    assert props["entities"]["type"] == "keyword"
    assert props["sentiment"]["properties"]["positive"]["type"] == "float"
    assert props["title"]["fields"]["keyword"]["type"] == "keyword"
    assert props["published_at"]["type"] == "date"
    # Re-indexing the same documents (a redelivery) overwrites: still 5.
    assert (await sink.write([_doc(1), _doc(3, days_ago=1, duplicates=4)])).indexed == 2
    await es.indices.refresh(index=alias)
    assert (await es.count(index=alias))["count"] == 5
    hit = await es.get(index=f"{alias}-2026.11.28", id="news:src:3")
    assert hit["_source"]["duplicates"] == 4
    assert hit["_source"]["sentiment"]["label"] == "positive"
    # Keyword and float fields are queryable as such.
    q = await es.search(index=alias, query={"bool": {"filter": [
        {"term": {"entities": "BABA"}}, {"range": {"sentiment.positive": {"gte": 0.5}}}]}})
    assert q["hits"]["total"]["value"] == 5


async def test_mapping_rejection_is_a_failure_not_an_exception(es: AsyncElasticsearch,
                                                               sink: EsSink) -> None:
    await sink.ensure_templates()
    # An index created by hand with a conflicting mapping: its documents are refused per item.
    bad_index = f"{sink.prefix}-2026.11.20"
    await es.indices.create(index=bad_index, mappings={"properties": {
        "entities": {"type": "integer"}}})
    res = await sink.write([_doc(1), _doc(2, days_ago=9), _doc(3)])
    assert res.indexed == 2
    assert [f.doc_id for f in res.failures] == ["news:src:2"]
    failure = res.failures[0]
    assert failure.status == 400
    assert failure.index == bad_index
    assert "parsing" in failure.error_type or "parse" in failure.reason
    assert failure.doc is not None and failure.doc.doc_id == "news:src:2"


async def test_retention_deletes_old_indices_by_name(es: AsyncElasticsearch, sink: EsSink) -> None:
    await sink.write([_doc(i, days_ago=d) for i, d in enumerate((0, 1, 29, 30, 31, 45))])
    other = f"{sink.prefix}-keep-me"  # not a daily index name: never touched
    await es.indices.create(index=other)
    assert await sink.expired(30, now=NOW) == [f"{sink.prefix}-2026.10.15",
                                               f"{sink.prefix}-2026.10.29"]
    deleted = await sink.retention(30, now=NOW)
    assert deleted == [f"{sink.prefix}-2026.10.15", f"{sink.prefix}-2026.10.29"]
    left = sorted(await sink.daily_indices())
    assert left == [f"{sink.prefix}-2026.10.30", f"{sink.prefix}-2026.10.31",
                    f"{sink.prefix}-2026.11.28", f"{sink.prefix}-2026.11.29"]
    assert await es.indices.exists(index=other)
    assert await sink.retention(30, now=NOW) == []
    with pytest.raises(ValueError):
        await sink.retention(0, now=NOW)


async def test_alerts_index(es: AsyncElasticsearch, sink: EsSink) -> None:
    alert = Alert(alert_id="a-1", entity="AAPL", severity="critical", window_start=NOW,
                  window_end=NOW, negative_count=9, total_count=10, negative_share=0.9,
                  baseline_mean=1.0, baseline_std=0.5, score=16.0, detector="zscore",
                  created_at=NOW)
    assert (await sink.index_alerts([alert, alert])).indexed == 2
    await es.indices.refresh(index=sink.alerts_index)
    assert (await es.count(index=sink.alerts_index))["count"] == 1
    props = (await es.indices.get_mapping(index=sink.alerts_index))[sink.alerts_index][
        "mappings"]["properties"]
    assert props["entity"]["type"] == "keyword"
    assert props["score"]["type"] == "float"
    # The alerts index is not behind the documents alias.
    aliases = await es.indices.get_alias(index=sink.alerts_index)
    assert aliases[sink.alerts_index]["aliases"] == {}


async def test_unreachable_es_raises_backpressure_and_clears_buffer(es_prefix: str) -> None:
    dead = AsyncElasticsearch("http://127.0.0.1:1", request_timeout=1, max_retries=0)
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    sink = EsSink(dead, f"{es_prefix}-docs", retries=3, backoff_s=0.5, sleep=sleep)
    sink._templates_ready = True  # skip the template PUTs: this test is about the bulk loop
    docs = [_doc(1), _doc(2)]
    try:
        with pytest.raises(SinkBackpressure) as info:
            await sink.write(docs)
    finally:
        await dead.close()
    exc = info.value
    assert isinstance(exc, BulkBackpressure)
    assert exc.retry_after > 0
    assert [d.doc_id for d in exc.pending] == ["news:src:1", "news:src:2"]
    assert len(sink) == 0  # cleared in finally
    # Exponential backoff with jitter: each wait within [base/2, base] of 0.5 * 2^n.
    assert len(slept) == 3
    for n, s in enumerate(slept):
        assert 0.5 * 2 ** n / 2 <= s <= 0.5 * 2 ** n
