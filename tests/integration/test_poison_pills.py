"""No poison pill, proven with the real broker: a rejected message as large as the producer
allows reaches the DLQ as a dead letter that fits (a capped prefix, its size, sha256 and
origin), and the valid messages behind it on the same partition are processed -- for each
stage that dead-letters (ingest, index, deliver).

Before the cap, a dead letter carried the whole original as base64 (4/3 larger): any rejected
message over ~750 kB made a record above the producer's 1 MB limit, ingest exited 70 on it
again on every restart and its partition stood still.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from services.core.schemas import CleanDoc, DeadLetter, ScoredDoc, Sentiment
from services.stream.deadletter import ORIGINAL_KEEP_MAX
from services.stream.topics import ensure_topics
from tests.integration.api_helpers import make_alert
from tests.integration.delivery_helpers import Worker as DeliveryWorker
from tests.integration.delivery_helpers import add_subscription, alert_ids
from tests.integration.pipeline_fixtures import centroid_model_fixture  # noqa: F401 - fixture
from tests.integration.pipeline_support import Worker, topic_names, wait_for
from tests.integration.webhook_receiver import Receiver

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


async def read_all(bootstrap: str, topic: str, idle_ms: int = 1500) -> list:
    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                         enable_auto_commit=False, max_partition_fetch_bytes=4 * 1024 * 1024)
    await c.start()
    out: list = []
    try:
        while batch := await c.getmany(timeout_ms=idle_ms):
            for msgs in batch.values():
                out.extend(msgs)
    finally:
        await c.stop()
    return out


@pytest.fixture
async def stage_settings(settings, unique, tmp_path, kafka_admin):
    s = settings.model_copy(update={"namespace": f"test-{unique}", "topic_partitions": 1,
                                    "data_dir": tmp_path / "var", "log_level": "INFO"})
    await ensure_topics(s)
    yield s
    try:
        await kafka_admin.delete_topics(topic_names(s))
    except Exception:  # noqa: BLE001 - best effort
        pass


async def big_producer(s) -> AIOKafkaProducer:
    p = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all",
                         enable_idempotence=True, max_request_size=1_048_576)
    await p.start()
    return p


def assert_capped(dl: DeadLetter, original: bytes, topic: str, stage: str) -> None:
    assert dl.stage == stage and dl.origin.topic == topic
    assert dl.original_truncated
    assert dl.original_size == len(original)
    assert dl.original_sha256 == hashlib.sha256(original).hexdigest()
    kept = base64.b64decode(dl.original_b64)
    assert len(kept) == ORIGINAL_KEEP_MAX and original.startswith(kept)


def news(i: int, title: str, when: datetime) -> bytes:
    return json.dumps({"id": f"pp-{i}", "source": "wire", "published_at": when.isoformat(),
                       "title": title, "tickers": ["AAPL"]}).encode()


async def test_ingest_dead_letters_huge_rejects_and_goes_on(stage_settings, tmp_path):
    s = stage_settings
    now = datetime.now(UTC) - timedelta(minutes=5)
    title_800k = news(1, "x" * 800_000, now)           # schema: title over 2,000 characters
    # just under the producer's 1 MiB: over YUQING_MAX_MESSAGE_BYTES (1 MB), the documented
    # too_large case
    near_limit = news(2, "y" * (1_040_000 - 120), now)
    assert 800_000 < len(title_800k) < len(near_limit) < 1_048_576 - 1024
    valid = [news(10 + i, f"Apple beats estimates, part {i}", now) for i in range(5)]
    producer = await big_producer(s)
    try:
        for v in (title_800k, valid[0], near_limit, *valid[1:]):  # one partition, in order
            await producer.send_and_wait(s.topic_news_raw, v, key=b"wire")
    finally:
        await producer.stop()
    w = Worker(s, "ingest", tmp_path / "logs").start()
    try:
        async def done() -> bool:
            return len(await read_all(s.kafka_bootstrap, s.topic_docs_clean, 800)) >= 5

        await wait_for("5 clean documents behind the poison pills", done, 120, [w], 2.0)
        dead = await read_all(s.kafka_bootstrap, s.topic_dlq)
        await asyncio.sleep(3)  # a crash loop would show now
        assert w.alive(), w.log_tail()
    finally:
        w.stop()
    assert w.proc.returncode in (0, -15), w.log_tail()
    by_size = {DeadLetter.model_validate_json(m.value).original_size: m for m in dead}
    assert set(by_size) == {len(title_800k), len(near_limit)}
    for original, reason in ((title_800k, "schema"), (near_limit, "too_large")):
        m = by_size[len(original)]
        assert len(m.value) < 1_000_000  # the dead letter itself fits in a record
        dl = DeadLetter.model_validate_json(m.value)
        assert dl.reason == reason, dl.error
        assert_capped(dl, original, s.topic_news_raw, "ingest")
        assert m.key == f"{s.topic_news_raw}:0:{dl.origin.offset}".encode()
    clean = await read_all(s.kafka_bootstrap, s.topic_docs_clean)
    assert sorted(json.loads(m.value)["doc_id"] for m in clean) == sorted(
        f"news:wire:pp-{10 + i}" for i in range(5))


def scored(i: int) -> bytes:
    now = datetime.now(UTC) - timedelta(minutes=5)
    return ScoredDoc(doc_id=f"news:src:pp{i}", kind="news", source="src", source_id=f"pp{i}",
                     title=f"Apple beats estimates {i}", text="Apple beats estimates.",
                     published_at=now, ingested_at=now, entities=["AAPL"], topics=["earnings"],
                     classified_at=now,
                     sentiment=Sentiment(label="positive", model_version="v1",
                                         probabilities={"negative": 0.1, "neutral": 0.2,
                                                        "positive": 0.7})
                     ).model_dump_json().encode()


async def test_index_sink_dead_letters_huge_rejects_and_goes_on(stage_settings, tmp_path, es):
    s = stage_settings
    huge = b'{"doc_id": "' + b"z" * 1_000_000 + b'"}'  # not a ScoredDoc, near 1 MB
    producer = await big_producer(s)
    try:
        for v in (huge, scored(1), scored(2)):
            await producer.send_and_wait(s.topic_docs_scored, v, key=b"AAPL")
    finally:
        await producer.stop()
    w = Worker(s, "sink", tmp_path / "logs").start()
    idx = f"{s.es_index_prefix}-*"
    try:
        async def done() -> bool:
            try:
                await es.indices.refresh(index=idx, allow_no_indices=True)
                return (await es.count(index=idx, allow_no_indices=True))["count"] >= 2
            except Exception:  # noqa: BLE001 - index not there yet
                return False

        await wait_for("2 documents indexed behind the poison pill", done, 120, [w], 2.0)
        await asyncio.sleep(3)
        assert w.alive(), w.log_tail()
    finally:
        w.stop()
        await es.options(ignore_status=404).indices.delete(index=idx, allow_no_indices=True)
    dead = [DeadLetter.model_validate_json(m.value)
            for m in await read_all(s.kafka_bootstrap, s.topic_dlq)]
    # trends and index read the topic each (two consumer groups): one dead letter per origin
    assert {d.origin.offset for d in dead} == {0}
    for d in dead:
        assert d.reason == "schema"
        assert_capped(d, huge, s.topic_docs_scored, d.stage)


async def test_deliver_dead_letters_huge_rejects_and_goes_on(settings, redis, redis_ns,
                                                             new_topic, unique, kafka_producer):
    topic, dlq = await new_topic("alerts"), await new_topic("dlq")
    receiver = await Receiver().start()
    try:
        await add_subscription(redis, redis_ns, f"{receiver.base_url}/hook", group_wait_s=0)
        huge = b"[" + b"1," * 500_000 + b"1]"  # JSON, not an Alert, ~1 MB
        good = make_alert("ACME")
        producer = await big_producer(settings)
        try:
            await producer.send_and_wait(topic, huge, key=b"ACME")
            await producer.send_and_wait(topic, good.model_dump_json().encode(), key=b"ACME")
        finally:
            await producer.stop()
        w = await DeliveryWorker(redis, redis_ns, bootstrap=settings.kafka_bootstrap,
                                 topic=topic, group_id=f"test-pp-{unique}", dlq_topic=dlq,
                                 producer=kafka_producer).start()
        try:
            await receiver.wait_for(lambda: any(
                good.alert_id in alert_ids(r.json) for r in receiver.delivered("/hook").values()),
                within_s=30)
        finally:
            await w.stop()
        dead = [DeadLetter.model_validate_json(m.value)
                for m in await read_all(settings.kafka_bootstrap, dlq)]
        assert len(dead) == 1 and dead[0].reason == "schema"
        assert_capped(dead[0], huge, topic, "deliver")
    finally:
        await receiver.stop()


def clean(i: int) -> bytes:
    now = datetime.now(UTC) - timedelta(minutes=5)
    return CleanDoc(doc_id=f"news:src:pc{i}", kind="news", source="src", source_id=f"pc{i}",
                    title=f"Apple beats estimates {i}", text=f"Apple beats estimates {i}.",
                    published_at=now, ingested_at=now, entities=["AAPL"], topics=["earnings"]
                    ).model_dump_json().encode()


@pytest.mark.slow
async def test_classify_dead_letters_huge_rejects_and_goes_on(stage_settings, tmp_path,
                                                              centroid_model):
    s = stage_settings.model_copy(update={"model_path": centroid_model, "device": "cpu",
                                          "classify_backend": "fp32"})
    huge = b'{"doc_id": "' + b"q" * 1_000_000 + b'"}'  # not a CleanDoc, near 1 MB
    producer = await big_producer(s)
    try:
        for v in (clean(1), huge, clean(2), clean(3)):
            await producer.send_and_wait(s.topic_docs_clean, v, key=b"AAPL")
    finally:
        await producer.stop()
    w = Worker(s, "classify", tmp_path / "logs").start()
    try:
        async def done() -> bool:
            return len(await read_all(s.kafka_bootstrap, s.topic_docs_scored, 800)) >= 3

        await wait_for("3 scored documents around the poison pill", done, 180, [w], 2.0)
        await asyncio.sleep(3)
        assert w.alive(), w.log_tail()
    finally:
        w.stop()
    scored_ids = {json.loads(m.value)["doc_id"]
                  for m in await read_all(s.kafka_bootstrap, s.topic_docs_scored)}
    assert scored_ids == {f"news:src:pc{i}" for i in (1, 2, 3)}
    dead = [DeadLetter.model_validate_json(m.value)
            for m in await read_all(s.kafka_bootstrap, s.topic_dlq)]
    assert len(dead) == 1 and dead[0].reason == "schema" and dead[0].origin.offset == 1
    assert_capped(dead[0], huge, s.topic_docs_clean, "classify")
