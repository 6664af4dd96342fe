"""Same documents, same alerts: the alerts worker (a real subprocess on the real stack) gives
the same alert ids, windows, severities and scores -- and the same model-change annotations
-- whether its input arrives all at once, paced over seconds, or with a kill -9 of the worker
mid-stream; and they are exactly the pure replay API's events for those documents.

The input is a synthetic scored feed produced straight into ``<ns>.docs.scored`` (keyed by
entity, two partitions), so the test exercises the alerts stage alone and stays short: six
entities over seven hours of event time, one negative burst, one sentiment model change.
The feed ends with one document per entity at the same final time, so the event-time
watermark (the slowest partition's progress) ends there whatever the interleaving.
"""
from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

from services.alerts import replay, rules
from services.alerts.config import detector_config
from services.alerts.detector import Series, alert_id
from services.core.schemas import ScoredDoc, Sentiment
from services.stream.topics import ensure_topics
from tests.integration.pipeline_support import Worker, pipeline_settings, topic_names, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(400)]

ENTITIES = ["AAPL", "TSLA", "GOOGL", "MSFT", "AMZN", "NVDA"]
HOURS = 7
SPIKE = ("TSLA", 5.42)  # entity, hour of its burst
SWAP = ("MSFT", 4.0)  # entity, hour its documents start coming from model m-v2


def feed() -> tuple[list[ScoredDoc], datetime]:
    rng = random.Random(2024)
    now = datetime.now(UTC).timestamp()
    t0 = datetime.fromtimestamp(now - now % 3600 - 2 * 86400, tz=UTC)
    end = t0 + timedelta(hours=HOURS)
    docs: list[ScoredDoc] = []

    def add(entity: str, at: datetime, negative: bool, version: str = "m-v1") -> None:
        i = len(docs)
        docs.append(ScoredDoc(
            doc_id=f"news:det:{i}", kind="news", source="det", source_id=str(i),
            title=f"{entity} update {i}", text=f"{entity} update {i}", published_at=at,
            ingested_at=at, classified_at=at, entities=[entity], primary_entity=entity,
            topics=[rng.choice(["earnings", "legal", "management"])],
            sentiment=Sentiment(label="negative" if negative else "neutral",
                                model_version=version,
                                probabilities={"negative": 0.9 if negative else 0.1})))

    for e in ENTITIES:
        t = 0.0
        while True:
            t += rng.expovariate(40.0)  # ~40 documents an hour
            if t >= HOURS - 0.01:
                break
            swapped = e == SWAP[0] and t >= SWAP[1]
            add(e, t0 + timedelta(hours=t), rng.random() < (0.5 if swapped else 0.15),
                "m-v2" if swapped else "m-v1")
    for k in range(45):
        add(SPIKE[0], t0 + timedelta(hours=SPIKE[1], seconds=25 * k), True)
    for e in ENTITIES:  # everybody's partition ends at the same event time
        add(e, end, False, "m-v2" if e == SWAP[0] else "m-v1")
    docs.sort(key=lambda d: (d.published_at, d.doc_id))
    return docs, end


def partition_of(key: str, n: int = 2) -> int:
    return (murmur2(key.encode()) & 0x7FFFFFFF) % n


