"""The inference worker: agreement with unbatched scoring, order, backpressure, bad input,
poison isolation and hot swap. A real model runs every forward pass; where a test needs
the forward pass to stall or fail, it wraps that model's ``forward`` method."""
from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from bench.common import headlines
from models.sentiment import SentimentModel
from services.classify.metrics import ClassifyMetrics
from services.classify.model_watch import StaticModel
from services.classify.scorer import Scored, ScoreError, Scorer
from services.classify.worker import InferenceWorker
from services.core.errors import ModelError


def _probs(r) -> np.ndarray:
    assert isinstance(r, Scored), r
    return np.array(list(r.probabilities.values()))


def _worker(model_or_provider, metrics: ClassifyMetrics, **kw) -> InferenceWorker:
    kw.setdefault("max_batch", 16)
    kw.setdefault("max_tokens", 1024)
    kw.setdefault("max_wait_ms", 5)
    kw.setdefault("queue_size", 64)
    kw.setdefault("chunk_size", 8)
    return InferenceWorker(model_or_provider, metrics=metrics, **kw)


class _Patched:
    """A real model whose forward can be gated or made to fail for chosen rows."""

    def __init__(self, model: SentimentModel) -> None:
        self.model = model
        self.gate = threading.Event()
        self.gate.set()
        self.poison_id: int | None = None
        self.nan_id: int | None = None
        self.always_fail = False
        self.calls = 0
        self._orig = model.forward

    def __enter__(self) -> _Patched:
        self.model.forward = self._forward  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc) -> None:
        del self.model.forward
        self.gate.set()

    def _forward(self, enc):
        self.calls += 1
        assert self.gate.wait(30)
        if self.always_fail:
            raise RuntimeError("device lost")
        if self.poison_id is not None and (enc.input_ids == self.poison_id).any():
            raise ValueError("poison")
        probs = self._orig(enc)
        if self.nan_id is not None:
            probs[(enc.input_ids == self.nan_id).any(axis=1)] = np.nan
        return probs


async def _eventually(cond, limit_s: float = 30.0) -> None:
    async with asyncio.timeout(limit_s):
        while not cond():  # noqa: ASYNC110 - polling worker state from the test
            await asyncio.sleep(0.005)


def _token_id(model: SentimentModel, word: str) -> int:
    return model.text_encoder.tokenizer.encode(word).ids[1]


async def test_batched_agrees_with_one_at_a_time(model, metrics) -> None:
    texts = headlines(16, seed=1)
    async with _worker(model, metrics) as w:
        assert isinstance(w, Scorer)
        results = await w.submit_many(texts)
    for text, r in zip(texts, results, strict=True):
        single = model.predict_batch([text])[0]
        np.testing.assert_allclose(_probs(r), list(single.probabilities.values()), atol=1e-4)
        assert r.label == single.label
        assert r.model_version == model.version
    assert w.batches < len(texts)  # it did batch
    assert metrics.batch_size._sum.get() == len(texts)


async def test_order_is_kept_across_concurrent_calls(model, metrics) -> None:
    texts = headlines(90, seed=2)
    calls = [texts[i : i + 7] for i in range(0, len(texts), 7)]
    async with _worker(model, metrics) as w:
        outs = await asyncio.gather(*(w.submit_many(c) for c in calls))
    ref = model.predict_proba(texts)[0]
    got = np.array([_probs(r) for out in outs for r in out])
    assert [len(o) for o in outs] == [len(c) for c in calls]
    np.testing.assert_allclose(got, ref, atol=1e-4)


