"""The pending pool keeps its four columns in step: every row added is taken or dropped
exactly once, with its own length, arrival, chunk and position."""
from __future__ import annotations

import numpy as np
import pytest

from services.classify.pending import PendingPool


def _pool() -> PendingPool:
    p = PendingPool()
    p.add(0, np.array([5, 3, 9]), now=1.0)
    p.add(1, np.array([4, 4]), now=2.0)
    p.add(2, np.array([7]), now=3.0)
    return p


def test_add_and_read() -> None:
    p = _pool()
    assert len(p) == 6
    assert p.lengths.tolist() == [5, 3, 9, 4, 4, 7]
    assert p.arrivals.tolist() == [1.0, 1.0, 1.0, 2.0, 2.0, 3.0]
    assert p.oldest() == 1.0
    assert PendingPool().oldest() is None
    with pytest.raises(ValueError):
        p.lengths[0] = 1  # views for the batcher, not handles to mutate the pool


def test_take_groups_by_chunk_and_keeps_the_rest_in_order() -> None:
    p = _pool()
    # pool positions: 0..2 chunk 0 rows 0..2, 3..4 chunk 1 rows 0..1, 5 chunk 2 row 0
    first, second = p.take([np.array([3, 1, 5]), np.array([0])])
    assert first.chunk_ids == [0, 1, 2]
    assert [r.tolist() for r in first.rows] == [[1], [0], [0]]
    assert first.lengths.tolist() == [3, 4, 7]
    assert first.arrivals.tolist() == [1.0, 2.0, 3.0]
    assert second.chunk_ids == [0] and second.rows[0].tolist() == [0]
    assert len(p) == 2
    assert p.lengths.tolist() == [9, 4]  # chunk 0 row 2, chunk 1 row 1
    (rest,) = p.take([np.arange(2)])
    assert rest.chunk_ids == [0, 1]
    assert [r.tolist() for r in rest.rows] == [[2], [1]]
    assert len(p) == 0 and p.oldest() is None


def test_take_refuses_a_row_in_two_batches() -> None:
    with pytest.raises(ValueError):
        _pool().take([np.array([0, 1]), np.array([1])])


def test_drop_chunks_counts_what_it_removed() -> None:
    p = _pool()
    assert p.drop_chunks([1, 7]) == {1: 2}  # unknown chunk ids are ignored
    assert p.lengths.tolist() == [5, 3, 9, 7]
    assert p.drop_chunks([]) == {}
    assert p.drop_chunks([1]) == {}
    assert p.drop_chunks([0, 2]) == {0: 3, 2: 1}
    assert len(p) == 0
    assert PendingPool().drop_chunks([0]) == {}


def test_every_row_leaves_exactly_once_with_its_own_columns() -> None:
    rng = np.random.default_rng(0)
    p = PendingPool()
    model: dict[tuple[int, int], tuple[int, float]] = {}  # (chunk, row) -> (length, arrival)

    def check(t) -> None:
        assert len(t.lengths) == len(t.arrivals) == sum(len(r) for r in t.rows)
        assert t.chunk_ids == sorted(set(t.chunk_ids))
        keys = [(c, int(r)) for c, rows in zip(t.chunk_ids, t.rows, strict=True) for r in rows]
        for key, length, arrival in zip(keys, t.lengths.tolist(), t.arrivals.tolist(),
                                        strict=True):
            assert model.pop(key) == (length, arrival)  # KeyError: taken twice or never added

    for cid in range(60):
        lengths = rng.integers(1, 60, int(rng.integers(1, 6)))
        p.add(cid, lengths, now=float(cid))
        model |= {(cid, r): (int(n), float(cid)) for r, n in enumerate(lengths)}
        if cid % 3 == 2:
            idx = rng.permutation(len(p))[: int(rng.integers(0, len(p) + 1))]
            for t in p.take([c for c in np.array_split(idx, 2) if len(c)]):
                check(t)
        if cid % 7 == 6:
            dropped = p.drop_chunks([cid - 1, cid - 4])
            for c in (cid - 1, cid - 4):
                rows = [k for k in model if k[0] == c]
                assert dropped.get(c, 0) == len(rows)
                for k in rows:
                    del model[k]
        assert len(p) == len(model)
        assert p.oldest() == (min(a for _, a in model.values()) if model else None)
    for t in p.take([np.arange(len(p))]):
        check(t)
    assert not model and len(p) == 0
