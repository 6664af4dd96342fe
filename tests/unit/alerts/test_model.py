"""The seasonal negative-binomial detector (pure API) on synthetic series."""
from __future__ import annotations

import json

import numpy as np
import pytest

from services.alerts import lifecycle, scoring
from services.alerts.model import DetectorConfig, SeriesState
from services.alerts.replay import replay, replay_array

CFG = DetectorConfig()
W_DAY = 288


def daily(days: int, seed: int, level: float = 8.0, amp: float = 0.8) -> np.ndarray:
    """Negative binomial counts with a strong time-of-day cycle."""
    rng = np.random.default_rng(seed)
    t = np.arange(days * W_DAY)
    mu = level * (1 + amp * np.sin(2 * np.pi * t / W_DAY))
    r = 10.0
    return rng.negative_binomial(r, r / (r + mu))


def test_nb_tail_matches_known_values() -> None:
    assert scoring.nb_sf(0, 3.0, 0.1) == 1.0
    # Poisson limit: P(Y >= 1 | mean 1) = 1 - e^-1
    assert scoring.nb_sf(1, 1.0, 1e-9) == pytest.approx(1 - np.exp(-1), rel=1e-6)
    assert scoring.nb_sf(50, 5.0, 0.5) < scoring.nb_sf(20, 5.0, 0.5) < 1.0


def test_daily_cycle_does_not_fire() -> None:
    for seed in range(3):
        res = replay_array(daily(10, seed), 0, CFG)
        assert [e for e in res.events if e.kind == "firing"] == [], seed


def test_a_spike_fires_once_then_resolves() -> None:
    x = daily(8, 1)
    at = 6 * W_DAY + 100
    x[at:at + 6] += 40
    res = replay_array(x, 0, CFG)
    kinds = [(e.kind, e.window) for e in res.events]
    assert kinds[0][0] == "firing" and at <= kinds[0][1] < at + 6
    assert kinds[-1][0] == "resolved"
    assert sum(k == "firing" for k, _ in kinds) == 1
    fired = res.events[0]
    assert fired.score >= CFG.life.fire_score and res.events[-1].peak_score >= fired.score


def test_no_verdict_during_warmup() -> None:
    x = np.zeros(CFG.warmup_hours * 12, dtype=int)
    x[-1] = 500
    assert replay_array(x, 0, CFG).events == []


def test_causal_scores_do_not_depend_on_the_future() -> None:
    x = daily(4, 2)
    full = replay_array(x, 0, CFG).scores
    part = replay_array(x[: 3 * W_DAY], 0, CFG).scores
    assert [s.score for s in full[: 3 * W_DAY]] == [s.score for s in part]


def test_state_roundtrips_through_json_and_resumes_identically() -> None:
    x = daily(3, 3)
    counts = {w: int(v) for w, v in enumerate(x)}
    whole = replay(counts, None, CFG)
    first = replay({w: c for w, c in counts.items() if w < 500}, None, CFG)
    st = SeriesState.from_dict(json.loads(json.dumps(first.state.to_dict())))
    rest = replay(counts, None, CFG, state=st)
    assert [s.score for s in first.scores + rest.scores] == [s.score for s in whole.scores]
    assert rest.state.to_dict() == whole.state.to_dict()


def test_share_signal_damps_a_busy_neutral_day() -> None:
    rng = np.random.default_rng(4)
    n = 8 * W_DAY
    tot = rng.poisson(50, size=n)
    neg = rng.binomial(tot, 0.2)
    at = 7 * W_DAY
    tot[at:at + 6] *= 3  # three times the documents, the usual share of negatives
    neg[at:at + 6] = rng.binomial(tot[at:at + 6], 0.2)
    with_totals = replay_array(neg, 0, CFG, totals=tot)
    volume_only = replay_array(neg, 0, CFG)
    assert max(s.score for s in volume_only.scores[at:at + 6]) >= CFG.life.fire_score
    assert max(s.score for s in with_totals.scores[at:at + 6]) < CFG.life.fire_score


def test_lifecycle_escalates_resolves_and_rearms() -> None:
    lc = lifecycle.LifecycleConfig(bands=(("critical", 90), ("warning", 75), ("info", 50)),
                                   resolve_score=25, quiet_windows=2, rearm_windows=5)
    st = lifecycle.Lifecycle()
    scores = [0, 60, 80, 95, 40, 10, 10, 70, 0, 0, 0, 0, 0, 60]
    got = [(w, t.kind, t.severity) for w, s in enumerate(scores)
           if (t := lifecycle.advance(st, w, s, 1, lc)) is not None]
    assert got == [(1, "firing", "info"), (2, "escalated", "warning"),
                   (3, "escalated", "critical"), (6, "resolved", "critical"),
                   (13, "firing", "info")]  # the 70 at window 7 is inside the re-arm


def test_a_sparse_series_fires_on_a_burst_of_negatives() -> None:
    """One document every few windows, ~15% negative; then 16 negative ones at once. The
    expectation floor must not hide the shift of share (it once put the usual share at ~50%)."""
    rng = np.random.default_rng(7)
    counts: dict[int, int] = {}
    totals: dict[int, int] = {}
    for w in range(60):
        t = int(rng.random() < 0.4)
        totals[w], counts[w] = t, int(t and rng.random() < 0.15)
    totals[49], counts[49] = 16, 16
    cfg = DetectorConfig(warmup_hours=2)
    events = replay(counts, totals, cfg).events
    assert [(e.kind, e.window) for e in events][:1] == [("firing", 49)]
