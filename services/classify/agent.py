"""Classify agent: ``docs.clean`` micro-batches -> inference worker -> ``docs.scored``.

``stream.take_events(TAKE_DOCS, within=classify_max_wait_ms)`` collects a batch (the
time bound keeps a quiet stream's documents from waiting for company); the batch's texts go
to the :class:`~services.classify.scorer.Scorer` (the in-process inference worker, whose model
runs in a thread, off the event loop). Scored documents carry the model version. A text the
model cannot score is dead-lettered with the scorer's reason; the rest of its batch goes on.
Before taking more from Kafka the agent waits for room in the worker's queue, so a saturated
model pauses consumption instead of buffering without bound. The batch's sends are awaited
until acknowledged before the next batch (= before Faust acks this one).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging

import faust
from pydantic import ValidationError

from services.app import raw_topic
from services.classify.scorer import ScoreError, Scorer
from services.core.config import Settings
from services.core.effects import die, finish_batch, until_durable
from services.core.schemas import CleanDoc, ScoredDoc, SourceRef, utcnow
from services.core.topics import Record, deliver, dlq_record
from services.ingest.agent import clean_key
from services.ingest.pipeline import dead_letter

log = logging.getLogger(__name__)


async def open_scorer(settings: Settings) -> tuple[Scorer, contextlib.AsyncExitStack]:
    """The inference worker serving the registry's production model (or ``model_path``), and
    the stack that stops it.

    Fails with ModelLoadError (whose message says how to get a model) when there is none:
    the product never falls back to an untrained head.
    """
    from services.classify.worker import open_inference_worker

    stack = contextlib.AsyncExitStack()
    try:
        worker = await stack.enter_async_context(open_inference_worker(settings))
    except BaseException:
        await stack.aclose()
        raise
    return worker, stack


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


# ``classify_actors`` actors share the process's one inference worker. Faust stops filling an
# actor's take while the actor works on its batch (waiting for the model, then for Kafka's
# acks), so with one or two actors the takes fall into lockstep with the model: each batch
# waits for the previous one and, under load, holds about a second of documents (p99
# produce->searchable 3.2-4.1 s at half load). With four, some actor is always taking while
# others wait, and the worker merges their submissions into its own batches (p99 2.5-2.7 s;
# bench/pipeline.py, docs/pipeline.md). Each actor acks only its own batch, so one partition's
# acks arrive out of order; services/core/faust_commits.py keeps Faust from committing past
# an offset another actor still holds, so the overlap does not weaken the guarantee.
# Documents per take at most: the inference worker pipelines tokenisation and forward passes
# within one submission, so handing it many forward batches' worth at once keeps the model
# busy (measured: 50-62% -> 67% of the classifier's raw throughput when the take grew from
# 256 to 512 documents, bench/pipeline.py on the 2-core box; 1,024 since). A quiet stream's
# takes are cut by the time bound instead.
TAKE_DOCS = 1024


class _SharedScorer:
    """One inference worker per process, opened by the first actor, closed by the last."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.lock = asyncio.Lock()
        self.scorer: Scorer | None = None
        self.stack: contextlib.AsyncExitStack | None = None
        self.users = 0

    async def acquire(self) -> Scorer:
        async with self.lock:
            if self.scorer is None:
                self.scorer, self.stack = await open_scorer(self.settings)
            self.users += 1
            return self.scorer

    async def release(self) -> None:
        async with self.lock:
            self.users -= 1
            if self.users == 0 and self.stack is not None:
                await self.stack.aclose()
                self.scorer = self.stack = None


def register(app: faust.App, settings: Settings) -> None:
    topic = raw_topic(app, settings.topic_docs_clean)
    shared = _SharedScorer(settings)

    async def handle(scorer: Scorer, events) -> None:
        docs, records = parse_batch(settings, events, CleanDoc, "classify")
        texts = [d.text for d in docs if d is not None]
        try:
            results = await scorer.submit_many(texts) if texts else []
        except Exception as exc:  # noqa: BLE001 - per-item errors come back as values
            die("classify: scoring", exc)
            return
        records += score_batch_records(settings, events, docs, results)
        await until_durable("classify deliver", lambda r=records: deliver(app.producer, r))

    @app.agent(topic, name="classify", concurrency=settings.classify_actors)
    async def classify(stream: faust.StreamT) -> None:
        try:
            scorer = await shared.acquire()
        except Exception as exc:  # noqa: BLE001 - no model: nothing can be processed
            die("classify: loading the model", exc)
            return
        batches = 0
        try:
            async for events in stream.take_events(TAKE_DOCS,
                                                   within=settings.classify_max_wait_ms / 1000):
                await finish_batch("classify", handle(scorer, events), settings.stop_grace_s)
                batches += 1
                await scorer.wait_for_room(TAKE_DOCS)
        finally:
            log.info("classify: %d batches", batches)
            await shared.release()
