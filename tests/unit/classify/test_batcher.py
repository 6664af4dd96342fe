"""The batching policy: budgets, bucketing, waiting and ordering rules."""
from __future__ import annotations

import numpy as np
import pytest

from services.classify.batcher import (
    BatchLimits,
    cut_runs,
    padding_ratio,
    plan_batches,
)


def _all(lengths, limits, now=0.0, arrivals=None):
    arrivals = np.zeros(len(lengths)) if arrivals is None else np.asarray(arrivals, float)
    return plan_batches(np.asarray(lengths), arrivals, now, limits, flush=True)


@pytest.mark.parametrize("seed", range(20))
def test_flush_covers_every_item_once_within_budgets(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    lengths = rng.integers(3, 65, n)
    limits = BatchLimits(max_batch=int(rng.integers(1, 100)),
                         max_tokens=int(rng.integers(64, 3000)))
    batches = _all(lengths, limits)
    seen = np.concatenate(batches)
    assert sorted(seen.tolist()) == list(range(n))
    for b in batches:
        assert 1 <= len(b) <= limits.max_batch
        assert len(b) * lengths[b].max() <= limits.max_tokens or len(b) == 1


def test_item_longer_than_token_budget_runs_alone() -> None:
    batches = _all([10, 500, 10], BatchLimits(max_batch=8, max_tokens=100))
    assert [sorted(b.tolist()) for b in batches if 1 in b] == [[1]]


def test_runs_are_length_buckets() -> None:
    lengths = np.array([50, 5, 48, 6, 49, 7, 51, 4])
    batches = _all(lengths, BatchLimits(max_batch=4, max_tokens=10_000))
    buckets = sorted(sorted(lengths[b].tolist()) for b in batches)
    assert buckets == [[4, 5, 6, 7], [48, 49, 50, 51]]


def test_bucketing_cuts_padding_against_arrival_order() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 64, 512)
    limits = BatchLimits(max_batch=64, max_tokens=64 * 64)
    ours = sum(len(b) * lengths[b].max() for b in _all(lengths, limits))
    fifo = sum(len(lengths[s : s + 64]) * lengths[s : s + 64].max() for s in range(0, 512, 64))
    assert ours < 0.7 * fifo


def test_partial_batch_waits_until_max_wait() -> None:
    limits = BatchLimits(max_batch=32, max_tokens=10_000, max_wait_s=0.05)
    lengths, arrivals = np.array([10, 12, 11]), np.array([1.0, 1.01, 1.02])
    assert plan_batches(lengths, arrivals, now=1.03, limits=limits) == []
    (batch,) = plan_batches(lengths, arrivals, now=1.05, limits=limits)
    assert sorted(batch.tolist()) == [0, 1, 2]


def test_full_batch_goes_at_once() -> None:
    limits = BatchLimits(max_batch=4, max_tokens=10_000, max_wait_s=10)
    lengths = np.array([10, 10, 10, 10, 30])
    batches = plan_batches(lengths, np.zeros(5), now=0.0, limits=limits)
    assert [sorted(b.tolist()) for b in batches] == [[0, 1, 2, 3]]  # the lone 30 waits


def test_enough_items_but_mixed_lengths_wait_for_company() -> None:
    limits = BatchLimits(max_batch=4, max_tokens=10_000, max_wait_s=1.0, max_padding=0.35)
    mixed = np.array([5, 60, 8, 55])  # 4 items = max_batch, but one batch would be 70% padding
    assert plan_batches(mixed, np.zeros(4), now=0.5, limits=limits) == []
    due = plan_batches(mixed, np.zeros(4), now=1.0, limits=limits)
    assert sorted(sorted(b.tolist()) for b in due) == [[0, 2], [1, 3]]  # bucketed when due
    tight = np.array([50, 60, 55, 58])
    assert len(plan_batches(tight, np.zeros(4), now=0.5, limits=limits)) == 1


def test_token_budget_makes_a_batch_full() -> None:
    limits = BatchLimits(max_batch=100, max_tokens=120, max_wait_s=10)
    batches = plan_batches(np.array([40, 40, 40]), np.zeros(3), now=0.0, limits=limits)
    assert [len(b) for b in batches] == [3]


def test_overdue_first_then_limited_count() -> None:
    limits = BatchLimits(max_batch=2, max_tokens=10_000, max_wait_s=1.0)
    lengths = np.array([5, 5, 60, 60, 30])
    arrivals = np.array([5.0, 5.0, 5.0, 5.0, 0.0])  # only the 30 is overdue at 5.5
    batches = plan_batches(lengths, arrivals, now=5.5, limits=limits)
    # runs by length: [5 5] full, [30 60] overdue, [60] neither (waits)
    assert [sorted(b.tolist()) for b in batches] == [[2, 4], [0, 1]]
    assert len(plan_batches(lengths, arrivals, now=5.5, limits=limits, max_batches=1)) == 1


def test_order_inside_batch_is_deterministic() -> None:
    limits = BatchLimits(max_batch=8, max_tokens=10_000)
    lengths = np.array([7, 3, 7, 3])
    arrivals = np.array([0.0, 0.1, 0.2, 0.3])
    (batch,) = plan_batches(lengths, arrivals, 0.0, limits, flush=True)
    assert batch.tolist() == [1, 3, 0, 2]


def test_empty_and_zero_slots() -> None:
    limits = BatchLimits()
    assert plan_batches(np.array([], int), np.array([]), 0.0, limits, flush=True) == []
    assert plan_batches(np.array([5]), np.array([0.0]), 9.0, limits, max_batches=0) == []


def test_cut_runs_matches_a_plain_loop() -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        lengths = np.sort(rng.integers(1, 80, int(rng.integers(1, 300))))
        limits = BatchLimits(max_batch=int(rng.integers(1, 64)),
                             max_tokens=int(rng.integers(1, 2000)),
                             max_padding=float(rng.choice([0.0, 0.2, 0.35, 1.0])))
        expected, start = [], 0
        while start < len(lengths):
            best = start + 1
            for end in range(start + 1, min(start + limits.max_batch, len(lengths)) + 1):
                run = lengths[start:end]
                slots = len(run) * run.max()
                if slots <= limits.max_tokens and run.sum() >= (1 - limits.max_padding) * slots:
                    best = end
            expected.append((start, best))
            start = best
        assert cut_runs(lengths, limits) == expected


def test_runs_keep_padding_under_the_limit() -> None:
    lengths = np.array([10] * 30 + [60] * 3)
    runs = cut_runs(lengths, BatchLimits(max_batch=64, max_tokens=10_000, max_padding=0.35))
    assert runs == [(0, 30), (30, 33)]
    for a, b in runs:
        assert padding_ratio(lengths[a:b]) <= 0.35


def test_padding_ratio() -> None:
    assert padding_ratio(np.array([4, 4])) == 0.0
    assert padding_ratio(np.array([2, 4])) == pytest.approx(0.25)
    assert padding_ratio(np.array([], int)) == 0.0


@pytest.mark.parametrize("kwargs", [{"max_batch": 0}, {"max_tokens": 0}, {"max_wait_s": -1},
                                    {"min_fill": 0}, {"min_fill": 1.5}, {"max_padding": -0.1}])
def test_limits_are_validated(kwargs) -> None:
    with pytest.raises(ValueError):
        BatchLimits(**kwargs)


def test_capacity() -> None:
    limits = BatchLimits(max_batch=64, max_tokens=1000)
    assert limits.capacity(10) == 64
    assert limits.capacity(100) == 10
    assert limits.capacity(5000) == 1
