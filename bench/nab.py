"""The Numenta Anomaly Benchmark's scoring, re-implemented for binary detections.

What NAB does (``nab/sweeper.py`` and ``nab/runner.py``, standard profile), and so what this
module does, for one series of ``n`` rows with labelled windows ``[(left, right), ...]``
(inclusive row indices) and the rows where a detector fired:

* **Probation**: the first ``min(floor(0.15 * n), 0.15 * 5000)`` rows are not scored at all
  (a detector needs history; NAB caps probation at 750 rows).
* **Scaled sigmoid**: ``s(x) = 2 / (1 + exp(5 x)) - 1`` (``-1`` for ``x >= 3``).
* **Inside a window** of width ``W = right - left + 1`` a detection at row ``i`` has relative
  position ``-(right - i + 1) / W`` (``-1`` at the left edge, about 0 at the right edge) and
  is worth ``A_TP * s(position) / s(-1)`` (so a detection at a window's first row is worth
  exactly ``A_TP``). A window is worth its *best* (earliest) detection; a window with none
  costs ``-A_FN``. Later detections in a detected window neither add nor cost anything.
* **Outside all windows** a detection is a false positive worth ``A_FP * s(x)`` (negative),
  ``x = |i - right_prev| / (W_prev - 1)`` measured from the end of the previous window (so a
  detection just after a window costs little), or ``-A_FP`` when no window came before.
  Every false positive counts.
* **Normalised score**: ``100 * (raw - null) / (perfect - null)`` where the null detector
  (never fires) scores ``-A_FN`` per window and the perfect one (fires at each window's first
  row) ``+A_TP`` per window; totals are normalised from the summed raw figures.

Only windows with at least one row after probation are scored (NAB's windows all are).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

STANDARD = {"tp": 1.0, "fp": 0.11, "fn": 1.0}


def scaled_sigmoid(x: float) -> float:
    if x >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * x)) - 1.0


def probation_rows(n: int, percent: float = 0.15) -> int:
    return int(min(math.floor(percent * n), percent * 5000))


@dataclass
class SeriesScore:
    raw: float
    null: float
    perfect: float
    windows: int
    detected: int
    false_alerts: int
    delays: list[int] = field(default_factory=list)  # rows from window start to first detection

    @property
    def missed(self) -> int:
        return self.windows - self.detected

    @property
    def normalised(self) -> float:
        return normalise(self.raw, self.null, self.perfect)


def normalise(raw: float, null: float, perfect: float) -> float:
    if perfect == null:
        return 0.0
    return 100.0 * (raw - null) / (perfect - null)


def score_series(n: int, windows: Sequence[tuple[int, int]], detections: Iterable[int],
                 weights: dict[str, float] = STANDARD, probation_percent: float = 0.15
                 ) -> SeriesScore:
    """NAB score of one series: ``n`` rows, inclusive ``windows`` sorted and disjoint,
    ``detections`` row indices where the detector fired."""
    prob = probation_rows(n, probation_percent)
    wins = sorted((int(a), int(b)) for a, b in windows)
    for (a1, b1), (a2, _) in zip(wins, wins[1:], strict=False):
        if a2 <= b1:
            raise ValueError(f"windows overlap: ({a1}, {b1}) and ({a2}, ...)")
    scored = [(a, b) for a, b in wins if b >= prob]
    max_tp = scaled_sigmoid(-1.0)
    best: dict[int, float] = {}
    first: dict[int, int] = {}
    fp_sum = 0.0
    false_alerts = 0
    ends = [b for _, b in wins]
    for i in sorted(set(int(d) for d in detections)):
        if i < prob or i >= n:
            continue
        k = _window_at(wins, i)
        if k is not None:
            a, b = wins[k]
            width = b - a + 1
            value = weights["tp"] * scaled_sigmoid(-(b - i + 1) / width) / max_tp
            if value > best.get(k, -math.inf):
                best[k] = value
            first.setdefault(k, i)
            continue
        false_alerts += 1
        prev = [j for j, e in enumerate(ends) if e < i]
        if prev:
            a, b = wins[prev[-1]]
            width = b - a + 1
            x = abs(i - b) / float(width - 1) if width > 1 else 3.0
            fp_sum += weights["fp"] * scaled_sigmoid(x)
        else:
            fp_sum += -weights["fp"]
    raw = fp_sum
    for k, (a, b) in enumerate(wins):
        if (a, b) not in scored:
            continue
        raw += max(best.get(k, -weights["fn"]), -weights["fn"])
    detected = sum(1 for k, w in enumerate(wins) if w in scored and k in best)
    delays = [first[k] - wins[k][0] for k in sorted(first) if wins[k] in scored]
    return SeriesScore(raw=raw, null=-weights["fn"] * len(scored),
                       perfect=weights["tp"] * len(scored), windows=len(scored),
                       detected=detected, false_alerts=false_alerts, delays=delays)


def _window_at(wins: Sequence[tuple[int, int]], i: int) -> int | None:
    for k, (a, b) in enumerate(wins):
        if a <= i <= b:
            return k
        if a > i:
            return None
    return None
