"""Fixtures for the pipeline tests (imported by each pipeline test module)."""
from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer
from elasticsearch import AsyncElasticsearch
from redis.asyncio import Redis

from services.alerts.agent import detector_config
from services.core.config import Settings
from services.core.schemas import Alert, DeadLetter
from services.feed.synthetic import COMPANIES, FeedItem, FeedSpec, SpikeSpec, generate
from services.stream.topics import ensure_topics
from services.trends.store import TrendStore
from services.trends.windows import ALL, DIM_ALL
from tests.integration.pipeline_support import (
    Worker,
    _text,
    build_centroid_model,
    doc_id_of,
    expected_dead_letters,
    pipeline_settings,
    topic_names,
    valid_originals,
)


@pytest.fixture(scope="session", name="centroid_model")
def centroid_model_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.getbasetemp() / "centroid-model-v1"
    if not (folder / "yuqing_model.json").exists():
        build_centroid_model(folder)
    return folder


@dataclass
class Pipeline:
    """One test's namespace, its workers, and readers of every output."""

    settings: Settings
    es: AsyncElasticsearch
    redis: Redis
    log_dir: Path
    workers: list[Worker] = field(default_factory=list)

    def worker(self, role: str = "all", name: str = "", **over) -> Worker:
        s = self.settings.model_copy(update=over) if over else self.settings
        w = Worker(s, role, self.log_dir, name or f"-{len(self.workers)}")
        self.workers.append(w.start())
        return w

    async def es_docs(self) -> dict[str, dict]:
        index = f"{self.settings.es_index_prefix}-*"
        if not await self.es.indices.exists(index=index, allow_no_indices=False):
            return {}
        await self.es.indices.refresh(index=index)
        out: dict[str, dict] = {}
        resp = await self.es.search(index=index, size=5000, query={"match_all": {}})
        for h in resp["hits"]["hits"]:
            assert h["_id"] not in out, f"document {h['_id']} is in two indices"
            out[h["_id"]] = h["_source"]
        return out

    async def es_count(self) -> int:
        index = f"{self.settings.es_index_prefix}-*"
        try:
            await self.es.indices.refresh(index=index, allow_no_indices=True)
            return (await self.es.count(index=index, allow_no_indices=True))["count"]
        except Exception:  # noqa: BLE001 - not created yet
            return 0

    async def es_alerts(self) -> list[dict]:
        idx = self.settings.es_alerts_index
        if not await self.es.indices.exists(index=idx):
            return []
        await self.es.indices.refresh(index=idx)
        resp = await self.es.search(index=idx, size=1000, query={"match_all": {}})
        return [h["_source"] for h in resp["hits"]["hits"]]

    def trend_store(self) -> TrendStore:
        s = self.settings
        return TrendStore(self.redis, s.redis_prefix, s.trends_retention_h * 3600)

    async def trend_minutes(self, start: datetime, end: datetime, dim: str = DIM_ALL,
                            value: str = ALL) -> Counter:
        points = await self.trend_store().series(dim, value, start, end, resolution="minute")
        return Counter({p.start: p.counts.count for p in points if p.counts.count})

    async def topic_messages(self, topic: str, idle_ms: int = 1500) -> list:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=self.settings.kafka_bootstrap,
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        out = []
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=idle_ms)
                if not batch:
                    return out
                for msgs in batch.values():
                    out.extend(msgs)
        finally:
            await consumer.stop()

    async def dead_letters(self) -> tuple[dict[bytes, DeadLetter], int]:
        """Distinct dead letters by key (origin) and the raw number of records."""
        msgs = await self.topic_messages(self.settings.topic_dlq)
        return {m.key: DeadLetter.model_validate_json(m.value) for m in msgs}, len(msgs)

    async def alert_messages(self) -> list[Alert]:
        return [Alert.model_validate_json(m.value)
                for m in await self.topic_messages(self.settings.topic_alerts)]


@pytest_asyncio.fixture(name="pipeline")
async def pipeline_fixture(settings, kafka_admin, es, redis, es_prefix, redis_ns, unique, tmp_path,
                   centroid_model) -> AsyncIterator[Pipeline]:
    s = pipeline_settings(settings, unique, tmp_path, es_prefix, redis_ns, centroid_model)
    await ensure_topics(s)
    p = Pipeline(s, es, redis, tmp_path / "logs")
    try:
        yield p
    finally:
        for w in p.workers:
            w.stop()
        try:
            await kafka_admin.delete_topics(topic_names(s))
        except Exception:  # noqa: BLE001 - best effort cleanup
            pass


# ---------------------------------------------------------------------------------- scenario
@dataclass
class Scenario:
    items: list[FeedItem]
    spike_ticker: str
    calm: list[str]
    start: datetime
    end: datetime
    expected_ids: set[str]
    expected_dlq: Counter
    texts: dict[str, str]


def scenario(unique: str, items: int = 360, hours: float = 6.0, resend: int = 6) -> Scenario:
    """A few hours of feed for six companies, ending now: invalid messages, syndicated copies,
    exact re-sends, and one negative spike for one company."""
    companies = COMPANIES[:6]
    spike = companies[2][0]
    span = hours * 3600
    now = datetime.now(UTC).timestamp()
    start = datetime.fromtimestamp(now - now % 300 - span, tz=UTC)  # 5-minute aligned
    # the spike sits inside one alert window (30 s to 230 s into it)
    spike_at = round(0.7 * span / 300) * 300 + 30
    spec = FeedSpec(start=start, duration_s=span, items=items, companies=companies,
                    invalid_share=0.04, copy_share=0.06, seed=31, run=f"t{unique}",
                    spike=SpikeSpec(ticker=spike, at_s=spike_at, duration_s=200, items=16))
    feed = generate(spec)
    # exact re-sends (a producer retrying): same message later in the stream -> same doc_id
    valid = [it for it in feed if not it.meta.get("invalid") and not it.meta.get("copy_of")]
    for i, it in enumerate(valid[: resend * 7 : 7]):
        feed.append(FeedItem(it.kind, it.key, it.value,
                             it.published_at + timedelta(seconds=60 + i),
                             dict(it.meta, resend=True)))
    feed.sort(key=lambda it: it.published_at)
    originals = valid_originals(feed)
    return Scenario(
        items=feed, spike_ticker=spike, calm=[t for t, _ in companies if t != spike],
        start=start, end=start + timedelta(seconds=span + 600),
        expected_ids={doc_id_of(it) for it in originals},
        expected_dlq=expected_dead_letters(feed),
        texts={doc_id_of(it): _text(it) for it in originals},
    )


def expected_minutes(sc: Scenario) -> Counter:
    c: Counter = Counter()
    for it in valid_originals(sc.items):
        pub = datetime.fromisoformat(json.loads(it.value)["published_at"])
        c[pub.replace(second=0, microsecond=0)] += 1
    return c


def rules_for(s: Settings):
    return detector_config(s)


def now_s() -> float:
    return time.monotonic()
