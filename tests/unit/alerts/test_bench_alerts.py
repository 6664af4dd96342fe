"""bench.alerts on a tiny hand-made NAB-format folder: JSON shape and bad input."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np

from bench import alerts


def _write(tmp, values, windows) -> None:
    t0 = datetime(2015, 3, 2, tzinfo=UTC)
    ts = [(t0 + timedelta(minutes=5 * i)).strftime("%Y-%m-%d %H:%M:%S") for i in range(len(values))]
    (tmp / "s.csv").write_text("timestamp,value\n" + "".join(
        f"{t},{int(v)}\n" for t, v in zip(ts, values, strict=True)))
    (tmp / "labels.json").write_text(json.dumps(
        {"s.csv": {"windows": [[ts[a] + ".000000", ts[b] + ".000000"] for a, b in windows]}}))


def test_json_has_the_checked_keys(tmp_path) -> None:
    rng = np.random.default_rng(0)
    x = rng.poisson(10, size=288 * 4)
    x[3 * 288:3 * 288 + 12] += 80
    _write(tmp_path, x, [(3 * 288 - 20, 3 * 288 + 40)])
    out = tmp_path / "out.json"
    assert alerts.main(["--series", str(tmp_path), "--json", str(out)]) == 0
    got = json.loads(out.read_text())
    for det in ("yuqing", "ewma", "rolling3sigma"):
        total = got["detectors"][det]["total"]
        assert {"nab_score", "alerts_per_day", "windows", "detected", "false_alerts",
                "mean_delay_bins"} <= set(total)
    assert got["detectors"]["yuqing"]["total"]["detected"] == 1


def test_bad_labels_exit_non_zero_with_one_line(tmp_path, capsys) -> None:
    _write(tmp_path, [1] * 10, [])
    (tmp_path / "labels.json").write_text('{"s.csv": {"windows": [["nope", "x"]]}}')
    assert alerts.main(["--series", str(tmp_path), "--json", str(tmp_path / "o.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")


def test_leave_one_series_out_is_reported(tmp_path) -> None:
    rng = np.random.default_rng(1)
    series = {}
    t0 = datetime(2015, 3, 2, tzinfo=UTC).timestamp()
    for name, at in (("a.csv", 3 * 288), ("b.csv", 3 * 288 + 100)):
        x = rng.poisson(10, size=288 * 4)
        x[at:at + 12] += 80
        ts = t0 + 300 * np.arange(len(x))
        series[name] = (ts, x.astype(float), [(at - 20, at + 40)])
    loo = alerts.leave_one_out(series)
    assert {"nab_score", "alerts_per_day", "windows", "detected", "false_alerts",
            "mean_delay_bins"} <= set(loo)
    assert [f["held_out"] for f in loo["folds"]] == ["a.csv", "b.csv"]
    assert loo["windows"] == 2 and loo["detected"] == 2
    # the lifecycle re-run on precomputed scores is the replay's own lifecycle
    cfg = alerts.replay.DetectorConfig()
    res = alerts.replay.replay_array(series["a.csv"][1], 0, cfg)
    rows = alerts.lifecycle_rows([(s.window, s.score, s.negatives) for s in res.scores],
                                 cfg.life, 0)
    assert rows == [e.window for e in res.events if e.kind == "firing"]
