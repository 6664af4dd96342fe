"""The pending pool: tokenised rows waiting for a batch, one entry per row.

The batcher sees only two columns (token length, arrival time); the worker also needs to
know which chunk each row came from and its position in that chunk, to route results
back. Keeping the four columns in one object means a row is added, taken or dropped in
all of them at once: they can never disagree on length or order, which the worker used to
guarantee by hand in three places. Numpy columns, not objects per row, because at GPU
speeds the pool turns over tens of thousands of rows a second on the event loop.

Loop thread only: no locks.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Taken:
    """The rows of one batch, grouped by chunk (ascending chunk id, rows in pool order)."""

    chunk_ids: list[int]
    rows: list[np.ndarray]  # per chunk: row positions within that chunk
    lengths: np.ndarray  # per row, in the order of the groups
    arrivals: np.ndarray


class PendingPool:
    def __init__(self) -> None:
        self._len = np.zeros(0, dtype=np.int32)
        self._arr = np.zeros(0, dtype=np.float64)
        self._chunk = np.zeros(0, dtype=np.int64)
        self._row = np.zeros(0, dtype=np.int32)

    def __len__(self) -> int:
        return len(self._len)

    @property
    def lengths(self) -> np.ndarray:
        """Token length per pending row (read-only view, for the batcher)."""
        v = self._len.view()
        v.flags.writeable = False
        return v

    @property
    def arrivals(self) -> np.ndarray:
        """When each pending row arrived (the caller's clock; read-only view)."""
        v = self._arr.view()
        v.flags.writeable = False
        return v

    def oldest(self) -> float | None:
        """Arrival of the row that has waited longest (None when empty)."""
        return float(self._arr.min()) if len(self._arr) else None

    def add(self, chunk_id: int, lengths: np.ndarray, now: float) -> None:
        """All rows of one tokenised chunk, rows ``0..n-1``, arriving at ``now``."""
        n = len(lengths)
        self._len = np.concatenate((self._len, np.asarray(lengths, dtype=np.int32)))
        self._arr = np.concatenate((self._arr, np.full(n, now)))
        self._chunk = np.concatenate((self._chunk, np.full(n, chunk_id, dtype=np.int64)))
        self._row = np.concatenate((self._row, np.arange(n, dtype=np.int32)))

    def take(self, batches: list[np.ndarray]) -> list[Taken]:
        """Remove the rows at ``batches`` (disjoint index arrays into the pool as it is now,
        e.g. from ``plan_batches``) and return each batch grouped by chunk."""
        taken = np.zeros(len(self._len), dtype=bool)
        out = []
        for idx in batches:
            if taken[idx].any():
                raise ValueError("a row appears in two batches")
            taken[idx] = True
            out.append(self._group(idx))
        self._keep(~taken)
        return out

    def drop_chunks(self, chunk_ids: list[int]) -> dict[int, int]:
        """Remove every row of ``chunk_ids``; returns rows removed per chunk (only chunks
        that had rows here)."""
        if not len(self._chunk) or not chunk_ids:
            return {}
        drop = np.isin(self._chunk, chunk_ids)
        if not drop.any():
            return {}
        ids, counts = np.unique(self._chunk[drop], return_counts=True)
        self._keep(~drop)
        return {int(c): int(k) for c, k in zip(ids, counts, strict=True)}

    def _group(self, idx: np.ndarray) -> Taken:
        cids, rows = self._chunk[idx], self._row[idx]
        order = np.argsort(cids, kind="stable")
        cids, rows = cids[order], rows[order]
        bounds = np.flatnonzero(np.diff(cids)) + 1
        return Taken([int(g[0]) for g in np.split(cids, bounds)], np.split(rows, bounds),
                     self._len[idx][order], self._arr[idx][order])

    def _keep(self, keep: np.ndarray) -> None:
        self._len, self._arr = self._len[keep], self._arr[keep]
        self._chunk, self._row = self._chunk[keep], self._row[keep]
