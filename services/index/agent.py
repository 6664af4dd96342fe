"""Index agent: ``docs.scored`` batches -> Elasticsearch (``_id`` = ``doc_id``).

Each batch is added to the :class:`~services.index.sink.EsSink` and flushed (bulk) inside the
batch loop; only after the flush succeeded does the agent ask for the next batch, which is
when Faust acks this one. The sink clears its buffer in ``finally`` whatever happens, so a
retry re-adds the batch before flushing again. While Elasticsearch is unreachable (or answers
429) the agent keeps retrying the same batch; Faust's stream buffer fills and fetching pauses;
when Elasticsearch is back the batch is written and the backlog follows. Documents the sink
reports as rejected (mapping conflicts and the like) go to the DLQ with the reason.
"""
from __future__ import annotations

import logging

import faust
from elasticsearch import AsyncElasticsearch
from faust.types import Message

from services.app import raw_topic
from services.classify.agent import parse_batch
from services.core.config import Settings
from services.core.effects import finish_batch, until_durable
from services.core.schemas import ScoredDoc, SourceRef
from services.core.topics import Record, deliver, dlq_record
from services.index.sink import EsSink, FlushResult
from services.ingest.pipeline import dead_letter

log = logging.getLogger(__name__)


def build_sink(settings: Settings, es: AsyncElasticsearch) -> EsSink:
    return EsSink(es, settings.es_index_prefix, max_docs=settings.es_bulk_max_docs,
                  alerts_index=settings.es_alerts_index)


def es_client(settings: Settings) -> AsyncElasticsearch:
    # short timeouts and no client-side retries: outages are retried by until_durable
    return AsyncElasticsearch(settings.es_url, request_timeout=30, max_retries=0,
                              retry_on_timeout=False)


def rejected_records(settings: Settings, result: FlushResult,
                     by_id: dict[str, Message]) -> list[Record]:
    """DLQ records for the documents Elasticsearch refused for good (mapping errors...)."""
    out: list[Record] = []
    for f in result.failures:
        m = by_id.get(f.doc_id)
        if m is None:
            continue
        origin = SourceRef(topic=m.topic, partition=m.partition, offset=m.offset)
        dl = dead_letter(m.value, m.key, origin, "index_rejected",
                         f"HTTP {f.status} {f.error_type}: {f.reason}", stage="index")
        out.append(dlq_record(settings.topic_dlq, dl))
    return out


def register(app: faust.App, settings: Settings) -> None:
    topic = raw_topic(app, settings.topic_docs_scored)

    @app.agent(topic, name="index")
    async def index(stream: faust.StreamT) -> None:
        es = es_client(settings)
        sink = build_sink(settings, es)
        await until_durable("index templates", sink.ensure_templates)
        written = 0

        async def handle(events) -> int:
            docs, records = parse_batch(settings, events, ScoredDoc, "index")
            good = [d for d in docs if d is not None]
            indexed = 0
            if good:
                result = await until_durable("index bulk", lambda g=good: sink.write(g))
                by_id = {d.doc_id: ev.message
                         for d, ev in zip(docs, events, strict=True) if d is not None}
                records += rejected_records(settings, result, by_id)
                indexed = result.indexed
            await until_durable("index deliver", lambda r=records: deliver(app.producer, r))
            return indexed

        try:
            async for events in stream.take_events(settings.es_bulk_max_docs,
                                                   within=settings.sink_max_wait_ms / 1000):
                written += await finish_batch("index", handle(events), settings.stop_grace_s)
        finally:
            log.info("index: %d documents written", written)
            await es.close()
