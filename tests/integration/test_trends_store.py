"""TrendStore against the real Redis: idempotent counting, window reads, series, top."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from services.core.config import Settings
from services.core.errors import BackendUnavailable
from services.core.schemas import ScoredDoc, Sentiment
from services.trends.store import TrendStore

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(second=30, microsecond=0)
LABELS = ("negative", "neutral", "positive")


def _doc(i: int, age_min: float, label: str, entities: list[str], topics: list[str],
         kind: str = "news") -> ScoredDoc:
    probs = {lab: (0.8 if lab == label else 0.1) for lab in LABELS}
    t = NOW - timedelta(minutes=age_min)
    return ScoredDoc(doc_id=f"{kind}:src:{i}", kind=kind, source="src", source_id=str(i),
                     text="t", published_at=t, ingested_at=NOW, entities=entities,
                     topics=topics, classified_at=NOW,
                     sentiment=Sentiment(label=label, probabilities=probs, model_version="v"))


@pytest.fixture
def docs() -> list[ScoredDoc]:
    return [
        _doc(1, 0, "negative", ["AAPL"], ["earnings"]),
        _doc(2, 2, "negative", ["AAPL", "MSFT"], ["legal"]),
        _doc(3, 4, "positive", ["AAPL"], [], kind="comment"),
        _doc(4, 30, "neutral", ["AAPL"], ["earnings"]),
        _doc(5, 59, "negative", ["MSFT"], []),
        _doc(6, 61, "positive", ["AAPL"], ["earnings"]),
        _doc(7, 60 * 23 + 59, "negative", ["AAPL"], []),
        _doc(8, 60 * 24 + 1, "negative", ["AAPL"], []),  # outside every window
    ]


async def test_record_is_idempotent_and_windows_are_exact(redis: Redis, redis_ns: str,
                                                          docs: list[ScoredDoc]) -> None:
    store = TrendStore(redis, redis_ns, retention_s=48 * 3600)
    assert await store.record(docs, now=NOW) == len(docs)
    # Redelivery of the whole batch, and of part of it mixed with a new one, counts only new.
    assert await store.record(docs, now=NOW) == 0
    extra = _doc(9, 1, "neutral", ["TSLA"], [])
    assert await store.record([docs[0], extra, docs[3]], now=NOW) == 1

    aapl = await store.read("entity", "AAPL", now=NOW)
    assert aapl["5m"].count == 3
    assert aapl["5m"].labels == {"negative": 2, "neutral": 0, "positive": 1}
    assert aapl["5m"].score_sums["negative"] == pytest.approx(0.8 * 2 + 0.1)
    assert aapl["1h"].count == 4
    assert aapl["24h"].count == 6
    assert aapl["24h"].labels["negative"] == 3

    overall = await store.read("all", "*", now=NOW)
    assert [overall[w].count for w in ("5m", "1h", "24h")] == [4, 6, 8]
    assert (await store.read("kind", "comment", now=NOW))["24h"].count == 1
    assert (await store.read("topic", "earnings", now=NOW))["24h"].count == 3
    assert (await store.read("entity_topic", "MSFT|legal", now=NOW))["5m"].count == 1
    assert (await store.read("entity", "NOPE", now=NOW))["24h"].count == 0

    many = await store.read_many([("entity", "MSFT"), ("entity", "TSLA")], now=NOW)
    assert many[("entity", "MSFT")]["1h"].count == 2
    assert many[("entity", "TSLA")]["5m"].count == 1


async def test_reads_are_one_round_trip(redis: Redis, redis_ns: str, settings: Settings,
                                        docs: list[ScoredDoc]) -> None:
    """Every window of every series comes from one pipelined request (and no other command)."""
    await TrendStore(redis, redis_ns, retention_s=48 * 3600).record(docs, now=NOW)
    client = Redis.from_url(settings.redis_url)
    pipelines: list[object] = []
    direct: list[object] = []
    make_pipeline, execute_command = client.pipeline, client.execute_command

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        pipelines.append(pipe := make_pipeline(*args, **kwargs))
        return pipe

    async def command(*args: Any, **kwargs: Any) -> Any:
        direct.append(args[0])
        return await execute_command(*args, **kwargs)

    client.pipeline = pipeline  # type: ignore[method-assign]
    client.execute_command = command  # type: ignore[method-assign]
    try:
        store = TrendStore(client, redis_ns, retention_s=48 * 3600)
        res = await store.read_many([("entity", "AAPL"), ("all", "*")], now=NOW)
    finally:
        await client.aclose()
    assert (len(pipelines), direct) == (1, [])
    assert res[("all", "*")]["24h"].count == 7  # doc 8 is older than 24 h
    assert res[("entity", "AAPL")]["1h"].count == 4


async def test_buckets_expire_with_retention(redis: Redis, redis_ns: str,
                                             docs: list[ScoredDoc]) -> None:
    store = TrendStore(redis, redis_ns, retention_s=24 * 3600, hour_retention_s=3 * 86400)
    # A document older than the retention is not counted (its bucket would already be gone).
    old = _doc(50, 60 * 25, "negative", ["AAPL"], [])
    assert await store.record([docs[0], old], now=NOW) == 1
    keys = [k async for k in redis.scan_iter(match=f"{redis_ns}:tr:*")]
    assert keys
    for k in keys:
        ttl = await redis.ttl(k)
        assert 0 < ttl <= 3 * 86400 + 3600, k


async def test_series_and_top(redis: Redis, redis_ns: str, docs: list[ScoredDoc]) -> None:
    store = TrendStore(redis, redis_ns, retention_s=48 * 3600)
    await store.record(docs, now=NOW)
    minute = NOW.replace(second=0)
    pts = await store.series("entity", "AAPL", minute - timedelta(minutes=4),
                             minute + timedelta(minutes=1), "minute")
    assert [p.start for p in pts] == [minute - timedelta(minutes=m) for m in (4, 3, 2, 1, 0)]
    assert [p.counts.count for p in pts] == [1, 0, 1, 0, 1]
    hours = await store.series("all", "*", NOW - timedelta(hours=25), NOW, "hour")
    assert sum(p.counts.count for p in hours) == 8
    assert len(hours) == 26
    assert await store.top("entity", "1h", now=NOW) == [("AAPL", 4), ("MSFT", 2)]
    assert await store.top("entity", "24h", label="negative", now=NOW) == \
        [("AAPL", 3), ("MSFT", 2)]
    with pytest.raises(ValueError):
        await store.top("kind", now=NOW)


async def test_script_reloaded_after_flush(redis: Redis, redis_ns: str,
                                           docs: list[ScoredDoc]) -> None:
    store = TrendStore(redis, redis_ns, retention_s=48 * 3600)
    assert await store.record(docs[:2], now=NOW) == 2
    store._sha = "0" * 40  # as after a Redis restart: the cached sha is unknown to the server
    assert await store.record(docs, now=NOW) == len(docs) - 2


async def test_nan_probability_is_not_a_poison_message(redis: Redis, redis_ns: str) -> None:
    store = TrendStore(redis, redis_ns, retention_s=48 * 3600)
    doc = _doc(70, 0, "negative", ["AAPL"], [])
    doc.sentiment.probabilities["neutral"] = float("nan")
    assert await store.record([doc], now=NOW) == 1
    c = (await store.read("entity", "AAPL", now=NOW))["5m"]
    assert (c.count, c.score_sums["negative"], c.score_sums["neutral"]) == (1, 0.8, 0.0)


async def test_redis_down_is_backend_unavailable(redis_ns: str, docs: list[ScoredDoc]) -> None:
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    store = TrendStore(dead, redis_ns, retention_s=48 * 3600)
    try:
        with pytest.raises(BackendUnavailable):
            await store.record(docs, now=NOW)
        with pytest.raises(BackendUnavailable):
            await store.read("all", "*", now=NOW)
    finally:
        await dead.aclose()
