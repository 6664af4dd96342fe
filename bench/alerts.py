"""`bench alerts --series DIR`: score spike detectors on NAB-format series (see docs/alerts.md).

DIR holds ``*.csv`` files (``timestamp,value``, one row per window) and ``labels.json``
(``{file: {"windows": [[start, end], ...]}}``, timestamps as in the CSVs). Each value is taken
as the series' negative count per window with no totals (NAB series are volumes only, so the
share signal is off). Three detectors, one run:

* ``yuqing``: the product detector (``services.alerts.replay``) at its default settings;
  a detection is the window of a ``firing`` event (one per episode);
* ``ewma``: the previous rules (``services.alerts.rules.run_series``, defaults), a detection
  per alerted window;
* ``rolling3sigma``: a reference, fires when a window exceeds the mean + 3 std of the
  previous 24 hours of windows.

Per series and in total: windows, detected, missed, false alerts, alerts/day, mean delay
(windows from a labelled window's start to its first detection) and the NAB standard score
(``bench.nab``). Prints a table, writes JSON (``bench/results/alerts.json`` or ``--json``).

Leave-one-series-out (``detectors.yuqing.loo``, always computed for ``yuqing``; ``--no-loo``
skips it): for each series, the fire score and re-arm that score best on the *other* series
(grid ``LOO_FIRE`` x ``LOO_REARM_H``, ties to the defaults) judge the held-out one; the
held-out scores are summed as for the total. It says how much of the in-sample figure comes
from choosing the settings on the series they are judged on. The per-window scores do not
depend on the lifecycle, so each series is replayed once and only the lifecycle is re-run
per grid point.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench import nab
from services.alerts import lifecycle, replay, rules
from services.alerts.config import bands_for

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "alerts.json"
Detector = Callable[[np.ndarray, int, int], list[int]]  # values, start window, window_s -> rows


class BadInput(ValueError):
    pass


def _ts(s: str) -> float:
    try:
        dt = datetime.fromisoformat(s.strip())
    except ValueError as exc:
        raise BadInput(f"bad timestamp {s!r}") from exc
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def load_series(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]]:
    """``{file: (timestamps_s, values, windows as inclusive row ranges)}``."""
    labels_path = folder / "labels.json"
    if not labels_path.is_file():
        raise BadInput(f"{labels_path} not found: the folder needs labels.json")
    try:
        labels = json.loads(labels_path.read_text())
    except json.JSONDecodeError as exc:
        raise BadInput(f"{labels_path}: not JSON ({exc})") from exc
    out = {}
    for name in sorted(labels):
        path = folder / name
        if not path.is_file():
            raise BadInput(f"labels.json names {name}, which is not in {folder}")
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        if not rows or not {"timestamp", "value"} <= set(rows[0]):
            raise BadInput(f"{path}: needs columns timestamp,value")
        ts = np.array([_ts(r["timestamp"]) for r in rows])
        xs = np.array([float(r["value"]) for r in rows])
        index = {t: i for i, t in enumerate(ts)}
        wins = []
        for pair in labels[name].get("windows", []):
            try:
                wins.append((index[_ts(pair[0])], index[_ts(pair[1])]))
            except (KeyError, IndexError, TypeError) as exc:
                raise BadInput(f"labels.json {name}: window {pair!r} is not two timestamps "
                               "of rows of the file") from exc
        out[name] = (ts, xs, wins)
    if not out:
        raise BadInput(f"{labels_path}: no series")
    return out


def detect_yuqing(values: np.ndarray, start: int, window_s: int) -> list[int]:
    cfg = replay.DetectorConfig(window_s=window_s)
    res = replay.replay_array(values, start, cfg)
    return [e.window - start for e in res.events if e.kind == "firing"]


def detect_ewma(values: np.ndarray, start: int, window_s: int) -> list[int]:
    cfg = rules.RuleConfig(window_s=window_s)
    counts = {start + i: int(v) for i, v in enumerate(values)}
    res = rules.run_series(counts, cfg, early=False)
    return sorted({v.window - start for v in res.verdicts})


def detect_rolling3sigma(values: np.ndarray, start: int, window_s: int) -> list[int]:
    n = max(2, 86400 // window_s)
    x = np.asarray(values, dtype=float)
    c1 = np.concatenate([[0.0], np.cumsum(x)])
    c2 = np.concatenate([[0.0], np.cumsum(x * x)])
    i = np.arange(n, len(x))
    mean = (c1[i] - c1[i - n]) / n
    var = np.maximum((c2[i] - c2[i - n]) / n - mean ** 2, 0.0)
    return (i[x[i] > mean + 3 * np.sqrt(var)]).tolist()


LOO_FIRE = (40.0, 45.0, 50.0, 55.0, 60.0)
LOO_REARM_H = (12, 24, 36, 48, 72)


def lifecycle_rows(scores: list[tuple[int, float, int]], cfg: lifecycle.LifecycleConfig,
                   start: int) -> list[int]:
    """Rows of the ``firing`` events the lifecycle gives on precomputed window scores."""
    lc = lifecycle.Lifecycle()
    out = []
    for w, score, neg in scores:
        tr = lifecycle.advance(lc, w, score, neg, cfg)
        if tr is not None and tr.kind == "firing":
            out.append(w - start)
    return out


def leave_one_out(series: dict, base: replay.DetectorConfig | None = None) -> dict:
    """Leave-one-series-out figures of the yuqing detector (see the module docstring)."""
    base = base or replay.DetectorConfig()
    prepared = {}
    for fname, (ts, xs, wins) in series.items():
        window_s = _window_s(ts)
        start = int(ts[0] // window_s)
        cfg = dataclasses.replace(base, window_s=window_s)
        res = replay.replay_array(xs, start, cfg)
        prepared[fname] = (start, window_s, len(xs), wins,
                           [(x.window, x.score, x.negatives) for x in res.scores])
    grid = [(f, r) for f in LOO_FIRE for r in LOO_REARM_H]
    default = (base.life.fire_score, base.life.rearm_windows * base.window_s // 3600)

    def score_of(fname: str, point: tuple[float, int]) -> tuple[nab.SeriesScore, int]:
        start, window_s, n, wins, sc = prepared[fname]
        life = lifecycle.LifecycleConfig(bands=bands_for(point[0]),
                                         resolve_score=base.life.resolve_score,
                                         quiet_windows=base.life.quiet_windows,
                                         rearm_windows=point[1] * 3600 // window_s)
        rows = lifecycle_rows(sc, life, start)
        return nab.score_series(n, wins, rows), len(rows)

    table_ = {(f, p): score_of(f, p) for f in prepared for p in grid}
    folds, held, n_alerts, days = [], [], 0, 0.0
    for out in prepared:
        def train(p: tuple[float, int], out: str = out) -> float:
            parts = [table_[(f, p)][0] for f in prepared if f != out]
            return nab.normalise(sum(x.raw for x in parts), sum(x.null for x in parts),
                                 sum(x.perfect for x in parts))
        best = max(grid, key=lambda p: (round(train(p), 6), p == default))
        s, k = table_[(out, best)]
        held.append(s)
        n_alerts += k
        days += prepared[out][2] * prepared[out][1] / 86400
        folds.append({"held_out": out, "fire_score": best[0], "rearm_hours": best[1],
                      "train_nab": round(train(best), 2), "nab_score": round(s.normalised, 2)})
    total = nab.SeriesScore(raw=sum(s.raw for s in held), null=sum(s.null for s in held),
                            perfect=sum(s.perfect for s in held),
                            windows=sum(s.windows for s in held),
                            detected=sum(s.detected for s in held),
                            false_alerts=sum(s.false_alerts for s in held),
                            delays=[d for s in held for d in s.delays])
    return {**_figures(total, n_alerts, days), "folds": folds,
            "grid": {"fire_score": list(LOO_FIRE), "rearm_hours": list(LOO_REARM_H)}}


def _window_s(ts: np.ndarray) -> int:
    return int(round(float(np.median(np.diff(ts))))) if len(ts) > 1 else 300


DETECTORS: dict[str, Detector] = {"yuqing": detect_yuqing, "ewma": detect_ewma,
                                  "rolling3sigma": detect_rolling3sigma}


def _figures(s: nab.SeriesScore, n_alerts: int, days: float) -> dict:
    return {"nab_score": round(s.normalised, 2), "windows": s.windows, "detected": s.detected,
            "missed": s.missed, "false_alerts": s.false_alerts, "alerts": n_alerts,
            "alerts_per_day": round(n_alerts / days, 3) if days else 0.0,
            "mean_delay_bins": round(float(np.mean(s.delays)), 1) if s.delays else None,
            "raw": round(s.raw, 4), "days": round(days, 2)}


def evaluate(series: dict, detectors: dict[str, Detector] | None = None) -> dict:
    detectors = detectors or DETECTORS
    out: dict = {"detectors": {}}
    for name, fn in detectors.items():
        per, scores, delays, n_alerts, days = {}, [], [], 0, 0.0
        for fname, (ts, xs, wins) in series.items():
            window_s = _window_s(ts)
            start = int(ts[0] // window_s)
            rows = fn(xs, start, window_s)
            s = nab.score_series(len(xs), wins, rows)
            d = len(xs) * window_s / 86400
            per[fname] = _figures(s, len(rows), d)
            scores.append(s)
            delays += s.delays
            n_alerts += len(rows)
            days += d
        total = nab.SeriesScore(raw=sum(s.raw for s in scores), null=sum(s.null for s in scores),
                                perfect=sum(s.perfect for s in scores),
                                windows=sum(s.windows for s in scores),
                                detected=sum(s.detected for s in scores),
                                false_alerts=sum(s.false_alerts for s in scores), delays=delays)
        tot = _figures(total, n_alerts, days)
        # alerts per *series* per day: the total's days are summed over series
        out["detectors"][name] = {"series": per, "total": tot}
    return out


def loo_line(result: dict) -> str:
    loo = result["detectors"].get("yuqing", {}).get("loo")
    if not loo:
        return ""
    folds = ", ".join(f"{f['held_out'].removeprefix('Twitter_volume_').removesuffix('.csv')}"
                      f" {f['fire_score']:g}/{f['rearm_hours']}h" for f in loo["folds"])
    return (f"yuqing leave-one-series-out: NAB {loo['nab_score']:.1f}, {loo['detected']}/"
            f"{loo['windows']} windows, {loo['false_alerts']} FP, "
            f"{loo['alerts_per_day']:.2f}/day (folds: fire/re-arm {folds})")


def table(result: dict) -> str:
    head = (f"{'detector':<14}{'series':<26}{'NAB':>7}{'win':>5}{'det':>5}{'miss':>5}"
            f"{'FP':>5}{'al/day':>8}{'delay':>7}")
    lines = [head, "-" * len(head)]
    for name, r in result["detectors"].items():
        for sname, f in [*r["series"].items(), ("TOTAL", r["total"])]:
            delay = "-" if f["mean_delay_bins"] is None else f"{f['mean_delay_bins']:.0f}"
            lines.append(f"{name:<14}{sname[:25]:<26}{f['nab_score']:>7.1f}{f['windows']:>5}"
                         f"{f['detected']:>5}{f['missed']:>5}{f['false_alerts']:>5}"
                         f"{f['alerts_per_day']:>8.2f}{delay:>7}")
    return "\n".join(lines)


def bench_alerts(series: Path, json_path: Path | None = None, loo: bool = True) -> dict:
    """The benchmark (typer-compatible: ``series: Path``, ``json_path: Path | None``)."""
    data = load_series(series)
    result = evaluate(data)
    if loo and len(data) > 1:
        result["detectors"]["yuqing"]["loo"] = leave_one_out(data)
    result["series_dir"] = series.name
    result["note"] = ("NAB standard profile, normalised 0 (no detections) .. 100 (perfect); "
                      "alerts_per_day: per series per day; delay in windows (rows)")
    print(table(result))
    if loo and len(data) > 1:
        print(loo_line(result))
    path = json_path or DEFAULT_JSON
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench alerts", description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=Path, required=True, help="folder of NAB-format series")
    ap.add_argument("--json", type=Path, default=None, help=f"output (default {DEFAULT_JSON})")
    ap.add_argument("--no-loo", action="store_true",
                    help="skip the leave-one-series-out figures (detectors.yuqing.loo)")
    args = ap.parse_args(argv)
    try:
        bench_alerts(args.series, args.json, loo=not args.no_loo)
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
