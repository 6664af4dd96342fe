"""The inference worker: an asyncio dynamic batcher feeding the forward thread(s).

Flow of one ``submit_many`` call (the classify agent's micro-batch)::

    event loop           tokenizer threads/processes    pending pool       forward thread
    submit_many ─chunks─▶ FastEncoder.encode ─────────▶ (length, arrival) ─▶ collate + model
      ▲ waits for room                                   plan_batches          │ probs
      │                                                  (batcher.py)          ▼
      └──── one future per call, resolved when its last item is done ◀── finisher thread
                                                                         (results, scatter)

Why this shape:

* **The loop only coordinates.** Tokenisation runs in a thread pool (the Rust tokenizer
  releases the GIL) or, on many-core GPU hosts, a process pool; the model runs in
  dedicated forward threads (one on CUDA; on CPU one per core by default, each batch on a
  share of the cores: see ``cpu_parallelism``) that do nothing else (the model code
  releases the GIL), and a finisher thread builds the per-item results, so the device
  starts the next batch at once and the Faust consumer on the loop keeps heartbeating and
  fetching while a batch runs.
* **Tokenise before batching.** Token lengths are known before the batch is cut, so batches
  are length-bucketed under exact token budgets, and tokenising batch *k+1* overlaps the
  forward pass of batch *k*.
* **Pull, not push; work-conserving.** Batches are cut only when a forward slot is free
  (``pipeline_depth``: one per forward thread on CPU, 2 on CUDA), so while the device is
  busy the pending pool grows and the next cut is better bucketed; when no batch runs and
  nothing is being tokenised, whatever is pending goes at once (``max_wait`` only bounds
  how long a partial batch may wait behind a running one).
* **Bounded, never dropping.** ``queue_size`` bounds items in flight. ``wait_for_room``
  (and ``submit_many`` itself) waits while it is full; the agent awaits it before taking
  more messages, which pauses Kafka consumption instead of dropping anything.
* **One future per call, not per item**: per-item asyncio objects would cost more than the
  model at GPU speeds.
* **Poison isolation.** A batch that raises is bisected down to the failing item(s); those
  get a :class:`ScoreError` and the rest their scores. Input errors (not a string, nothing
  left after normalisation) are per-item errors from the start.
* **Hot swap between batches.** The forward thread asks the provider for the current model
  once per batch; items tokenised by a previous model's tokenizer are re-tokenised, so a
  swap neither drops nor double-scores anything and every result carries its version.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from multiprocessing import get_context

import numpy as np

from models.sentiment import Encoded, SentimentModel
from services.classify.batcher import BatchLimits, plan_batches
from services.classify.encoding import (
    FastEncoder,
    process_encode,
    process_init,
    tokenizer_key,
)
from services.classify.metrics import ClassifyMetrics, classify_metrics
from services.classify.model_watch import (
    ModelProvider,
    ModelWatcher,
    StaticModel,
    production_provider,
)
from services.classify.runners import Runner, make_runner, warm_up
from services.classify.scorer import Result, Scored, ScoreError
from services.core.config import Settings
from services.core.errors import ModelError

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Request:
    results: list[Result | None]
    future: asyncio.Future[list[Result]]
    remaining: int
    started: float


@dataclass(eq=False)
class _Chunk:
    """Up to ``chunk_size`` items of one request, tokenised together."""

    request: _Request
    positions: np.ndarray  # index of each row in request.results
    texts: list[str]
    tok_key: str = ""  # which tokenisation produced the arrays (see tokenizer_key)
    ids: np.ndarray | None = None  # [n, width] padded token ids
    lengths: np.ndarray | None = None  # int32 [n]
    truncated: np.ndarray | None = None  # bool [n]
    error: str | None = None  # the whole chunk failed to tokenise (rows retried one by one)
    cid: int = -1
    outstanding: int = 0  # rows not yet scored


@dataclass(eq=False)
class _Batch:
    chunks: list[_Chunk]
    rows: list[np.ndarray]  # per chunk: rows of that chunk in this batch
    lengths: np.ndarray
    arrivals: np.ndarray
    completed: list[_Request] = field(default_factory=list)
    version: str = ""
    out: tuple | None = None  # forward phase -> finish phase
    forward_s: float = 0.0


class InferenceWorker:
    """In-process :class:`~services.classify.scorer.Scorer`; see the module docstring."""

    def __init__(
        self,
        model_provider: ModelProvider | SentimentModel,
        *,
        max_batch: int = 256,
        max_tokens: int = 16_384,
        max_wait_ms: float = 50.0,
        queue_size: int = 4096,
        tokenizer_threads: int = 2,
        tokenizer_processes: int = 0,
        pipeline_depth: int | None = None,
        forward_threads: int = 1,
        chunk_size: int = 512,
        cache_size: int = 50_000,
        min_fill: float = 0.9,
        max_padding: float = 0.35,
        compile_mode: str | None = None,
        metrics: ClassifyMetrics | None = None,
    ) -> None:
        if isinstance(model_provider, SentimentModel):
            model_provider = StaticModel(model_provider)
        self.provider = model_provider
        self.limits = BatchLimits(max_batch, max_tokens, max_wait_ms / 1000.0, min_fill,
                                  max_padding)
        self.queue_size = max(1, queue_size)
        self.chunk_size = max(1, min(chunk_size, self.queue_size))
        self._depth_option = pipeline_depth
        self.pipeline_depth = 1
        self.forward_threads = max(1, forward_threads)
        self._runner_lock = threading.Lock()  # one runner build per model, whichever thread
        self.tokenizer_threads = max(1, tokenizer_threads)
        self.tokenizer_processes = max(0, tokenizer_processes)
        self.cache_size = cache_size
        self.compile_mode = compile_mode
        self.metrics = metrics or classify_metrics()
        self.metrics.queue_capacity.set(self.queue_size)
        # per-model helpers, built lazily and kept for the current and previous model:
        # model -> (model, tokenizer key, encoder, runner)
        self._helpers: dict[int, tuple[SentimentModel, str, FastEncoder, Runner | None]] = {}
        self._proc_pool: ProcessPoolExecutor | None = None
        self._proc_key = ""
        self._helpers_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tok_pool: ThreadPoolExecutor | None = None
        self._fwd_pool: ThreadPoolExecutor | None = None
        self._fin_pool: ThreadPoolExecutor | None = None
        # pending pool (loop thread only)
        self._p_len = np.zeros(0, dtype=np.int32)
        self._p_arr = np.zeros(0, dtype=np.float64)
        self._p_chunk = np.zeros(0, dtype=np.int64)
        self._p_row = np.zeros(0, dtype=np.int32)
        self._chunks: dict[int, _Chunk] = {}
        self._next_chunk = 0
        self._queued = 0
        self._tokenizing = 0
        self._inflight = 0
        self._pump_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._room_waiters: list[asyncio.Future[None]] = []
        self._live: set[_Request] = set()  # calls not answered yet
        self._stopping = False
        self._drained = asyncio.Event()
        self.batches = 0
        self.max_inflight = 0  # most batches in the forward threads at once
        self.scored = 0
        self.real_tokens = 0  # token slots holding text / all slots fed to the model
        self.padded_tokens = 0

    # ---- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._tok_pool = ThreadPoolExecutor(self.tokenizer_threads, thread_name_prefix="yuqing-tok")
        self._fwd_pool = ThreadPoolExecutor(self.forward_threads,
                                            thread_name_prefix="yuqing-forward")
        self._fin_pool = ThreadPoolExecutor(1, thread_name_prefix="yuqing-finish")
        model = self.provider.current()
        if self.tokenizer_processes:
            key, _ = self._helpers_for(model, with_runner=False)[:2]
            self._ensure_processes(model, key)
            await asyncio.gather(*(  # spawn them now, not on the first real chunk
                self._loop.run_in_executor(self._proc_pool, process_encode, key, ["warm-up"])
                for _ in range(self.tokenizer_processes)))
        if self._depth_option is not None:
            self.pipeline_depth = max(1, self._depth_option)
        else:  # CPU: cut a batch only when a forward thread is free (best bucketing; the
            # hand-off costs ~0.1 ms against 10-1000 ms batches). CUDA: keep one queued so
            # the GPU never waits for the loop.
            self.pipeline_depth = 2 if model.device.type == "cuda" else self.forward_threads
        await self._loop.run_in_executor(self._fwd_pool, self._prepare_model, model)

    async def stop(self, grace_s: float = 30.0) -> None:
        """Finish what was submitted (up to ``grace_s``), then release the threads. Calls
        still waiting afterwards fail with ModelError, so their offsets are not committed."""
        self._stopping = True
        self._schedule_pump()
        if self._queued:
            self._drained.clear()
            try:
                async with asyncio.timeout(grace_s):
                    await self._drained.wait()
            except TimeoutError:
                log.error("stopping with %d items unscored after %.0fs", self._queued, grace_s)
        for req in list(self._live):
            if not req.future.done():
                req.future.set_exception(ModelError("inference worker stopped"))
        for w in self._room_waiters:
            if not w.done():
                w.set_result(None)
        if self._timer is not None:
            self._timer.cancel()
        for pool in (self._tok_pool, self._fwd_pool, self._fin_pool, self._proc_pool):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)

    async def __aenter__(self) -> InferenceWorker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- the Scorer API -----------------------------------------------------------------
    @property
    def queue_depth(self) -> int:
        return self._queued

    @property
    def queue_full(self) -> bool:
        return self._queued >= self.queue_size

    async def wait_for_room(self, n: int = 1) -> None:
        n = max(1, min(n, self.queue_size))
        if self._queued + n <= self.queue_size:
            return
        self.metrics.backpressure_waits.inc()
        while self._queued + n > self.queue_size and not self._stopping:
            fut = asyncio.get_running_loop().create_future()
            self._room_waiters.append(fut)
            await fut

    async def submit_many(self, texts: Sequence[str]) -> list[Result]:
        if self._loop is None or self._tok_pool is None:
            raise RuntimeError("InferenceWorker.start() was not awaited")
        if self._stopping:
            raise ModelError("inference worker is stopping")
        n = len(texts)
        if n == 0:
            return []
        loop = self._loop
        results: list[Result | None] = [None] * n
        valid = [i for i, t in enumerate(texts) if isinstance(t, str)]
        if len(valid) < n:
            for i in set(range(n)).difference(valid):
                kind = type(texts[i]).__name__
                results[i] = ScoreError("not_text", f"expected a string, got {kind}")
                self.metrics.item_errors.labels(reason="not_text").inc()
        req = _Request(results, loop.create_future(), len(valid), time.perf_counter())
        if not valid:
            return results  # type: ignore[return-value]
        self._live.add(req)
        req.future.add_done_callback(lambda _f, r=req: self._live.discard(r))
        all_valid = len(valid) == n
        for s in range(0, len(valid), self.chunk_size):
            part = valid[s : s + self.chunk_size]
            await self.wait_for_room(len(part))
            if self._stopping:
                raise ModelError("inference worker is stopping")
            pos = np.arange(s, s + len(part)) if all_valid else np.asarray(part)
            part_texts = list(texts[s : s + len(part)]) if all_valid else [texts[i] for i in part]
            chunk = _Chunk(req, pos, part_texts)
            self._queued += len(part)
            self._tokenizing += 1
            self.metrics.queue_depth.set(self._queued)
            self._schedule_tokenize(chunk)
        return await req.future  # type: ignore[return-value]

    # ---- per-model helpers (any thread) ------------------------------------------------
    def _helpers_for(
        self, model: SentimentModel, with_runner: bool
    ) -> tuple[str, FastEncoder, Runner | None]:
        """(tokenizer key, encoder, runner) for ``model``, built once per model."""
        key = id(model)
        with self._helpers_lock:
            got = self._helpers.get(key)
        if got is None or got[0] is not model:
            fresh = (model, tokenizer_key(model), FastEncoder(model, self.cache_size), None)
            with self._helpers_lock:  # another thread may have added it meanwhile: keep theirs
                got = self._helpers.get(key)
                if got is None or got[0] is not model:
                    got = self._helpers[key] = fresh
                    if len(self._helpers) > 2:  # keep current + previous only
                        for k in list(self._helpers)[:-2]:
                            del self._helpers[k]
        if with_runner and got[3] is None:  # forward threads only; built once per model
            with self._runner_lock:
                with self._helpers_lock:
                    got = self._helpers.get(key, got)
                if got[3] is None:
                    runner = make_runner(model, compile_mode=self.compile_mode)
                    if model.device.type == "cuda":
                        warm_up(runner, self.limits.max_batch, model.max_length)
                    got = (model, got[1], got[2], runner)
                    with self._helpers_lock:
                        self._helpers[key] = got
        return got[1], got[2], got[3]

    def _prepare_model(self, model: SentimentModel) -> None:
        """Build (and on CUDA warm up) encoder and runner before the first batch."""
        _, _, runner = self._helpers_for(model, with_runner=True)
        assert runner is not None
        runner(np.full((2, 8), 1000, dtype=np.int64), np.full(2, 8, dtype=np.int32))

    # ---- tokenisation (tokenizer threads or processes) ---------------------------------
    def _schedule_tokenize(self, chunk: _Chunk) -> None:
        loop = self._loop
        assert loop is not None
        if self.tokenizer_processes:
            model = self.provider.current()
            key = self._key_of(model)
            if key is not None:  # known tokenisation: ship the texts to a process
                self._ensure_processes(model, key)
                chunk.tok_key = key
                fut = loop.run_in_executor(self._proc_pool, process_encode, key, chunk.texts)
                fut.add_done_callback(lambda f, c=chunk: self._chunk_ready(c, f))
                return
        fut = loop.run_in_executor(self._tok_pool, self._tokenize, chunk)
        fut.add_done_callback(lambda f, c=chunk: self._chunk_ready(c, f))

    def _key_of(self, model: SentimentModel) -> str | None:
        got = self._helpers.get(id(model))
        return got[1] if got is not None and got[0] is model else None

    def _ensure_processes(self, model: SentimentModel, key: str) -> None:
        """One process pool per tokenisation; a swap to a model with another tokenizer
        replaces the pool (the old one finishes its queued chunks first)."""
        if self._proc_pool is not None and self._proc_key == key:
            return
        if self._proc_pool is not None:
            self._proc_pool.shutdown(wait=False)
        te = model.text_encoder
        self._proc_pool = ProcessPoolExecutor(
            self.tokenizer_processes, mp_context=get_context("spawn"), initializer=process_init,
            initargs=(key, te.tokenizer.to_str(), te.max_length, self.cache_size))
        self._proc_key = key

    def _tokenize(self, chunk: _Chunk) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        model = self.provider.current()
        key, encoder, _ = self._helpers_for(model, with_runner=False)
        chunk.tok_key = key
        enc, hits = encoder.encode_counted(chunk.texts)
        return enc.input_ids, enc.lengths, enc.truncated, hits

    def _chunk_ready(self, chunk: _Chunk, fut: asyncio.Future) -> None:
        self._tokenizing -= 1
        n = len(chunk.texts)
        if fut.cancelled() or fut.exception() is not None:
            # never expected: the forward thread re-tokenises these rows one by one
            err = "cancelled" if fut.cancelled() else repr(fut.exception())
            log.error("tokenising a chunk of %d items failed: %s", n, err)
            chunk.error = err
            chunk.ids = np.zeros((n, 1), np.int64)
            chunk.lengths = np.ones(n, np.int32)
            chunk.truncated = np.zeros(n, bool)
        else:
            chunk.ids, chunk.lengths, chunk.truncated, hits = fut.result()
            if hits:
                self.metrics.cache_hits.inc(hits)
        cid = self._next_chunk
        self._next_chunk += 1
        self._chunks[cid] = chunk
        chunk.cid, chunk.outstanding = cid, n
        now = self._loop.time()  # type: ignore[union-attr]
        self._p_len = np.concatenate((self._p_len, chunk.lengths))
        self._p_arr = np.concatenate((self._p_arr, np.full(n, now)))
        self._p_chunk = np.concatenate((self._p_chunk, np.full(n, cid, dtype=np.int64)))
        self._p_row = np.concatenate((self._p_row, np.arange(n, dtype=np.int32)))
        self._schedule_pump()

    # ---- batching (event loop) ---------------------------------------------------------
    def _schedule_pump(self) -> None:
        if not self._pump_scheduled and self._loop is not None:
            self._pump_scheduled = True
            self._loop.call_soon(self._pump)

    def _pump(self) -> None:
        self._pump_scheduled = False
        loop = self._loop
        assert loop is not None and self._fwd_pool is not None
        free = self.pipeline_depth - self._inflight
        if free <= 0 or len(self._p_len) == 0:
            return
        now = loop.time()
        # Work-conserving: an idle model with nothing more being tokenised takes what is
        # pending now (a lone agent awaiting its micro-batch must not wait max_wait for
        # company that cannot come). While any batch runs, partial batches wait (at most
        # max_wait) to fill: with several CPU forward threads a free one could start a small
        # batch at once, but on a host shared with the stream stages fuller batches cost less
        # CPU per text, and that is what holds latency down under load (pipeline benchmark).
        flush = self._stopping or (self._inflight == 0 and self._tokenizing == 0)
        batches = plan_batches(self._p_len, self._p_arr, now, self.limits,
                               flush=flush, max_batches=free)
        if batches:
            taken = np.zeros(len(self._p_len), dtype=bool)
            for idx in batches:
                taken[idx] = True
                batch = self._make_batch(idx)
                self._inflight += 1
                self.max_inflight = max(self.max_inflight, self._inflight)
                fut = loop.run_in_executor(self._fwd_pool, self._forward_phase, batch)
                fut.add_done_callback(lambda f, b=batch: self._forward_done(b, f))
            keep = ~taken
            self._p_len, self._p_arr = self._p_len[keep], self._p_arr[keep]
            self._p_chunk, self._p_row = self._p_chunk[keep], self._p_row[keep]
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if len(self._p_len) and self._inflight < self.pipeline_depth:
            due = float(self._p_arr.min()) + self.limits.max_wait_s
            self._timer = loop.call_at(due, self._schedule_pump)

    def _make_batch(self, idx: np.ndarray) -> _Batch:
        cids = self._p_chunk[idx]
        rows = self._p_row[idx]
        order = np.argsort(cids, kind="stable")
        cids, rows = cids[order], rows[order]
        bounds = np.flatnonzero(np.diff(cids)) + 1
        chunks, row_groups = [], []
        for group_c, group_r in zip(np.split(cids, bounds), np.split(rows, bounds), strict=True):
            chunks.append(self._chunks[int(group_c[0])])
            row_groups.append(group_r)
        return _Batch(chunks, row_groups, self._p_len[idx][order], self._p_arr[idx][order])

    def _forward_done(self, batch: _Batch, fut: asyncio.Future[None]) -> None:
        self._inflight -= 1  # the device is free: cut the next batch now
        if fut.cancelled() or fut.exception() is not None:
            self._batch_done(batch, fut)
        else:
            fin = self._loop.run_in_executor(  # type: ignore[union-attr]
                self._fin_pool, self._finish_phase, batch)
            fin.add_done_callback(lambda f, b=batch: self._batch_done(b, f))
        self._schedule_pump()

    def _batch_done(self, batch: _Batch, fut: asyncio.Future[None]) -> None:
        n = len(batch.lengths)
        self._queued -= n
        exc = None if fut.cancelled() else fut.exception()
        if exc is not None or fut.cancelled():  # systemic failure: callers retry, nothing is DLQed
            err = exc if exc is not None else ModelError("batch cancelled")
            log.error("inference batch of %d failed as a whole: %s", n, err)
            failed = set()
            for chunk in batch.chunks:
                if not chunk.request.future.done():
                    chunk.request.future.set_exception(
                        err if isinstance(err, ModelError) else ModelError(str(err)))
                failed.add(chunk.request)
            self._forget_pending(failed)
        else:
            now = time.perf_counter()
            for req in batch.completed:
                if not req.future.done():
                    req.future.set_result(req.results)  # type: ignore[arg-type]
                    self.metrics.item_latency.observe(now - req.started)
        for chunk, rows in zip(batch.chunks, batch.rows, strict=True):
            chunk.outstanding -= len(rows)
            if chunk.outstanding <= 0:
                self._chunks.pop(chunk.cid, None)
        self.metrics.queue_depth.set(self._queued)
        if self._queued == 0:
            self._drained.set()
        waiters, self._room_waiters = self._room_waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)
        self._schedule_pump()

    def _forget_pending(self, failed: set[_Request]) -> None:
        """Drop still-pending rows of calls that already failed (their callers retry)."""
        if not failed or not len(self._p_chunk):
            return
        dead = [cid for cid, c in self._chunks.items() if c.request in failed]
        drop = np.isin(self._p_chunk, dead)
        if not drop.any():
            return
        for cid, count in zip(*np.unique(self._p_chunk[drop], return_counts=True), strict=True):
            chunk = self._chunks[int(cid)]
            chunk.outstanding -= int(count)
            if chunk.outstanding <= 0:
                del self._chunks[int(cid)]
        self._queued -= int(drop.sum())
        keep = ~drop
        self._p_len, self._p_arr = self._p_len[keep], self._p_arr[keep]
        self._p_chunk, self._p_row = self._p_chunk[keep], self._p_row[keep]

    # ---- forward (forward thread) ------------------------------------------------------
    def _forward_phase(self, batch: _Batch) -> None:
        """Forward thread: collate, run the model (bisecting on failure). It does nothing
        else (results are built by the finisher thread). On CPU several forward threads run
        batches side by side on one shared model (see ``cpu_parallelism``)."""
        t0 = time.perf_counter()
        model = self.provider.current()
        key, encoder, runner = self._helpers_for(model, with_runner=True)
        assert runner is not None
        ids, lengths, truncated, bad = self._collate(batch, key, model, encoder, runner.pad_to)
        ok = np.flatnonzero(bad == None)  # noqa: E711  (object array of errors)
        probs: np.ndarray | None = None
        errors: list[ScoreError | None] = []
        if len(ok):
            probs, errors = self._forward_isolating(runner, ids[ok], lengths[ok], top=True)
        batch.out = (model, lengths, truncated, bad, ok, probs, errors)
        batch.forward_s = time.perf_counter() - t0

    def _finish_phase(self, batch: _Batch) -> None:
        """Finisher thread: per-item results, scattered into the callers' lists."""
        assert batch.out is not None
        model, lengths, truncated, bad, ok, probs, errors = batch.out
        n = len(lengths)
        results: list[Result] = list(bad)
        if len(ok):
            labels, version = model.labels, model.version
            top = probs.argmax(1).tolist()
            rows = probs.tolist()
            trunc = truncated[ok].tolist()
            for j, i in enumerate(ok.tolist()):
                err = errors[j]
                results[i] = err if err is not None else Scored(
                    labels[top[j]], dict(zip(labels, rows[j], strict=True)), version, trunc[j])
            real, slots = int(lengths[ok].sum()), len(ok) * int(lengths[ok].max())
            self.real_tokens += real
            self.padded_tokens += slots
            self.metrics.padding_ratio.observe(1.0 - real / slots)
            self.metrics.batch_tokens.observe(slots)
        for r in results:
            if isinstance(r, ScoreError):
                self.metrics.item_errors.labels(reason=r.reason).inc()
        k = 0
        for chunk, rows in zip(batch.chunks, batch.rows, strict=True):
            req = chunk.request
            out = req.results
            for p in chunk.positions[rows].tolist():
                out[p] = results[k]
                k += 1
            req.remaining -= len(rows)
            if req.remaining == 0:
                batch.completed.append(req)
        batch.version = model.version
        batch.out = None
        self.batches += 1
        self.scored += n
        m = self.metrics
        m.batch_size.observe(n)
        m.batch_latency.observe(batch.forward_s)
        m.sequences.inc(n)
        if batch.forward_s > 0:
            m.sequences_per_s.set(n / batch.forward_s)

    def _collate(
        self, batch: _Batch, key: str, model: SentimentModel, encoder: FastEncoder, pad_to: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Gather the batch's rows into one padded array (re-tokenising rows that another
        tokenisation produced, i.e. after a swap to a model with a different tokenizer).
        Returns ids, lengths, truncated and per-row input errors."""
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for chunk, rows in zip(batch.chunks, batch.rows, strict=True):
            assert chunk.ids is not None and chunk.lengths is not None
            if chunk.tok_key != key or chunk.error is not None:
                e = self._encode_rows(encoder, [chunk.texts[r] for r in rows.tolist()])
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
        failed = lengths < 0  # rows whose tokenisation failed on their own (see _encode_rows)
        for i in np.flatnonzero(failed).tolist():
            bad[i] = ScoreError("classify_error", "tokenisation failed for this text")
        lengths = np.maximum(lengths, 1)
        return ids, lengths, truncated, bad

    @staticmethod
    def _encode_rows(encoder: FastEncoder, texts: list[str]) -> Encoded:
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

    def _forward_isolating(
        self, runner: Runner, ids: np.ndarray, lengths: np.ndarray, top: bool = False
    ) -> tuple[np.ndarray, list[ScoreError | None]]:
        """Probabilities for every row; rows that make the model raise, or produce NaN/inf,
        get a ScoreError instead (found by bisection, so one poison item costs log2(n)
        extra forwards and its neighbours still score). If *every* row of a multi-row batch
        fails on its own, the fault is not in the data: raise, and the callers retry."""
        n = len(lengths)
        try:
            probs = np.asarray(runner(_trim(ids, lengths, runner.pad_to), lengths),
                               dtype=np.float32)
            errors: list[ScoreError | None] = [None] * n
        except Exception as e:
            if n == 1:
                log.warning("one item failed in the forward pass: %s", e)
                return (np.zeros((1, 1), np.float32),
                        [ScoreError("classify_error", f"{type(e).__name__}: {e}")])
            self.metrics.batch_failures.inc()
            mid = n // 2
            p1, e1 = self._forward_isolating(runner, ids[:mid], lengths[:mid])
            p2, e2 = self._forward_isolating(runner, ids[mid:], lengths[mid:])
            errors = e1 + e2
            if top and all(x is not None for x in errors):
                raise ModelError(f"every item of a batch of {n} failed: {e}") from e
            width = max(p1.shape[1], p2.shape[1])
            probs = np.zeros((n, width), np.float32)
            probs[:mid, : p1.shape[1]] = p1
            probs[mid:, : p2.shape[1]] = p2
            return probs, errors
        finite: np.ndarray = np.asarray(np.isfinite(probs).all(axis=1))
        if not finite.all():
            for i in np.flatnonzero(~finite).tolist():
                errors[i] = ScoreError("non_finite_output", "the model produced NaN/inf here")
            probs = np.where(finite[:, None], probs, 0.0).astype(np.float32)
        return probs, errors


def _trim(ids: np.ndarray, lengths: np.ndarray, pad_to: int) -> np.ndarray:
    """Drop padding columns no row needs (after bisection a half may be much shorter)."""
    width = max(int(lengths.max()), 1)
    width = min(-(-width // pad_to) * pad_to, ids.shape[1])
    return ids if width == ids.shape[1] else np.ascontiguousarray(ids[:, :width])


def cpu_parallelism(forward_threads: int, cpus: int | None = None) -> tuple[int, int]:
    """(forward threads, intra-op threads per forward) for CPU inference.

    Several batches side by side, each on fewer threads, beat one batch spread over every
    core: a transformer layer is a chain of small ops, and each op's threads meet at a
    barrier, so on a host shared with the stream stages and the stack a preempted thread
    stalls the others. ``forward_threads`` 0 means auto: one per core up to 4, and the cores
    split between them (2 cores: 2 x 1; 16 cores: 4 x 4). docs/inference.md has the figures.
    """
    import os

    if not cpus:  # the CPUs this process may run on (an affinity mask or cpuset narrows it)
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpus = max(1, cpus or 1)
    f = forward_threads if forward_threads > 0 else min(cpus, 4)
    return f, max(1, cpus // f)


@asynccontextmanager
async def open_inference_worker(
    settings: Settings, metrics: ClassifyMetrics | None = None
) -> AsyncIterator[InferenceWorker]:
    """The product's worker: the production model (or ``model_path``), followed for hot
    swaps, behind a started worker configured from ``settings``. Raises ModelLoadError
    (saying how to get a model) when there is nothing to serve.

    Usage in the classify agent::

        async with open_inference_worker(settings) as scorer:
            async for batch in stream.take(n, within=...):
                await scorer.wait_for_room(len(batch))   # backpressure: pauses consumption
                results = await scorer.submit_many([d.text for d in batch])
    """
    metrics = metrics or classify_metrics()
    forward_threads = 1
    cuda = _wants_cuda(settings.device)
    # CPU: 64-row length-bucketed batches measured ~15% less CPU per text than 256-row ones
    # (less padding, cache-sized activations; docs/inference.md); a GPU wants big batches.
    max_batch = settings.classify_max_batch or (256 if cuda else 64)
    # CPU: cost is per real token, so cut small well-bucketed batches rather than wait to fill
    # a padded one (takes of ~30 texts: padding 29% -> 8%, CPU per text -17%, measured);
    # a GPU runs a padded batch in the time of a full one, so it waits for company.
    max_padding = 0.35 if cuda else 0.1
    if not cuda:
        import torch

        forward_threads, intra = cpu_parallelism(settings.classify_forward_threads)
        # process-wide, before the model loads: the backends size their thread pools from it
        # (restored when the worker closes, for processes that do more than serve)
        threads_before = torch.get_num_threads()
        torch.set_num_threads(intra)
    provider = await production_provider(
        settings.model_registry, settings.model_path, device=settings.device,
        backend=settings.classify_backend, poll_s=settings.model_poll_s, metrics=metrics,
    )
    worker = InferenceWorker(
        provider,
        max_batch=max_batch,
        max_tokens=settings.classify_max_tokens,
        max_wait_ms=settings.classify_max_wait_ms,
        queue_size=settings.classify_queue_size,
        tokenizer_threads=settings.classify_tokenizer_threads,
        tokenizer_processes=settings.classify_tokenizer_processes,
        cache_size=settings.classify_cache_size,
        compile_mode=settings.classify_compile,
        forward_threads=forward_threads,
        max_padding=max_padding,
        metrics=metrics,
    )
    try:
        await worker.start()
        yield worker
    finally:
        await worker.stop()
        if isinstance(provider, ModelWatcher):
            await provider.stop()
        if not cuda:
            import torch

            torch.set_num_threads(threads_before)


def _wants_cuda(device: str) -> bool:
    if device.startswith("cuda"):
        return True
    if device != "auto":
        return False
    import torch

    return torch.cuda.is_available()
