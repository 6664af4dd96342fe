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
from faust.types import Message

from services.core.config import Settings
from services.core.schemas import ScoredDoc
from services.index.sink import FlushResult, build_sink
from services.stream.batches import SINK_MAX_WAIT_S, SINK_TAKE, run_batches
from services.stream.deadletter import parse_batch, reject
from services.stream.effects import until_durable
from services.stream.topics import Record, bytes_topic, deliver

log = logging.getLogger(__name__)


def rejected_records(settings: Settings, result: FlushResult,
                     by_id: dict[str, Message]) -> list[Record]:
    """DLQ records for the documents Elasticsearch refused for good (mapping errors...)."""
    return [reject(settings.topic_dlq, by_id[f.doc_id], "index_rejected",
                   f"HTTP {f.status} {f.error_type}: {f.reason}", "index")
            for f in result.failures if f.doc_id in by_id]


def register(app: faust.App, settings: Settings) -> None:
    topic = bytes_topic(app, settings.topic_docs_scored)

    @app.agent(topic, name="index")
    async def index(stream: faust.StreamT) -> None:
        sink = build_sink(settings)
        written = 0

        async def handle(events) -> int:
            docs, records = parse_batch(settings.topic_dlq, events, ScoredDoc, "index")
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
            await until_durable("index templates", sink.ensure_templates)
            written = await run_batches(stream, "index", handle, take=SINK_TAKE,
                                        within_s=SINK_MAX_WAIT_S, grace_s=settings.stop_grace_s)
        finally:
            log.info("index: %d documents written", written)
            await sink.es.close()
