"""What happens to one cut batch: collate, forward (isolating poison rows), results.

The forward thread runs :func:`forward_batch` and nothing else, so the device starts the
next batch as soon as it is free; the finisher thread runs :func:`finish_batch` (per-item
result objects cost Python time that would otherwise sit between two forward passes).
Neither touches the worker's loop-side state: the forward phase leaves its output on the
batch, the finish phase writes into the callers' result lists, and the loop resolves the
futures afterwards.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from models.sentiment import Encoded, SentimentModel
from services.classify.encoding import FastEncoder
from services.classify.metrics import ClassifyMetrics
from services.classify.runners import Runner
from services.classify.scorer import EntityScore, EntitySpans, Result, Scored, ScoreError
from services.core.errors import ModelError

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Request:
    """One ``submit_many`` call: answered by one future once its last row is scored."""

    results: list[Result | None]
    future: asyncio.Future[list[Result]]
    remaining: int
    started: float


@dataclass(eq=False)
class Chunk:
    """Up to ``chunk_size`` items of one request, tokenised together."""

    request: Request
    positions: np.ndarray  # index of each row in request.results
    texts: list[str]
    spans: list[EntitySpans | None] | None = None  # per row; None: no row has entity spans
    tok_key: str = ""  # which tokenisation produced the arrays (see tokenizer_key)
    ids: np.ndarray | None = None  # [n, width] padded token ids
    lengths: np.ndarray | None = None  # int32 [n]
    truncated: np.ndarray | None = None  # bool [n]
    error: str | None = None  # the whole chunk failed to tokenise (rows retried one by one)
    cid: int = -1
    outstanding: int = 0  # rows not yet scored


@dataclass(eq=False)
class Batch:
    chunks: list[Chunk]
    rows: list[np.ndarray]  # per chunk: rows of that chunk in this batch
    lengths: np.ndarray
    arrivals: np.ndarray
    completed: list[Request] = field(default_factory=list)
    version: str = ""
    out: tuple | None = None  # forward phase -> finish phase
    forward_s: float = 0.0


def forward_batch(batch: Batch, model: SentimentModel, key: str, encoder: FastEncoder,
                  runner: Runner, metrics: ClassifyMetrics) -> None:
    """Forward thread: collate and run the model, bisecting on failure; the output waits
    on ``batch.out`` for :func:`finish_batch`. When the model has an entity head and some
    row of the batch came with entity spans, the same single forward pass also returns the
    last hidden states (only then: other batches cost what they did)."""
    ids, lengths, truncated, bad = collate(batch, key, model, encoder, runner.pad_to)
    ok = np.flatnonzero(bad == None)  # noqa: E711  (object array of errors)
    probs: np.ndarray | None = None
    hidden: np.ndarray | None = None
    errors: list[ScoreError | None] = []
    spans = None
    if getattr(model, "entity_head", None) is not None and any(
            c.spans is not None for c in batch.chunks):
        spans = batch_spans(batch)
        if not any(spans):
            spans = None
    if len(ok):
        probs, errors, hidden = forward_isolating(runner, ids[ok], lengths[ok], metrics,
                                                  top=True, hidden=spans is not None)
    batch.out = (model, lengths, truncated, bad, ok, probs, errors, hidden, spans)


def batch_spans(batch: Batch) -> list[EntitySpans | None]:
    """Per row of the batch (collate order): the entity spans it was submitted with."""
    out: list[EntitySpans | None] = []
    for chunk, rows in zip(batch.chunks, batch.rows, strict=True):
        if chunk.spans is None:
            out.extend([None] * len(rows))
        else:
            out.extend(chunk.spans[r] for r in rows.tolist())
    return out


def batch_texts(batch: Batch) -> list[str]:
    return [chunk.texts[r] for chunk, rows in zip(batch.chunks, batch.rows, strict=True)
            for r in rows.tolist()]


@dataclass
class PendingEntities:
    """One document's per-entity probabilities between the head and the pair step."""

    text: str
    spans: EntitySpans
    doc_probs: np.ndarray
    probs: np.ndarray
    read: np.ndarray  # the entity's own reading decided it (else: the document's label)

    def scores(self, labels: Sequence[str]) -> tuple[EntityScore, ...]:
        top = self.probs.argmax(1).tolist()
        return tuple(EntityScore(labels[top[k]], dict(zip(labels, self.probs[k].tolist(),
                                                          strict=True)), bool(self.read[k]))
                     for k in range(len(self.probs)))


