"""Ingest agents: raw news/comments -> ``docs.clean`` (or the DLQ), one agent per input topic.

Thin by design: :class:`~services.ingest.pipeline.Ingestor` decides (forward, duplicate,
reject); the agent delivers the batch's outputs and only then moves on, which is when Faust
acks the batch (see ``services.app`` for the offset rules). A Redis outage inside ``process``
is retried on the same message, so an input is never dead-lettered for a backend's failure.
"""
from __future__ import annotations

import logging
from collections import Counter

import faust
from redis.asyncio import Redis

from services.app import raw_topic
from services.core.config import Settings
from services.core.effects import finish_batch, until_durable
from services.core.schemas import SourceRef
from services.core.topics import Record, deliver, dlq_record
from services.ingest.dedup import DedupStore
from services.ingest.entities import EntityLinker
from services.ingest.pipeline import Duplicate, Forward, Ingestor, Kind, Reject
from services.ingest.topics import TopicTagger

log = logging.getLogger(__name__)

INGEST_BATCH = 500


def build_ingestor(settings: Settings, redis: Redis) -> Ingestor:
    return Ingestor(
        EntityLinker.from_file(settings.watchlist_path),
        TopicTagger.from_file(settings.taxonomy_path),
        DedupStore(redis, settings.redis_prefix, settings.dedup_window_s),
        max_bytes=settings.max_message_bytes,
        max_chars=settings.max_text_chars,
    )


def clean_key(doc) -> bytes:
    """docs.clean/docs.scored key: the primary entity keeps a company's documents in order."""
    return (doc.primary_entity or doc.doc_id).encode()


def register(app: faust.App, settings: Settings) -> None:
    for kind, name in (("news", settings.topic_news_raw), ("comment", settings.topic_comments_raw)):
        app.agent(raw_topic(app, name), name=f"ingest-{kind}")(_agent(app, settings, kind))


def _agent(app: faust.App, settings: Settings, kind: Kind):
    async def ingest(stream: faust.StreamT) -> None:
        redis = Redis.from_url(settings.redis_url)
        ingestor = build_ingestor(settings, redis)
        seen: Counter[str] = Counter()

        async def handle(events) -> None:
            records: list[Record] = []
            batch = [(ev.message.value, ev.message.key,
                      SourceRef(topic=ev.message.topic, partition=ev.message.partition,
                                offset=ev.message.offset)) for ev in events]
            outcomes = await until_durable(
                "ingest dedup", lambda b=batch: ingestor.process_many(b, kind))
            for outcome in outcomes:
                if isinstance(outcome, Forward):
                    doc = outcome.doc
                    records.append((settings.topic_docs_clean, clean_key(doc),
                                    doc.model_dump_json().encode()))
                    seen["forwarded"] += 1
                elif isinstance(outcome, Duplicate):
                    seen["duplicates"] += 1
                elif isinstance(outcome, Reject):
                    dl = outcome.dead_letter
                    records.append(dlq_record(settings.topic_dlq, dl))
                    seen["dead_lettered"] += 1
            await until_durable("ingest deliver", lambda r=records: deliver(app.producer, r))

        try:
            async for events in stream.take_events(INGEST_BATCH,
                                                   within=settings.ingest_max_wait_ms / 1000):
                await finish_batch(f"ingest {kind}", handle(events), settings.stop_grace_s)
                log.debug("ingest %s: %s", kind, dict(seen))
        finally:
            log.info("ingest %s totals: %s", kind, dict(seen))
            await redis.aclose()

    ingest.__name__ = f"ingest_{kind}"
    return ingest
