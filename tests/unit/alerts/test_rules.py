"""Spike rules on synthetic Poisson series with injected spikes of known position.

Reports precision, recall and detection delay (printed; run with ``-s`` to see them) and
asserts minimum levels. Delay is measured the way the stream sees it: documents of a window
arrive spread over the window, so a spike detected at its k-th of x negatives is detected
``k/x`` of a window after it began.
"""
from __future__ import annotations

import numpy as np
import pytest

from services.alerts import rules

CFG = rules.RuleConfig(window_s=300, alpha=0.1, warmup_windows=6, min_count=5, cooldown_s=900)


def _series(rate: float, n: int, spikes: list[int], boost: int, seed: int) -> dict[int, int]:
    rng = np.random.default_rng(seed)
    xs = rng.poisson(rate, size=n)
    for w in spikes:
        xs[w] += boost
    return {w: int(x) for w, x in enumerate(xs)}


def _evaluate(rate: float, seeds: range) -> tuple[float, float, float, int, int]:
    """Precision, recall, mean delay (fraction of a window), spikes, alerts over many series."""
    tp = fp = fn = 0
    delays: list[float] = []
    for seed in seeds:
        rng = np.random.default_rng(10_000 + seed)
        n = 288  # a day of 5-minute windows
        spikes = sorted(rng.choice(np.arange(24, n, 36), size=3, replace=False).tolist())
        # a clear spike: 8 Poisson standard deviations above the usual level
        boost = max(CFG.min_count + 3, int(round(8 * np.sqrt(rate + CFG.var_floor))))
        counts = _series(rate, n, spikes, boost, seed)
        res = rules.run_series(counts, CFG, early=True)
        first_verdict: dict[int, rules.Verdict] = {}
        for v in res.verdicts:
            first_verdict.setdefault(v.window, v)
        for w in spikes:
            if w in first_verdict:
                tp += 1
                delays.append(first_verdict[w].count / counts[w])
            else:
                fn += 1
        fp += sum(1 for w in first_verdict if w not in spikes)
    alerts = tp + fp
    precision = tp / alerts if alerts else 1.0
    recall = tp / (tp + fn)
    return precision, recall, float(np.mean(delays)) if delays else float("nan"), tp + fn, alerts


@pytest.mark.parametrize("rate", [0.3, 2.0, 8.0, 25.0])
def test_precision_recall_delay_on_poisson_series(rate: float) -> None:
    precision, recall, delay, spikes, alerts = _evaluate(rate, range(40))
    print(f"\nrate={rate:5.1f}/window spikes={spikes} alerts={alerts} precision={precision:.3f} "
          f"recall={recall:.3f} mean delay={delay:.2f} window ({delay * CFG.window_s:.0f} s)")
    assert recall >= 0.9
    assert precision >= 0.9
    assert delay < 1.0  # fires before the spike window has ended


def test_calm_series_never_fires() -> None:
    for seed in range(20):
        counts = _series(3.0, 288, [], 0, seed)
        assert rules.run_series(counts, CFG).verdicts == [], seed


def test_min_volume_blocks_small_spikes_on_quiet_series() -> None:
    counts = {w: 0 for w in range(50)}
    counts[30] = CFG.min_count - 1  # huge z on a silent series, but too few documents
    assert rules.run_series(counts, CFG).verdicts == []
    counts[30] = CFG.min_count
    assert [v.window for v in rules.run_series(counts, CFG).verdicts] == [30]


def test_no_verdict_during_warmup() -> None:
    counts = {w: 0 for w in range(CFG.warmup_windows)}
    counts[CFG.warmup_windows - 1] = 50
    assert rules.run_series(counts, CFG).verdicts == []


def test_cooldown_suppresses_repeat_then_allows_after() -> None:
    cool_windows = CFG.cooldown_s // CFG.window_s
    counts = {w: 0 for w in range(60)}
    counts[20] = counts[21] = 40  # the next window is within the cooldown
    counts[20 + cool_windows + 5] = 40  # well after
    fired = sorted({v.window for v in rules.run_series(counts, CFG).verdicts})
    assert fired == [20, 20 + cool_windows + 5]


def test_severity_escalates_within_window_only_upwards() -> None:
    counts = {w: 0 for w in range(30)}
    counts[20] = 30
    verdicts = [v for v in rules.run_series(counts, CFG).verdicts if v.window == 20]
    severities = [v.severity for v in verdicts]
    assert severities == ["info", "warning", "critical"]
    assert verdicts[0].count == CFG.min_count


def test_baseline_adapts_to_a_busier_series() -> None:
    # a series that has always had ~20 negatives a window does not fire at 25
    counts = _series(20.0, 100, [], 0, seed=1)
    counts[100] = 26
    assert 100 not in {v.window for v in rules.run_series(counts, CFG).verdicts}
    b = rules.run_series(counts, CFG).baseline
    assert 15 < b.mean < 25


def test_spike_does_not_poison_baseline() -> None:
    counts = {w: 1 for w in range(40)}
    counts[20] = 200
    b = rules.run_series({w: c for w, c in counts.items() if w <= 20}, CFG).baseline
    # winsorised: one 200 does not move the mean anywhere near 200 * alpha = 20
    assert b.mean < 2.0


def test_baseline_roundtrips_through_json() -> None:
    b = rules.run_series(_series(2.0, 50, [], 0, seed=3), CFG).baseline
    assert rules.Baseline.from_dict(b.to_dict()) == b


def test_advance_absorbs_missing_windows_as_zero() -> None:
    b = rules.Baseline(mean=10.0, var=4.0, n=10, last_closed=5)
    b2 = rules.advance(b, 15, {}, CFG)
    assert b2.last_closed == 15 and b2.n == 20 and b2.mean < 10.0 * (1 - CFG.alpha) ** 9