def head_entity_scores(model: SentimentModel, text: str, spans: EntitySpans,
                       hidden_row: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """(per-entity probabilities, read) from the document's hidden states (entity head)."""
    sets = model.entity_token_sets(text, spans)
    probs = np.asarray(model.entity_probs(hidden_row, length, sets), dtype=np.float32)
    return probs, np.array([len(x) > 0 for x in sets], dtype=bool)


def revise_with_pair(model: SentimentModel, docs: list[PendingEntities],
                     metrics: ClassifyMetrics | None = None) -> None:
    """When the model ships an entity pair model (``models.sentiment.entity_pair``), its
    revision of the head's scores, for all ``docs`` in one batched call: which entities a
    likely-negative text is about (zh), or each entity's own label when the text names two
    or more (en). On failure the head's scores stand (``entity_pair_error`` per document)."""
    pair = getattr(model, "entity_pair", None)
    if pair is None or not docs:
        return
    try:
        got = pair.score_documents([(d.text, d.spans, d.doc_probs, d.probs) for d in docs],
                                   model.labels)
        revised = [(np.asarray(probs, dtype=np.float32), decided) for probs, decided in got]
        if len(revised) != len(docs):
            raise ModelError(f"pair model answered {len(revised)} of {len(docs)} documents")
    except Exception:
        log.exception("entity pair scoring failed for %d document(s)", len(docs))
        if metrics is not None:
            metrics.item_errors.labels(reason="entity_pair_error").inc(len(docs))
        return
    for d, (probs, decided) in zip(docs, revised, strict=True):
        d.probs = probs
        d.read[decided] = True  # past max_length too: the rule decided it, as in evaluation


def finish_batch(batch: Batch, metrics: ClassifyMetrics) -> tuple[int, int]:
    """Finisher thread: per-item results, scattered into the callers' lists; requests whose
    last row this was go to ``batch.completed``. Returns (real, padded) token slots. Rows
    with entity spans get their per-entity scores here (a second tokenisation with offsets
    and the entity head on the hidden states), off the forward thread."""
    assert batch.out is not None
    model, lengths, truncated, bad, ok, probs, errors, hidden, spans = batch.out
    n = len(lengths)
    results: list[Result] = list(bad)
    real = slots = 0
    if len(ok):
        labels, version = model.labels, model.version
        language = model.config.language
        top = probs.argmax(1).tolist()
        rows = probs.tolist()
        trunc = truncated[ok].tolist()
        texts = batch_texts(batch) if hidden is not None else None
        pending: dict[int, PendingEntities] = {}
        for j, i in enumerate(ok.tolist()):
            err = errors[j]
            if err is not None:
                results[i] = err
                continue
            if hidden is not None and spans is not None and spans[i]:
                try:
                    pending[i] = PendingEntities(
                        texts[i], spans[i], probs[j],  # type: ignore[index]
                        *head_entity_scores(model, texts[i], spans[i], hidden[j],  # type: ignore[index]
                                            int(lengths[i])))
                except Exception:  # the document's own score still stands
                    log.exception("entity scoring failed for one document")
                    metrics.item_errors.labels(reason="entity_error").inc()
            results[i] = Scored(labels[top[j]], dict(zip(labels, rows[j], strict=True)),
                                version, trunc[j], (), language)
        revise_with_pair(model, list(pending.values()), metrics)  # one call for the batch
        for i, d in pending.items():
            try:
                results[i] = dataclasses.replace(results[i], entities=d.scores(labels))
            except Exception:  # the document's own score still stands
                log.exception("entity scoring failed for one document")
                metrics.item_errors.labels(reason="entity_error").inc()
        real, slots = int(lengths[ok].sum()), len(ok) * int(lengths[ok].max())
        metrics.padding_ratio.observe(1.0 - real / slots)
        metrics.batch_tokens.observe(slots)
    for r in results:
        if isinstance(r, ScoreError):
            metrics.item_errors.labels(reason=r.reason).inc()
    k = 0
    for chunk, rows_ in zip(batch.chunks, batch.rows, strict=True):
        req = chunk.request
        out = req.results
        for p in chunk.positions[rows_].tolist():
            out[p] = results[k]
            k += 1
        req.remaining -= len(rows_)
        if req.remaining == 0:
            batch.completed.append(req)
    batch.version = model.version
    batch.out = None
    metrics.batch_size.observe(n)
    metrics.batch_latency.observe(batch.forward_s)
    metrics.sequences.inc(n)
    if batch.forward_s > 0:
        metrics.sequences_per_s.set(n / batch.forward_s)
    return real, slots


def collate(
    batch: Batch, key: str, model: SentimentModel, encoder: FastEncoder, pad_to: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Gather the batch's rows into one padded array (re-tokenising rows that another
    tokenisation produced, i.e. after a swap to a model with a different tokenizer).
    Returns ids, lengths, truncated and per-row input errors."""
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for chunk, rows in zip(batch.chunks, batch.rows, strict=True):
        assert chunk.ids is not None and chunk.lengths is not None
        if chunk.tok_key != key or chunk.error is not None:
            e = encode_rows(encoder, [chunk.texts[r] for r in rows.tolist()])
            parts.append((e.input_ids, e.lengths, e.truncated))
        else:
            assert chunk.truncated is not None
            parts.append((chunk.ids[rows], chunk.lengths[rows], chunk.truncated[rows]))
    lengths = np.concatenate([p[1] for p in parts])
    truncated = np.concatenate([p[2] for p in parts])
    width = max(int(lengths.max()), 1)
    if pad_to > 1:
        width = min(-(-width // pad_to) * pad_to, max(width, model.max_length))
    ids = np.full((len(lengths), width), encoder.pad_id, dtype=np.int64)
    k = 0
    for p_ids, p_len, _ in parts:
        w = min(p_ids.shape[1], width)
        ids[k : k + len(p_len), :w] = p_ids[:, :w]
        k += len(p_len)
    bad = np.full(len(lengths), None, dtype=object)
    empty = lengths <= encoder.n_special
    for i in np.flatnonzero(empty).tolist():
        bad[i] = ScoreError("empty_text", "nothing left after normalisation to classify")
    failed = lengths < 0  # rows whose tokenisation failed on their own (see encode_rows)
    for i in np.flatnonzero(failed).tolist():
        bad[i] = ScoreError("classify_error", "tokenisation failed for this text")
    lengths = np.maximum(lengths, 1)
    return ids, lengths, truncated, bad


def encode_rows(encoder: FastEncoder, texts: list[str]) -> Encoded:
    """Tokenise ``texts``; if the batch call fails, one by one, so a text the tokenizer
    cannot take gets length -1 (an item error in :func:`collate`) and the rest still run."""
    try:
        return encoder.encode(texts)
    except Exception:
        parts = []
        for t in texts:
            try:
                parts.append(encoder.encode([t]))
            except Exception:
                log.exception("tokenising one text failed")
                parts.append(Encoded(np.zeros((1, 1), np.int64), np.zeros((1, 1), np.int64),
                                     np.full(1, -1, np.int32), np.zeros(1, bool)))
        width = max(p.input_ids.shape[1] for p in parts)
        ids = np.zeros((len(parts), width), np.int64)
        for i, p in enumerate(parts):
            ids[i, : p.input_ids.shape[1]] = p.input_ids[0]
        lengths = np.concatenate([p.lengths for p in parts])
        mask = (np.arange(width)[None, :] < lengths[:, None]).astype(np.int64)
        return Encoded(ids, mask, lengths, np.concatenate([p.truncated for p in parts]))


def forward_isolating(
    runner: Runner, ids: np.ndarray, lengths: np.ndarray, metrics: ClassifyMetrics,
    top: bool = False, hidden: bool = False,
) -> tuple[np.ndarray, list[ScoreError | None], np.ndarray | None]:
    """Probabilities for every row (and, with ``hidden``, the last hidden states from the
    same pass; else None); rows that make the model raise, or produce NaN/inf, get a
    ScoreError instead (found by bisection, so one poison item costs log2(n) extra forwards
    and its neighbours still score). If *every* row of a multi-row batch fails on its own,
    the fault is not in the data: raise, and the callers retry."""
    n = len(lengths)
    states: np.ndarray | None = None
    try:
        x = trim(ids, lengths, runner.pad_to)
        if hidden:
            p, h = runner.with_hidden(x, lengths)
            probs, states = np.asarray(p, dtype=np.float32), np.asarray(h, dtype=np.float32)
        else:
            probs = np.asarray(runner(x, lengths), dtype=np.float32)
        errors: list[ScoreError | None] = [None] * n
    except Exception as e:
        if n == 1:
            log.warning("one item failed in the forward pass: %s", e)
            return (np.zeros((1, 1), np.float32),
                    [ScoreError("classify_error", f"{type(e).__name__}: {e}")], None)
        metrics.batch_failures.inc()
        mid = n // 2
        p1, e1, h1 = forward_isolating(runner, ids[:mid], lengths[:mid], metrics, hidden=hidden)
        p2, e2, h2 = forward_isolating(runner, ids[mid:], lengths[mid:], metrics, hidden=hidden)
        errors = e1 + e2
        if top and all(x is not None for x in errors):
            raise ModelError(f"every item of a batch of {n} failed: {e}") from e
        width = max(p1.shape[1], p2.shape[1])
        probs = np.zeros((n, width), np.float32)
        probs[:mid, : p1.shape[1]] = p1
        probs[mid:, : p2.shape[1]] = p2
        return probs, errors, _stack_hidden(h1, h2, mid, n)
    finite: np.ndarray = np.asarray(np.isfinite(probs).all(axis=1))
    if not finite.all():
        for i in np.flatnonzero(~finite).tolist():
            errors[i] = ScoreError("non_finite_output", "the model produced NaN/inf here")
        probs = np.where(finite[:, None], probs, 0.0).astype(np.float32)
    return probs, errors, states


def _stack_hidden(h1: np.ndarray | None, h2: np.ndarray | None, mid: int,
                  n: int) -> np.ndarray | None:
    """The two halves' hidden states as one [n, L, H] array (a failed half: zeros)."""
    parts = [h for h in (h1, h2) if h is not None]
    if not parts:
        return None
    width = max(h.shape[1] for h in parts)
    out = np.zeros((n, width, parts[0].shape[2]), np.float32)
    if h1 is not None:
        out[:mid, : h1.shape[1]] = h1
    if h2 is not None:
        out[mid:, : h2.shape[1]] = h2
    return out


def trim(ids: np.ndarray, lengths: np.ndarray, pad_to: int) -> np.ndarray:
    """Drop padding columns no row needs (after bisection a half may be much shorter)."""
    width = max(int(lengths.max()), 1)
    width = min(-(-width // pad_to) * pad_to, ids.shape[1])
    return ids if width == ids.shape[1] else np.ascontiguousarray(ids[:, :width])
