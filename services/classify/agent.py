"""Classify agent: ``docs.clean`` micro-batches -> inference worker -> ``docs.scored``.

``stream.take_events(TAKE_DOCS, within=CLASSIFY_MAX_WAIT_S)`` collects a batch (the
time bound keeps a quiet stream's documents from waiting for company); the batch's texts go
to the :class:`~services.classify.scorer.Scorer` (the in-process inference worker, whose model
runs in a thread, off the event loop). Each document goes to the model of its language
(``lang`` tag, else script; ``services.classify.router``); scored documents carry the language
they were routed by, the language and version of the model that scored them, and a reason
when that was the fallback language's model. A text the model cannot score (or that no model
serves, with no fallback) is dead-lettered with the scorer's reason; the rest of its batch
goes on.
Before taking more from Kafka the agent waits for room in the worker's queue, so a saturated
model pauses consumption instead of buffering without bound. The batch's sends are awaited
until acknowledged before the next batch (= before Faust acks this one).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging

import faust

from models.lang import document_language
from services.classify.entities import entity_sentiment, mention_spans
from services.classify.scorer import ScoreError, Scorer
from services.classify.serve import open_scorer
from services.core.config import Settings
from services.core.schemas import CleanDoc, ScoredDoc, utcnow
from services.stream.batches import run_batches
from services.stream.deadletter import parse_batch, reject
from services.stream.effects import die, until_durable
from services.stream.topics import Record, bytes_topic, deliver, doc_key

log = logging.getLogger(__name__)


def doc_languages(docs: list[CleanDoc]) -> list[str]:
    """The language each document is routed by: its ``lang`` tag folded to the primary
    subtag, or its text's dominant script when the tag is empty or malformed."""
    return [document_language(d.lang, d.text) for d in docs]


def score_batch_records(settings: Settings, events, docs: list[CleanDoc | None],
                        results, scored_entities: list[list[str]] | None = None,
                        langs: list[str] | None = None) -> list[Record]:
    """docs.scored records for the parsed documents, DLQ records for the ones the model
    refused; ``results`` has one entry per non-None doc, in order, and so have
    ``scored_entities`` (the entities whose mention spans were submitted with it) and
    ``langs`` (the languages they were routed by; default :func:`doc_languages`)."""
    now = utcnow()
    records: list[Record] = []
    it = iter(results)
    ents_it = iter(scored_entities) if scored_entities is not None else None
    if langs is None:
        langs = doc_languages([d for d in docs if d is not None])
    lang_it = iter(langs)
    for ev, doc in zip(events, docs, strict=True):
        if doc is None:
            continue
        res = next(it)
        ents = next(ents_it) if ents_it is not None else []
        lang = next(lang_it)
        if isinstance(res, ScoreError):
            records.append(reject(settings.topic_dlq, ev.message, res.reason, res.message,
                                  "classify"))
            continue
        fields = doc.model_dump()
        fields["lang"] = lang
        scored = ScoredDoc(**fields, sentiment=res.to_sentiment(lang),
                           entity_sentiment=entity_sentiment(doc, res, ents), classified_at=now)
        records.append((settings.topic_docs_scored, doc_key(doc),
                        scored.model_dump_json().encode()))
    return records


# ``classify_actors`` actors share the process's one inference worker. Faust stops filling an
# actor's take while the actor works on its batch (waiting for the model, then for Kafka's
# acks), so with one or two actors the takes fall into lockstep with the model: each batch
# waits for the previous one and, under load, holds about a second of documents (p99
# produce->searchable 3.2-4.1 s at half load). With four, some actor is always taking while
# others wait, and the worker merges their submissions into its own batches (p99 2.5-2.7 s;
# bench/pipeline.py, docs/pipeline.md). Each actor acks only its own batch, so one partition's
# acks arrive out of order; services/stream/faust_commits.py keeps Faust from committing past
# an offset another actor still holds, so the overlap does not weaken the guarantee.
# Documents per take at most: the inference worker pipelines tokenisation and forward passes
# within one submission, so handing it many forward batches' worth at once keeps the model
# busy (measured: 50-62% -> 67% of the classifier's raw throughput when the take grew from
# 256 to 512 documents, bench/pipeline.py on the 2-core box; 1,024 since). A quiet stream's
# takes are cut by the time bound instead.
TAKE_DOCS = 1024
# Longest a document waits for its take to fill when the stream is quiet (at load takes fill
# by count): 50 ms, measured with the four actors above (docs/pipeline.md).
CLASSIFY_MAX_WAIT_S = 0.050


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
    topic = bytes_topic(app, settings.topic_docs_clean)
    shared = _SharedScorer(settings)

    async def handle(scorer: Scorer, events) -> None:
        docs, records = parse_batch(settings.topic_dlq, events, CleanDoc, "classify")
        parsed = [d for d in docs if d is not None]
        texts = [d.text for d in parsed]
        linked = [mention_spans(d) for d in parsed]
        spans = [s or None for _, s in linked]
        langs = doc_languages(parsed)
        try:
            results = await scorer.submit_many(texts, spans, langs) if texts else []
        except Exception as exc:  # noqa: BLE001 - per-item errors come back as values
            die("classify: scoring", exc)
            return
        records += score_batch_records(settings, events, docs, results, [e for e, _ in linked],
                                       langs)
        await until_durable("classify deliver", lambda r=records: deliver(app.producer, r))

    @app.agent(topic, name="classify", concurrency=settings.classify_actors)
    async def classify(stream: faust.StreamT) -> None:
        try:
            scorer = await shared.acquire()
        except Exception as exc:  # noqa: BLE001 - no model: nothing can be processed
            die("classify: loading the model", exc)
            return
        async def handle_counted(events) -> int:
            await handle(scorer, events)
            return 1

        batches = 0
        try:
            batches = await run_batches(stream, "classify", handle_counted, take=TAKE_DOCS,
                                        within_s=CLASSIFY_MAX_WAIT_S,
                                        grace_s=settings.stop_grace_s,
                                        after=lambda: scorer.wait_for_room(TAKE_DOCS))
        finally:
            log.info("classify: %d batches", batches)
            await shared.release()