async def test_backpressure_engages_when_the_queue_is_full(model, metrics) -> None:
    texts = headlines(40, seed=3)
    with _Patched(model) as p:
        async with _worker(model, metrics, queue_size=8, chunk_size=8) as w:
            p.gate.clear()  # the model stalls: nothing leaves the queue
            first = asyncio.create_task(w.submit_many(texts[:8]))
            await asyncio.sleep(0.05)
            assert w.queue_full and w.queue_depth == 8
            room = asyncio.create_task(w.wait_for_room(1))
            more = asyncio.create_task(w.submit_many(texts[8:]))  # 32 more than fit
            await asyncio.sleep(0.1)
            assert not room.done() and not more.done()
            assert w.queue_depth == 8  # waiting, not queued beyond the bound
            assert metrics.backpressure_waits._value.get() >= 1
            p.gate.set()
            await asyncio.wait_for(room, 30)
            r1, r2 = await asyncio.wait_for(asyncio.gather(first, more), 60)
    assert len(r1) + len(r2) == 40 and all(isinstance(r, Scored) for r in r1 + r2)
    assert w.queue_depth == 0 and not w.queue_full


async def test_bad_inputs_get_clear_per_item_results(model, metrics) -> None:
    texts = ["", "\x00\x01\x1f", 42, None, "x" * 100_000, "Tesla 特斯拉 股价 下跌 📉 \x07", "ok"]
    async with _worker(model, metrics) as w:
        res = await w.submit_many(texts)  # type: ignore[arg-type]
    assert [type(r).__name__ for r in res] == [
        "ScoreError", "ScoreError", "ScoreError", "ScoreError", "Scored", "Scored", "Scored"]
    assert [r.reason for r in res[:4]] == ["empty_text", "empty_text", "not_text", "not_text"]
    assert res[4].truncated and not res[5].truncated
    assert metrics.item_errors.labels(reason="empty_text")._value.get() == 2


async def test_one_poison_item_does_not_fail_its_batch(model, metrics) -> None:
    texts = headlines(31, seed=4)
    texts.insert(17, "kangaroo shares jump")
    with _Patched(model) as p:
        p.poison_id = _token_id(model, "kangaroo")
        async with _worker(model, metrics, max_batch=32, max_tokens=4096, chunk_size=32,
                           max_wait_ms=50) as w:
            res = await w.submit_many(texts)
    errors = [i for i, r in enumerate(res) if isinstance(r, ScoreError)]
    assert errors == [17]
    assert res[17].reason == "classify_error" and "poison" in res[17].message
    ref = model.predict_proba([t for i, t in enumerate(texts) if i != 17])[0]
    np.testing.assert_allclose([_probs(r) for i, r in enumerate(res) if i != 17], ref, atol=1e-4)
    assert metrics.batch_failures._value.get() >= 1


async def test_non_finite_output_is_an_item_error(model, metrics) -> None:
    texts = ["wombat earnings", "Apple beats estimates", "Tesla misses"]
    with _Patched(model) as p:
        p.nan_id = _token_id(model, "wombat")
        async with _worker(model, metrics) as w:
            res = await w.submit_many(texts)
    assert isinstance(res[0], ScoreError) and res[0].reason == "non_finite_output"
    assert all(isinstance(r, Scored) for r in res[1:])


async def test_a_broken_model_fails_the_call_instead_of_dead_lettering_everything(
        model, metrics) -> None:
    async with _worker(model, metrics) as w:
        with _Patched(model) as p:
            p.always_fail = True
            with pytest.raises(ModelError):
                await w.submit_many(headlines(6, seed=5))
            await _eventually(lambda: w.queue_depth == 0)
        assert len(await w.submit_many(["recovered"])) == 1  # and it keeps serving


class _Switchable(StaticModel):
    pass


