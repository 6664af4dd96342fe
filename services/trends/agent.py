"""Trends agent: ``docs.scored`` batches -> per-minute sentiment buckets in Redis.

``TrendStore.record`` is idempotent per ``doc_id`` (one Lua call checks and counts), so a
batch redelivered after a crash changes nothing; the agent moves on (letting Faust ack the
batch) only after ``record`` returned. See ``services.app`` for the offset rules.
"""
from __future__ import annotations

import logging

import faust
from redis.asyncio import Redis

from services.core.config import Settings
from services.core.schemas import ScoredDoc
from services.stream.batches import SINK_MAX_WAIT_S, SINK_TAKE, run_batches
from services.stream.deadletter import parse_batch
from services.stream.effects import until_durable
from services.stream.topics import bytes_topic
from services.trends.store import TrendStore

log = logging.getLogger(__name__)


def build_store(settings: Settings, redis: Redis) -> TrendStore:
    return TrendStore(redis, settings.redis_prefix, settings.trends_retention_h * 3600)


def register(app: faust.App, settings: Settings) -> None:
    topic = bytes_topic(app, settings.topic_docs_scored)

    @app.agent(topic, name="trends")
    async def trends(stream: faust.StreamT) -> None:
        redis = Redis.from_url(settings.redis_url)
        store = build_store(settings, redis)
        counted = 0

        async def handle(events) -> int:
            # malformed scored docs are dead-lettered once, by the index agent
            docs, _dead = parse_batch(settings.topic_dlq, events, ScoredDoc, "trends")
            good = [d for d in docs if d is not None]
            if not good:
                return 0
            return await until_durable("trends record", lambda g=good: store.record(g))

        try:
            counted = await run_batches(stream, "trends", handle, take=SINK_TAKE,
                                        within_s=SINK_MAX_WAIT_S, grace_s=settings.stop_grace_s)
        finally:
            log.info("trends: %d new documents counted", counted)
            await redis.aclose()