def expected(docs: list[ScoredDoc], cfg, end: datetime, lateness_s: float) -> set[tuple]:
    counts: dict[tuple, dict[int, int]] = defaultdict(dict)
    totals: dict[tuple, dict[int, int]] = defaultdict(dict)
    vers: dict[tuple, dict[int, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
    for d in docs:
        w = rules.window_of(d.published_at.timestamp(), cfg.window_s)
        for k in [*((e, "*") for e in d.entities), *(("*", t) for t in d.topics)]:
            counts[k][w] = counts[k].get(w, 0) + (d.sentiment.label == "negative")
            totals[k][w] = totals[k].get(w, 0) + 1
            mv = vers[k][w]
            mv[d.sentiment.model_version] = mv.get(d.sentiment.model_version, 0) + 1
    upto = rules.window_of(end.timestamp() - lateness_s, cfg.window_s) - 1
    out = set()
    for k in counts:
        ver = {w: min(v.items(), key=lambda kv: (-kv[1], kv[0]))[0] for w, v in vers[k].items()}
        for e in replay.replay(counts[k], totals[k], cfg, upto=upto, versions=ver).events:
            start = datetime.fromtimestamp(e.episode_start * cfg.window_s, tz=UTC)
            out.add((alert_id(Series(*k), start, e.kind, e.severity), k[0], k[1], e.kind,
                     datetime.fromtimestamp(e.window * cfg.window_s, tz=UTC).isoformat(),
                     e.severity, round(e.score, 3)))
    return out


async def produce(settings, docs: list[ScoredDoc], seconds: float = 0.0) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        t0 = time.monotonic()
        for i, d in enumerate(docs):
            if seconds:
                delay = t0 + seconds * i / len(docs) - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await producer.send(settings.topic_docs_scored, d.model_dump_json().encode(),
                                key=d.primary_entity.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def es_rows(es, index: str, fields: tuple[str, ...]) -> set[tuple]:
    if not await es.indices.exists(index=index):
        return set()
    await es.indices.refresh(index=index)
    resp = await es.search(index=index, size=2000, query={"match_all": {}})
    out = set()
    for h in resp["hits"]["hits"]:
        s = h["_source"]
        row = []
        for f in fields:
            v = s.get(f)
            if f == "window_start" or f == "timestamp":
                v = datetime.fromisoformat(v).astimezone(UTC).isoformat()
            row.append(v)
        out.add(tuple(row))
    return out


ALERT_FIELDS = ("alert_id", "entity", "topic", "state", "window_start", "severity", "score")
NOTE_FIELDS = ("annotation_id", "entity", "topic", "kind", "timestamp", "factor")


async def test_same_alerts_at_two_rates_and_with_a_kill9(settings, es, redis, kafka_admin,
                                                         es_prefix, redis_ns, unique,
                                                         tmp_path: Path):
    assert {partition_of(e) for e in ENTITIES} == {0, 1}, "both partitions must get documents"
    docs, end = feed()
    runs = {}
    made = []
    try:
        for name in ("burst", "paced", "kill9"):
            u = f"{unique}-{name}"
            s = pipeline_settings(settings, u, tmp_path / name, f"test-{u}", f"test-{u}",
                                  tmp_path / "no-model")
            await ensure_topics(s)
            made.append(s)
            cfg = detector_config(s)
            want = expected(docs, cfg, end, s.alert_lateness_s)
            log_dir = tmp_path / name / "logs"
            if name == "burst":  # everything in Kafka before the worker starts
                await produce(s, docs)
                workers = [Worker(s, "alerts", log_dir).start()]
            elif name == "paced":  # small batches over ~12 s
                workers = [Worker(s, "alerts", log_dir).start()]
                await produce(s, docs, seconds=12.0)
            else:  # kill -9 once the worker has judged part of the feed, then restart
                first = Worker(s, "alerts", log_dir, "-first").start()
                producing = asyncio.create_task(produce(s, docs, seconds=15.0))

                async def some_state(s=s) -> bool:
                    return bool(await redis.get(f"{s.redis_prefix}:alerts:closed"))

                await wait_for("the first closed windows", some_state, 120, [first], 0.2)
                await asyncio.sleep(2.0)
                assert not producing.done(), "the kill must land mid-stream"
                first.kill9()
                await producing
                workers = [Worker(s, "alerts", log_dir, "-restarted").start()]

            async def complete(s=s, want=want) -> bool:
                return await es_rows(es, s.es_alerts_index, ALERT_FIELDS) >= want

            try:
                await wait_for(f"{name}: the expected alerts", complete, 150, workers, 1.0)
                await asyncio.sleep(3.0)  # anything extra would show up now
                runs[name] = (await es_rows(es, s.es_alerts_index, ALERT_FIELDS),
                              await es_rows(es, s.es_annotations_index, NOTE_FIELDS))
            finally:
                for w in workers:
                    w.stop()
            assert runs[name][0] == want, name
    finally:
        for s in made:
            try:
                await kafka_admin.delete_topics(topic_names(s))
            except Exception:  # noqa: BLE001 - best effort cleanup
                pass
    alerts = {n: r[0] for n, r in runs.items()}
    print(f"{len(alerts['burst'])} alert events, {len(runs['burst'][1])} annotations, "
          "identical in the three runs")
    notes = {n: r[1] for n, r in runs.items()}
    assert alerts["burst"] == alerts["paced"] == alerts["kill9"]
    assert notes["burst"] == notes["paced"] == notes["kill9"]
    fired = {row[1:3] for row in alerts["burst"] if row[3] == "firing"}
    assert (SPIKE[0], "*") in fired, fired
    assert (SWAP[0], "*") not in fired, f"the model change fired: {fired}"
    assert (SWAP[0], "*", "model_change") in {n[1:4] for n in notes["burst"]}, notes["burst"]
