"""Classify agent: ``docs.clean`` micro-batches -> inference worker -> ``docs.scored``.

``stream.take_events(classify_max_batch, within=classify_max_wait_ms)`` collects a batch (the
time bound keeps a quiet stream's documents from waiting for company); the batch's texts go
to the :class:`~services.classify.scorer.Scorer` (the in-process inference worker, whose model
runs in a thread, off the event loop). Scored documents carry the model version. A text the
model cannot score is dead-lettered with the scorer's reason; the rest of its batch goes on.
Before taking more from Kafka the agent waits for room in the worker's queue, so a saturated
model pauses consumption instead of buffering without bound. The batch's sends are awaited
until acknowledged before the next batch (= before Faust acks this one).
"""
from __future__ import annotations

import logging

import faust
from pydantic import ValidationError

from services.app import raw_topic
from services.classify.scorer import ScoreError, Scorer
from services.core.config import Settings
from services.core.effects import die, until_durable
from services.core.schemas import CleanDoc, ScoredDoc, SourceRef, utcnow
from services.core.topics import Record, deliver, dlq_record
from services.ingest.agent import clean_key
from services.ingest.pipeline import dead_letter

log = logging.getLogger(__name__)


async def open_scorer(settings: Settings) -> tuple[Scorer, list]:
    """The inference worker serving the registry's production model (or ``model_path``),
    and the things to stop when done.

    Fails with ModelLoadError (whose message says how to get a model) when there is none:
    the product never falls back to an untrained head.
    """
    from services.classify.model_watch import production_provider
    from services.classify.worker import InferenceWorker

    provider = await production_provider(settings.model_registry, settings.model_path,
                                         device=settings.device, backend=settings.classify_backend,
                                         poll_s=settings.model_poll_s)
    worker = InferenceWorker(provider, max_batch=settings.classify_max_batch,
                             max_tokens=settings.classify_max_tokens,
                             max_wait_ms=settings.classify_max_wait_ms,
                             queue_size=settings.classify_queue_size)
    await worker.start()
    return worker, [worker, provider]


def score_batch_records(settings: Settings, events, docs: list[CleanDoc | None],
                        results) -> list[Record]:
    now = utcnow()
    records: list[Record] = []
    it = iter(results)
    for ev, doc in zip(events, docs, strict=True):
        if doc is None:
            continue
        res = next(it)
        m = ev.message
        if isinstance(res, ScoreError):
            origin = SourceRef(topic=m.topic, partition=m.partition, offset=m.offset)
            dl = dead_letter(m.value, m.key, origin, res.reason, res.message, stage="classify")
            records.append(dlq_record(settings.topic_dlq, dl))
            continue
        scored = ScoredDoc(**doc.model_dump(), sentiment=res.to_sentiment(), classified_at=now)
        records.append((settings.topic_docs_scored, clean_key(doc),
                        scored.model_dump_json().encode()))
    return records


def parse_batch(settings: Settings, events, model, stage: str) -> tuple[list, list[Record]]:
    """Parse each event's value as ``model``; unparsable ones become DLQ records (None slot)."""
    docs: list = []
    dead: list[Record] = []
    for ev in events:
        m = ev.message
        try:
            docs.append(model.model_validate_json(m.value))
        except (ValidationError, ValueError, TypeError) as exc:
            origin = SourceRef(topic=m.topic, partition=m.partition, offset=m.offset)
            dl = dead_letter(m.value, m.key, origin, "schema", f"not a {model.__name__}: {exc}",
                             stage=stage)
            dead.append(dlq_record(settings.topic_dlq, dl))
            docs.append(None)
    return docs, dead


def register(app: faust.App, settings: Settings) -> None:
    topic = raw_topic(app, settings.topic_docs_clean)

    @app.agent(topic, name="classify")
    async def classify(stream: faust.StreamT) -> None:
        try:
            scorer, closers = await open_scorer(settings)
        except Exception as exc:  # noqa: BLE001 - no model: nothing can be processed
            die("classify: loading the model", exc)
            return
        batches = 0
        try:
            async for events in stream.take_events(settings.classify_max_batch,
                                                   within=settings.classify_max_wait_ms / 1000):
                docs, records = parse_batch(settings, events, CleanDoc, "classify")
                texts = [d.text for d in docs if d is not None]
                try:
                    results = await scorer.submit_many(texts) if texts else []
                except Exception as exc:  # noqa: BLE001 - per-item errors come back as values
                    die("classify: scoring", exc)
                    return
                records += score_batch_records(settings, events, docs, results)
                await until_durable("classify deliver", lambda r=records: deliver(app.producer, r))
                batches += 1
                await scorer.wait_for_room(settings.classify_max_batch)
        finally:
            log.info("classify: %d batches", batches)
            for c in closers:
                stop = getattr(c, "stop", None)
                if stop is not None:
                    await stop()
