"""Dynamic batching policy: which pending items run together, and when.

Pure (numpy only, no asyncio, no torch) so every rule is unit-tested without a model.

Why these rules:

* **Length bucketing.** A transformer batch costs ``n * longest`` tokens, so items are
  sorted by token length and cut into consecutive runs: short headlines never pay for a
  long lede's padding.
* **Two budgets.** ``max_batch`` bounds items (result latency, memory of the head) and
  ``max_tokens`` bounds padded tokens ``n * longest`` (activation memory and the time of one
  forward pass), so a batch of long texts is automatically smaller than one of tweets.
* **Full or due.** A run is dispatched as soon as it is *full* (reaches ``min_fill`` of the
  items its own longest length allows, with at most ``max_padding`` of padding) or as soon
  as one of its items has waited ``max_wait_s``. Under load batches are full and well
  bucketed; under light load nothing waits longer than ``max_wait_s`` for company.
* The caller pulls batches only when the forward pass has a free slot, so while the
  accelerator is busy the pending pool grows and the next cut is better bucketed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BatchLimits:
    max_batch: int = 256
    """Most items in one batch."""
    max_tokens: int = 16_384
    """Most padded tokens (``items * longest item``) in one batch."""
    max_wait_s: float = 0.05
    """Longest an item waits for its batch to fill."""
    min_fill: float = 0.9
    """A run counts as full at this fraction of its capacity (``capacity`` below)..."""
    max_padding: float = 0.35
    """...and only if at most this share of its token slots is padding: a run that is
    full by count but badly bucketed (too few items pending to sort) waits for company,
    at most until an item is due or the model is idle."""

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be >= 1")
        if self.max_wait_s < 0:
            raise ValueError("max_wait_s must be >= 0")
        if not 0 < self.min_fill <= 1:
            raise ValueError("min_fill must be in (0, 1]")
        if not 0 <= self.max_padding <= 1:
            raise ValueError("max_padding must be in [0, 1]")

    def capacity(self, longest: int) -> int:
        """Items a batch whose longest item has ``longest`` tokens may hold (at least 1, so an
        item longer than ``max_tokens`` still runs, alone)."""
        return max(1, min(self.max_batch, self.max_tokens // max(1, int(longest))))


def cut_runs(sorted_lengths: np.ndarray, limits: BatchLimits) -> list[tuple[int, int]]:
    """Cut ascending lengths into consecutive ``[start, end)`` runs within the budgets.

    Each run ends at the largest ``end`` (at most ``max_batch`` items on) whose padded size
    ``(end - start) * lengths[end - 1]`` fits ``max_tokens`` and whose padding share is at
    most ``max_padding``, so a few long items never drag a run of short ones into padding.
    Vectorised per run (prefix sums), not a Python step per item.
    """
    n = len(sorted_lengths)
    lengths = np.asarray(sorted_lengths, dtype=np.int64)
    runs: list[tuple[int, int]] = []
    start = 0
    while start < n:
        hi = min(start + limits.max_batch, n)
        seg = lengths[start:hi]
        count = np.arange(1, hi - start + 1)
        slots = count * np.maximum(seg, 1)
        fits = (slots <= limits.max_tokens) & (np.cumsum(seg) >= (1 - limits.max_padding) * slots)
        ok = np.flatnonzero(fits)
        end = start + (int(ok[-1]) + 1 if len(ok) else 1)  # an oversized item runs alone
        runs.append((start, end))
        start = end
    return runs


def plan_batches(
    lengths: np.ndarray,
    arrivals: np.ndarray,
    now: float,
    limits: BatchLimits,
    *,
    flush: bool = False,
    max_batches: int | None = None,
) -> list[np.ndarray]:
    """Batches to run now, as arrays of indices into ``lengths``/``arrivals``.

    ``lengths``: token count per pending item; ``arrivals``: when each was enqueued (same
    clock as ``now``). ``flush`` dispatches everything (shutdown, drain). Batches holding an
    overdue item come first (oldest first), then full ones (longest wait first); at most
    ``max_batches``. Indices not returned stay pending. Within a batch, indices are in length
    order (ties by arrival), which keeps the output deterministic.
    """
    n = len(lengths)
    if n == 0 or max_batches == 0:
        return []
    lengths = np.asarray(lengths)
    arrivals = np.asarray(arrivals, dtype=np.float64)
    order = np.lexsort((arrivals, lengths))  # by length, then arrival
    sorted_lengths = lengths[order]
    sorted_arrivals = arrivals[order]
    due_before = now - limits.max_wait_s
    ranked: list[tuple[int, float, np.ndarray]] = []
    for start, end in cut_runs(sorted_lengths, limits):
        size = end - start
        oldest = float(sorted_arrivals[start:end].min())
        overdue = oldest <= due_before
        longest = int(sorted_lengths[end - 1])
        full = (size >= limits.min_fill * limits.capacity(longest)
                and padding_ratio(sorted_lengths[start:end]) <= limits.max_padding)
        if flush or overdue or full:
            ranked.append((0 if overdue else 1, oldest, order[start:end]))
    ranked.sort(key=lambda r: (r[0], r[1]))
    if max_batches is not None:
        ranked = ranked[:max_batches]
    return [idx for _, _, idx in ranked]


def padding_ratio(lengths: np.ndarray) -> float:
    """Share of a batch's ``n * longest`` token slots that are padding (0 = none)."""
    if len(lengths) == 0:
        return 0.0
    slots = len(lengths) * int(np.max(lengths))
    return 1.0 - float(np.sum(lengths)) / slots if slots else 0.0
