"""The inference worker: an asyncio dynamic batcher feeding the forward thread(s).

Flow of one ``submit_many`` call (the classify agent's micro-batch)::

    event loop           tokenizer threads/processes    pending pool       forward thread
    submit_many ─chunks─▶ FastEncoder.encode ─────────▶ PendingPool ──────▶ forward_batch
      ▲ waits for room    (tokenizing.py)               (pending.py)        (forward.py)
      │                                                  plan_batches          │ probs
      │                                                  (batcher.py)          ▼
      └──── one future per call, resolved when its last item is done ◀── finish_batch
                                                                         (finisher thread)

Built from settings by ``serve.open_inference_worker``; the per-model encoder and runner
come from ``model_tools.py``.

Why this shape:

* **The loop only coordinates.** Tokenisation runs in a thread pool (the Rust tokenizer
  releases the GIL) or, on many-core GPU hosts, a process pool; the model runs in
  dedicated forward threads (one on CUDA; on CPU one per core by default, each batch on a
  share of the cores: see ``serve.cpu_parallelism``) that do nothing else (the model code
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
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from models.sentiment import SentimentModel
from services.classify.batcher import BatchLimits, plan_batches
from services.classify.forward import Batch, Chunk, Request, finish_batch, forward_batch
from services.classify.metrics import ClassifyMetrics, classify_metrics
from services.classify.model_tools import ModelTools
from services.classify.model_watch import ModelProvider, StaticModel
from services.classify.pending import PendingPool
from services.classify.scorer import EntitySpans, Result, ScoreError
from services.classify.tokenizing import Tokenised, Tokenizers
from services.core.errors import ModelError

log = logging.getLogger(__name__)

# Fixed rather than settings: no deployment has needed other values, and each is a
# trade-off measured once (docs/inference.md); the benchmarks pass their own explicitly.
MAX_TOKENS = 16_384  # padded tokens per batch: 256 rows of 64 tokens (max_length) fit, so
# the row cap binds first for headlines and only long documents shrink a batch
QUEUE_SIZE = 4096  # items in flight: four classify actors' takes of 1,024 fit at once
TOKENIZER_THREADS = 2  # the Rust tokenizer releases the GIL; two stay ahead of the model
TOKENIZER_PROCESSES = 0  # processes pay only on many-core GPU hosts; threads everywhere else
CACHE_SIZE = 50_000  # repeated texts (syndication, retweets) whose token ids are kept


class InferenceWorker:
    """In-process :class:`~services.classify.scorer.Scorer`; see the module docstring."""

    def __init__(
        self,
        model_provider: ModelProvider | SentimentModel,
        *,
        max_batch: int = 256,
        max_tokens: int = MAX_TOKENS,
        max_wait_ms: float = 50.0,
        queue_size: int = QUEUE_SIZE,
        tokenizer_threads: int = TOKENIZER_THREADS,
        tokenizer_processes: int = TOKENIZER_PROCESSES,
        pipeline_depth: int | None = None,
        forward_threads: int = 1,
        chunk_size: int = 512,
        cache_size: int = CACHE_SIZE,
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
        self.metrics = metrics or classify_metrics()
        self.metrics.queue_capacity.set(self.queue_size)
        self._tools = ModelTools(cache_size, compile_mode, self.limits.max_batch)
        self._tokenizers = Tokenizers(self.provider, self._tools, tokenizer_threads,
                                      tokenizer_processes, cache_size)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fwd_pool: ThreadPoolExecutor | None = None
        self._fin_pool: ThreadPoolExecutor | None = None
        self._pending = PendingPool()  # loop thread only
        self._chunks: dict[int, Chunk] = {}
        self._next_chunk = 0
        self._queued = 0
        self._tokenizing = 0
        self._inflight = 0
        self._pump_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._room_waiters: list[asyncio.Future[None]] = []
        self._live: set[Request] = set()  # calls not answered yet
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
        self._fwd_pool = ThreadPoolExecutor(self.forward_threads,
                                            thread_name_prefix="yuqing-forward")
        self._fin_pool = ThreadPoolExecutor(1, thread_name_prefix="yuqing-finish")
        model = self.provider.current()
        await self._tokenizers.start(self._loop, model)
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
        self._tokenizers.shutdown()
        for pool in (self._fwd_pool, self._fin_pool):
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

    async def submit_many(self, texts: Sequence[str],
                          spans: Sequence[EntitySpans | None] | None = None,
                          langs: Sequence[str] | None = None) -> list[Result]:
        """See :class:`~services.classify.scorer.Scorer`. ``spans``: one entry per text (its
        entities' mention spans, or None); with a model that has an entity head, the results
        of texts with spans carry per-entity scores from the same forward pass. ``langs`` is
        not read: this worker serves one model, whatever the language (routing is
        :class:`~services.classify.router.LanguageRouter`'s), and stamps its language."""
        if spans is not None and len(spans) != len(texts):
            raise ValueError(f"{len(spans)} span lists for {len(texts)} texts")
        if spans is not None and not any(spans):
            spans = None
        if self._loop is None or self._fwd_pool is None:
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
        req = Request(results, loop.create_future(), len(valid), time.perf_counter())
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
            part_spans = None
            if spans is not None:
                part_spans = (list(spans[s : s + len(part)]) if all_valid
                              else [spans[i] for i in part])
                if not any(part_spans):
                    part_spans = None
            chunk = Chunk(req, pos, part_texts, part_spans)
            self._queued += len(part)
            self._tokenizing += 1
            self.metrics.queue_depth.inc(len(part))  # summed over the workers sharing it
            fut = self._tokenizers.submit(loop, chunk)
            fut.add_done_callback(lambda f, c=chunk: self._chunk_ready(c, f))
        return await req.future  # type: ignore[return-value]

    # ---- tokenised chunks join the pending pool (event loop) ---------------------------
    def _chunk_ready(self, chunk: Chunk, fut: asyncio.Future[Tokenised]) -> None:
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
        self._pending.add(cid, chunk.lengths, self._loop.time())  # type: ignore[union-attr]
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
        pending = self._pending
        if free <= 0 or len(pending) == 0:
            return
        # Work-conserving: an idle model with nothing more being tokenised takes what is
        # pending now (a lone agent awaiting its micro-batch must not wait max_wait for
        # company that cannot come). While any batch runs, partial batches wait (at most
        # max_wait) to fill: with several CPU forward threads a free one could start a small
        # batch at once, but on a host shared with the stream stages fuller batches cost less
        # CPU per text, and that is what holds latency down under load (pipeline benchmark).
        flush = self._stopping or (self._inflight == 0 and self._tokenizing == 0)
        cuts = plan_batches(pending.lengths, pending.arrivals, loop.time(), self.limits,
                            flush=flush, max_batches=free)
        for taken in pending.take(cuts):
            batch = Batch([self._chunks[c] for c in taken.chunk_ids], taken.rows,
                          taken.lengths, taken.arrivals)
            self._inflight += 1
            self.max_inflight = max(self.max_inflight, self._inflight)
            fut = loop.run_in_executor(self._fwd_pool, self._forward_phase, batch)
            fut.add_done_callback(lambda f, b=batch: self._forward_done(b, f))
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        oldest = pending.oldest()
        if oldest is not None and self._inflight < self.pipeline_depth:
            self._timer = loop.call_at(oldest + self.limits.max_wait_s, self._schedule_pump)

    def _forward_done(self, batch: Batch, fut: asyncio.Future[None]) -> None:
        self._inflight -= 1  # the device is free: cut the next batch now
        if fut.cancelled() or fut.exception() is not None:
            self._batch_done(batch, fut)
        else:
            fin = self._loop.run_in_executor(  # type: ignore[union-attr]
                self._fin_pool, self._finish_phase, batch)
            fin.add_done_callback(lambda f, b=batch: self._batch_done(b, f))
        self._schedule_pump()

    def _batch_done(self, batch: Batch, fut: asyncio.Future[None]) -> None:
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
        self.metrics.queue_depth.dec(n)
        if self._queued == 0:
            self._drained.set()
        waiters, self._room_waiters = self._room_waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)
        self._schedule_pump()

    def _forget_pending(self, failed: set[Request]) -> None:
        """Drop still-pending rows of calls that already failed (their callers retry)."""
        if not failed or not len(self._pending):
            return
        dead = [cid for cid, c in self._chunks.items() if c.request in failed]
        for cid, count in self._pending.drop_chunks(dead).items():
            chunk = self._chunks[cid]
            chunk.outstanding -= count
            if chunk.outstanding <= 0:
                del self._chunks[cid]
            self._queued -= count
            self.metrics.queue_depth.dec(count)

    # ---- forward and finisher threads --------------------------------------------------
    def _prepare_model(self, model: SentimentModel) -> None:
        """Build (and on CUDA warm up) encoder and runner before the first batch."""
        _, _, runner = self._tools.get(model, with_runner=True)
        assert runner is not None
        runner(np.full((2, 8), 1000, dtype=np.int64), np.full(2, 8, dtype=np.int32))

    def _forward_phase(self, batch: Batch) -> None:
        """Forward thread. On CPU several run batches side by side on one shared model
        (see ``serve.cpu_parallelism``); the model is asked for once per batch, which is
        where a hot swap lands."""
        t0 = time.perf_counter()
        model = self.provider.current()
        key, encoder, runner = self._tools.get(model, with_runner=True)
        assert runner is not None
        forward_batch(batch, model, key, encoder, runner, self.metrics)
        batch.forward_s = time.perf_counter() - t0

    def _finish_phase(self, batch: Batch) -> None:
        n = len(batch.lengths)
        real, slots = finish_batch(batch, self.metrics)
        self.real_tokens += real
        self.padded_tokens += slots
        self.batches += 1
        self.scored += n