async def test_hot_swap_between_batches_scores_each_item_once(model, metrics) -> None:
    from models.sentiment.config import ModelConfig
    from models.sentiment.network import build_classifier, tokenizer_file

    cfg = ModelConfig(version="v2-short", max_length=16)
    other = SentimentModel(build_classifier(cfg, seed=1).eval(), cfg,
                           tokenizer_file(cfg.base_model))
    provider = _Switchable(model)
    first = ["Apple beats estimates"]  # one batch, stalled in the old model
    rest = headlines(40, seed=7) + ["word " * 40]
    with _Patched(model) as p:
        async with _worker(provider, metrics, max_batch=8, max_tokens=512) as w:
            p.gate.clear()
            t_first = asyncio.create_task(w.submit_many(first))
            await _eventually(lambda: p.calls >= 2)  # warm-up + first batch, stalled in model
            t_rest = [asyncio.create_task(w.submit_many(rest[i : i + 5]))
                      for i in range(0, len(rest), 5)]
            await _eventually(lambda: len(w._pending) == len(rest))  # all tokenised, old model
            provider.model = other  # swap between batches
            p.gate.set()
            r_first = await t_first
            r_rest = [r for out in await asyncio.gather(*t_rest) for r in out]
    assert w.scored == len(first) + len(rest)  # nothing dropped, nothing scored twice
    assert {r.model_version for r in r_first} == {model.version}
    assert {r.model_version for r in r_rest} == {"v2-short"}
    np.testing.assert_allclose([_probs(r) for r in r_first], model.predict_proba(first)[0],
                               atol=1e-4)
    np.testing.assert_allclose([_probs(r) for r in r_rest], other.predict_proba(rest)[0],
                               atol=1e-4)
    assert r_rest[-1].truncated  # re-tokenised at the new model's 16 tokens


async def test_metrics_are_exported(model, metrics) -> None:
    async with _worker(model, metrics) as w:
        await w.submit_many(headlines(20, seed=8))
    assert metrics.sequences._value.get() == 20
    assert metrics.sequences._value.get() == metrics.batch_size._sum.get()
    assert metrics.batch_latency._sum.get() > 0
    assert metrics.queue_depth._value.get() == 0
    assert metrics.queue_capacity._value.get() == 64


async def test_empty_call_and_not_started() -> None:
    w = InferenceWorker(SentimentModel.__new__(SentimentModel))
    with pytest.raises(RuntimeError, match="start"):
        await w.submit_many(["x"])


async def test_tokenizer_processes_give_the_same_results(model, metrics) -> None:
    texts = headlines(40, seed=9) + ["", "x" * 100_000]
    async with _worker(model, metrics, tokenizer_processes=1) as w:
        res = await w.submit_many(texts)
        assert w._tokenizers._procs is not None
    async with _worker(model, metrics) as w2:
        ref = await w2.submit_many(texts)
    assert [type(r) for r in res] == [type(r) for r in ref]
    np.testing.assert_allclose([_probs(r) for r in res[:40]], [_probs(r) for r in ref[:40]],
                               atol=1e-5)
    assert res[-1].truncated and res[-2].reason == "empty_text"


async def test_parallel_forward_threads_give_the_same_results(model, metrics) -> None:
    texts = headlines(120, seed=11)
    calls = [texts[i : i + 9] for i in range(0, len(texts), 9)]
    async with _worker(model, metrics, forward_threads=3, max_batch=8) as w:
        assert w.pipeline_depth == 3  # CPU: one batch per forward thread in flight
        outs = await asyncio.gather(*(w.submit_many(c) for c in calls))
        assert w.max_inflight >= 2  # batches did run side by side
    got = np.array([_probs(r) for out in outs for r in out])
    np.testing.assert_allclose(got, model.predict_proba(texts)[0], atol=1e-4)
    assert metrics.batch_size._sum.get() == len(texts)  # each item scored exactly once


def test_cpu_parallelism_splits_the_cores() -> None:
    from services.classify.serve import cpu_parallelism

    assert cpu_parallelism(0, cpus=2) == (2, 1)
    assert cpu_parallelism(0, cpus=16) == (4, 4)
    assert cpu_parallelism(0, cpus=1) == (1, 1)
    assert cpu_parallelism(3, cpus=16) == (3, 5)
    assert cpu_parallelism(8, cpus=2) == (8, 1)
