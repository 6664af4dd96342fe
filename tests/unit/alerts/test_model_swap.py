"""Model swaps never look like spikes: a new model's different negative rate re-bases."""
from __future__ import annotations

import json

import numpy as np

from services.alerts.model import DetectorConfig, SeriesState
from services.alerts.replay import replay

W_DAY = 288


def feed(days: int, swap_at: int, before: float, after: float, seed: int = 3):
    """Totals with a daily cycle; negatives a binomial share that changes at ``swap_at``."""
    rng = np.random.default_rng(seed)
    t = np.arange(days * W_DAY)
    mu = 20 * (1 + 0.6 * np.sin(2 * np.pi * t / W_DAY))
    tot = rng.poisson(mu)
    share = np.where(t < swap_at, before, after)
    neg = rng.binomial(tot, share)
    counts = {int(w): int(n) for w, n in zip(t, neg, strict=True)}
    totals = {int(w): int(n) for w, n in zip(t, tot, strict=True)}
    versions = {int(w): ("m-v1" if w < swap_at else "m-v2") for w in t}
    return counts, totals, versions


def test_a_model_with_three_times_the_negatives_does_not_fire() -> None:
    swap = 8 * W_DAY + 37
    counts, totals, versions = feed(12, swap, 0.10, 0.30)
    res = replay(counts, totals, DetectorConfig(), versions=versions)
    assert [e for e in res.events if e.kind == "firing"] == []
    assert max(s.score for s in res.scores if s.window >= swap) < 30  # not near the line
    notes = res.notes
    assert [n.note for n in notes] == ["model_change", "rebased"]
    assert notes[0].window == swap and notes[0].note_detail["to"] == "m-v2"
    assert 2.0 < notes[1].note_detail["factor"] < 4.5  # ~ 0.30 / 0.10
    assert all(s.suppressed and s.score == 0 for s in res.scores
               if swap <= s.window < notes[1].window)
    assert res.state.model_version == "m-v2" and res.state.settle is None


def test_without_versions_the_same_swap_fires() -> None:
    """The control: 10% -> 50% is a spike to a detector that does not know the model (10% ->
    30% already scores ~47 there), and nothing with the versions."""
    swap = 8 * W_DAY + 37
    counts, totals, versions = feed(12, swap, 0.10, 0.50)
    assert any(e.kind == "firing" for e in replay(counts, totals, DetectorConfig()).events)
    res = replay(counts, totals, DetectorConfig(), versions=versions)
    assert [e for e in res.events if e.kind == "firing"] == []


def test_a_real_spike_after_the_rebase_still_fires() -> None:
    swap = 8 * W_DAY + 37
    counts, totals, versions = feed(12, swap, 0.10, 0.30)
    at = 10 * W_DAY + 140
    for w in range(at, at + 6):
        counts[w] += 40
        totals[w] += 40
    res = replay(counts, totals, DetectorConfig(), versions=versions)
    fired = [e for e in res.events if e.kind == "firing"]
    assert fired and at <= fired[0].window < at + 6


def test_settling_state_roundtrips_through_json() -> None:
    swap = 8 * W_DAY + 37
    counts, totals, versions = feed(10, swap, 0.10, 0.30)
    cfg = DetectorConfig()
    mid = swap + 10
    a = replay({w: c for w, c in counts.items() if w <= mid},
               {w: c for w, c in totals.items() if w <= mid}, cfg, versions=versions)
    assert a.state.settle is not None
    st = SeriesState.from_dict(json.loads(json.dumps(a.state.to_dict())))
    b = replay(counts, totals, cfg, state=st, versions=versions)
    full = replay(counts, totals, cfg, versions=versions)
    assert [s.score for s in a.scores + b.scores] == [s.score for s in full.scores]
    assert b.state.to_dict() == full.state.to_dict()


def test_old_states_without_model_fields_load() -> None:
    d = SeriesState().to_dict()
    del d["model_version"], d["settle"]
    assert SeriesState.from_dict(d).model_version is None
