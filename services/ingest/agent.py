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

from services.core.config import Settings
from services.core.schemas import DocKind
from services.ingest.dedup import DedupStore
from services.ingest.entities import EntityLinker
from services.ingest.pipeline import Duplicate, Forward, Ingestor, Reject
from services.ingest.taxonomy import TopicTagger
from services.stream.batches import run_batches
from services.stream.deadletter import dlq_record, origin_of
from services.stream.effects import until_durable
from services.stream.topics import Record, bytes_topic, deliver, doc_key

log = logging.getLogger(__name__)

# Raw items per take, and the longest one waits for its take to fill: one Redis pipeline of
# dedup claims per take, so fuller takes cost less CPU per item; 100 ms keeps the hop well
# inside the 3 s produce->searchable budget (docs/pipeline.md).
INGEST_TAKE = 500
INGEST_MAX_WAIT_S = 0.100
# Normalised text is cut to this many characters (a long article's first pages carry its
# sentiment; the model reads at most a few hundred tokens of it anyway).
MAX_TEXT_CHARS = 20_000


def build_ingestor(settings: Settings, redis: Redis) -> Ingestor:
    return Ingestor(
        EntityLinker.from_file(settings.watchlist_path),
        TopicTagger.from_file(settings.taxonomy_path),
        DedupStore(redis, settings.redis_prefix, settings.dedup_window_s),
        max_bytes=settings.max_message_bytes,
        max_chars=MAX_TEXT_CHARS,
        max_age_days=settings.max_event_age_days,
    )


def register(app: faust.App, settings: Settings) -> None:
    for kind, name in (("news", settings.topic_news_raw), ("comment", settings.topic_comments_raw)):
        app.agent(bytes_topic(app, name), name=f"ingest-{kind}")(_agent(app, settings, kind))


def _agent(app: faust.App, settings: Settings, kind: DocKind):
    async def ingest(stream: faust.StreamT) -> None:
        redis = Redis.from_url(settings.redis_url)
        ingestor = build_ingestor(settings, redis)
        seen: Counter[str] = Counter()

        async def handle(events) -> None:
            records: list[Record] = []
            batch = [(ev.message.value, ev.message.key, origin_of(ev.message)) for ev in events]
            outcomes = await until_durable(
                "ingest dedup", lambda b=batch: ingestor.process_many(b, kind))
            for outcome in outcomes:
                if isinstance(outcome, Forward):
                    doc = outcome.doc
                    records.append((settings.topic_docs_clean, doc_key(doc),
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
            await run_batches(stream, f"ingest {kind}", handle, take=INGEST_TAKE,
                              within_s=INGEST_MAX_WAIT_S, grace_s=settings.stop_grace_s)
        finally:
            log.info("ingest %s totals: %s", kind, dict(seen))
            await redis.aclose()

    ingest.__name__ = f"ingest_{kind}"
    return ingest
