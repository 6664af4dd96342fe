"""The three backing services answer real requests (the foundation every other test stands on)."""
from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer

pytestmark = pytest.mark.integration


async def test_kafka_produce_then_consume(kafka_producer, new_topic, settings):
    topic = await new_topic("smoke", partitions=2)
    payloads = [f"msg-{i}-{uuid.uuid4().hex}".encode() for i in range(10)]
    for i, p in enumerate(payloads):
        await kafka_producer.send_and_wait(topic, p, key=str(i % 3).encode())
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap,
                                auto_offset_reset="earliest", group_id=f"smoke-{uuid.uuid4().hex[:6]}")
    await consumer.start()
    try:
        got: list[bytes] = []
        async def drain() -> None:
            async for msg in consumer:
                got.append(msg.value)
                if len(got) == len(payloads):
                    return
        await asyncio.wait_for(drain(), 30)
    finally:
        await consumer.stop()
    assert sorted(got) == sorted(payloads)


async def test_elasticsearch_index_refresh_search(es, es_prefix):
    index = f"{es_prefix}-smoke"
    await es.indices.create(index=index, mappings={"properties": {
        "title": {"type": "text"}, "label": {"type": "keyword"}}})
    await es.index(index=index, id="a", document={"title": "Acme beats estimates", "label": "positive"})
    await es.index(index=index, id="b", document={"title": "Acme misses estimates", "label": "negative"})
    await es.indices.refresh(index=index)
    res = await es.search(index=index, query={"bool": {"must": [{"match": {"title": "estimates"}}],
                                                        "filter": [{"term": {"label": "negative"}}]}})
    hits = [h["_id"] for h in res["hits"]["hits"]]
    assert hits == ["b"]


async def test_redis_pipeline(redis, redis_ns):
    key = f"{redis_ns}:counts"
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hincrby(key, "negative", 2)
        pipe.hincrby(key, "positive", 1)
        pipe.expire(key, 60)
        pipe.hgetall(key)
        results = await pipe.execute()
    assert results[-1] == {b"negative": b"2", b"positive": b"1"}
    assert 0 < await redis.ttl(key) <= 60
