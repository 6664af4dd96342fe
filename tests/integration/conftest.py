"""Session clients for the real Kafka, Elasticsearch and Redis, with per-test isolation.

Each test gets its own namespace ``test-<unique>`` (``ns``): its topics are ``<ns>.<name>``,
its indices ``<ns>-*`` and its Redis keys ``<ns>:*`` -- exactly the names a
``Settings(namespace=ns)`` derives -- so tests can run in any order against one long-lived
stack and never see each other's data.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from elasticsearch import AsyncElasticsearch
from redis.asyncio import Redis

from services.core.config import Settings


@pytest.fixture(scope="session")
def settings() -> Settings:
    # the tests' webhook receiver listens on 127.0.0.1, which deliveries may not reach by default
    return Settings(webhook_allow_networks="127.0.0.0/8")


@pytest_asyncio.fixture(scope="session")
async def kafka_admin(settings: Settings) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        await asyncio.wait_for(admin.start(), 20)
    except Exception as exc:  # pragma: no cover - environment problem, not a test result
        pytest.fail(f"Kafka not reachable at {settings.kafka_bootstrap}: {exc!r}; run `ops/stack up`")
    yield admin
    await admin.close()


@pytest_asyncio.fixture(scope="session")
async def kafka_producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                enable_idempotence=True)
    await producer.start()
    yield producer
    await producer.stop()


@pytest_asyncio.fixture(scope="session")
async def es(settings: Settings) -> AsyncIterator[AsyncElasticsearch]:
    client = AsyncElasticsearch(settings.es_url, request_timeout=30)
    health = await client.cluster.health(wait_for_status="yellow", timeout="30s")
    assert health["status"] in ("yellow", "green"), f"Elasticsearch unhealthy: {health}"
    yield client
    await client.close()


@pytest_asyncio.fixture(scope="session")
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(settings.redis_url, decode_responses=False)
    assert await client.ping()
    yield client
    await client.aclose()


@pytest.fixture
def ns(unique: str) -> str:
    """This test's namespace (``Settings.namespace``)."""
    return f"test-{unique}"


@pytest_asyncio.fixture
async def new_topic(kafka_admin: AIOKafkaAdminClient, unique: str) -> AsyncIterator[Callable]:
    """Factory: ``await new_topic("alerts", partitions=2)`` creates ``<ns>.alerts`` (the name
    ``Settings(namespace=ns).topic_alerts`` derives); deleted after."""
    created: list[str] = []

    async def make(name: str, partitions: int = 1) -> str:
        topic = f"test-{unique}.{name}"
        await kafka_admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
        created.append(topic)
        return topic

    yield make
    if created:
        try:
            await kafka_admin.delete_topics(created)
        except Exception:
            pass


@pytest_asyncio.fixture
async def es_prefix(es: AsyncElasticsearch, unique: str) -> AsyncIterator[str]:
    """An index-name prefix private to this test; every index and template under it is removed after."""
    prefix = f"test-{unique}"
    yield prefix
    await es.options(ignore_status=404).indices.delete(index=f"{prefix}*", expand_wildcards="all")
    await es.options(ignore_status=404).indices.delete_index_template(name=f"{prefix}*")


@pytest_asyncio.fixture
async def redis_ns(redis: Redis, unique: str) -> AsyncIterator[str]:
    """A key prefix private to this test (= its namespace); its keys are deleted after."""
    ns = f"test-{unique}"
    yield ns
    keys = [k async for k in redis.scan_iter(match=f"{ns}*", count=1000)]
    if keys:
        await redis.delete(*keys)
