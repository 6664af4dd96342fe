"""The pure parts of ``yuqing backtest``: ranges, overrides, aggregation pages, labels."""
from __future__ import annotations

import builtins
import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from typer.testing import CliRunner

from services.alerts import backtest as bt
from services.alerts.model import DetectorConfig
from services.alerts.replay import replay
from services.cli import app

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def test_ranges() -> None:
    assert bt.resolve_range(None, None, "7d", now=NOW) == (NOW - timedelta(days=7), NOW)
    s, e = bt.resolve_range("2026-03-01", "2026-03-02T06:00:00Z", None)
    assert (s.isoformat(), e.isoformat()) == ("2026-03-01T00:00:00+00:00",
                                              "2026-03-02T06:00:00+00:00")
    for args, msg in [((None, None, None), "give a time range"),
                      (("2026-03-02", "2026-03-01", None), "empty range"),
                      (("2026-03-01", None, "7d"), "not both"),
                      ((None, None, "7 days"), "number and a unit"),
                      (("yesterday", None, None), "ISO time")]:
        with pytest.raises(bt.BadInput, match=msg):
            bt.resolve_range(*args, now=NOW)
    with pytest.raises(bt.BadInput, match="MAX_RANGE_DAYS"):
        bt.resolve_range(None, None, "100d", now=NOW, max_days=90)


def test_overrides() -> None:
    cfg = bt.config_with(DetectorConfig(), ["fire_score=60", "min_count=3", "rearm-windows=12",
                                            "spans=6,12", "settle_hours=2"])
    assert cfg.life.fire_score == 60 and dict(cfg.life.bands)["critical"] == 90
    assert (cfg.min_count, cfg.life.rearm_windows, cfg.spans, cfg.settle_hours) == \
        (3, 12, (6, 12), 2)
    for bad, msg in [("nope=1", "unknown setting"), ("min_count=x", "not a int"),
                     ("fire_score", "key=value"), ("window_s=7", "divide an hour")]:
        with pytest.raises(bt.BadInput, match=msg):
            bt.config_with(DetectorConfig(), [bad])


def _page(rows: list[tuple[str, int, int, int, dict]], after: dict | None) -> dict:
    return {"aggregations": {"series": {"after_key": after, "buckets": [
        {"key": {"s": s, "w": w * 300 * 1000}, "doc_count": tot, "neg": {"doc_count": neg},
         "mv": {"buckets": [{"key": k, "doc_count": c} for k, c in mv.items()]}}
        for s, w, tot, neg, mv in rows]}}}


def test_composite_pages_become_series() -> None:
    data: dict = {}
    after = bt.read_page(data, "entities", _page([("AAPL", 10, 5, 2, {"v1": 5}),
                                                  ("MSFT", 10, 1, 0, {})], {"s": "MSFT"}),
                         300, {"AAPL"})
    assert after == {"s": "MSFT"}
    bt.read_page(data, "topics", _page([("legal", 11, 3, 3, {"v2": 3})], None), 300, set())
    assert bt.read_page(data, "topics", _page([], None), 300, set()) is None
    a = data[bt.Series("AAPL", "*")]
    assert (a.counts, a.totals, a.versions) == ({10: 2}, {10: 5}, {10: "v1"})
    assert bt.Series("MSFT", "*") not in data  # not asked for
    assert bt.Series("*", "legal").name == "*/legal"
    body = bt.composite_body("entities", NOW, NOW + timedelta(days=1), 300, ["AAPL"],
                             {"s": "A", "w": 0})
    comp = body["aggs"]["series"]["composite"]
    assert comp["after"] == {"s": "A", "w": 0} and body["size"] == 0
    assert comp["sources"][1]["w"]["date_histogram"]["fixed_interval"] == "300s"


def _series(spike_at: int) -> bt.SeriesData:
    rng = np.random.default_rng(4)
    tot = rng.poisson(20, 3 * 288)
    neg = rng.binomial(tot, 0.2)
    neg[spike_at:spike_at + 6] += 30
    tot[spike_at:spike_at + 6] += 30
    return bt.SeriesData({i: int(v) for i, v in enumerate(neg)},
                         {i: int(v) for i, v in enumerate(tot)})


def test_run_equals_replay_and_labels_score() -> None:
    cfg = DetectorConfig()
    sd = _series(700)
    start = datetime.fromtimestamp(0, tz=UTC)
    end = datetime.fromtimestamp(3 * 86400, tz=UTC)
    res = bt.run({bt.Series("X", "*"): sd}, cfg, start, end)
    want = replay(sd.counts, sd.totals, cfg, upto=3 * 288 - 1)
    assert [(e.kind, e.window, e.score) for e in res.series[0].result.events] == \
        [(e.kind, e.window, e.score) for e in want.events]
    fired = [e.window for _, e in res.firings()]
    assert fired and 700 <= fired[0] < 706
    iso = lambda w: datetime.fromtimestamp(w * 300, tz=UTC).isoformat()  # noqa: E731
    score = bt.score_labels(res, {"X": [(690 * 300.0, 720 * 300.0), (100 * 300.0, 110 * 300.0)]})
    assert (score.windows, score.detected, score.missed) == (2, 1, 1)
    assert score.mean_delay == fired[0] - 690 and score.false_alerts == len(fired) - 1
    text = bt.table(res)
    assert "firing" in text and "alerts/series/day" in text and iso(fired[0])[:10] in text
    with pytest.raises(bt.BadInput, match="no documents for: Y"):
        bt.score_labels(res, {"Y": []})


def test_malformed_labels(tmp_path) -> None:
    p = tmp_path / "labels.json"
    for text, msg in [("{", "not JSON"), ("[]", "expected an object"),
                      ('{"A": {"windows": 3}}', "expected"),
                      ('{"A": {"windows": [["2026-01-01"]]}}', "not two ISO times"),
                      ('{"A": {"windows": [["2026-01-02", "2026-01-01"]]}}', "ends before"),
                      ('{"A": {"windows": [["x", "2026-01-01"]]}}', "ISO time")]:
        p.write_text(text)
        with pytest.raises(bt.BadInput, match=msg):
            bt.load_labels(p)
    with pytest.raises(bt.BadInput, match="cannot read"):
        bt.load_labels(tmp_path / "missing.json")
    p.write_text(json.dumps({"AAPL": {"windows": [["2026-01-01", "2026-01-01T03:00"]]}}))
    assert bt.load_labels(p)["AAPL"][0][1] - bt.load_labels(p)["AAPL"][0][0] == 3 * 3600


def test_plot_without_matplotlib_is_one_line(tmp_path, monkeypatch) -> None:
    real = builtins.__import__

    def no_mpl(name, *a, **kw):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_mpl)
    res = bt.run({bt.Series("X", "*"): _series(700)}, DetectorConfig(),
                 datetime.fromtimestamp(0, tz=UTC), datetime.fromtimestamp(86400, tz=UTC))
    with pytest.raises(bt.BadInput, match=r"pip install 'yuqing\[plot\]'"):
        bt.plot(res, tmp_path)


def test_plot_writes_one_png_per_series(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    res = bt.run({bt.Series("X", "*"): _series(700), bt.Series("*", "legal"): _series(300)},
                 DetectorConfig(), datetime.fromtimestamp(0, tz=UTC),
                 datetime.fromtimestamp(3 * 86400, tz=UTC))
    paths = bt.plot(res, tmp_path / "png")
    assert sorted(p.name for p in paths) == ["X.png", "topic-legal.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)


@pytest.mark.parametrize("args, msg", [
    (["--window", "7x"], "--window '7x'"),
    (["--since", "2026-03-02", "--until", "2026-03-01"], "empty range"),
    (["--window", "1d", "--set", "bogus=1"], "unknown setting"),
])
def test_cli_bad_input_exits_non_zero_with_one_line(args, msg) -> None:
    out = CliRunner().invoke(app, ["backtest", *args])
    assert out.exit_code == 2
    err = out.stderr if hasattr(out, "stderr") else out.output
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and msg in lines[0], err


def test_a_window_model_version_is_per_language_as_the_stream_keeps_it() -> None:
    from services.alerts.detector import window_version

    bucket = {"ml": {"buckets": [
        {"key": "en", "doc_count": 9, "mv": {"buckets": [{"key": "minilm-b", "doc_count": 6}]}},
        {"key": "zh", "doc_count": 3, "mv": {"buckets": [{"key": "bge-a", "doc_count": 3}]}}]}}
    mv = bt.bucket_versions(bucket)
    assert mv == {"minilm-b": 6, "zh=bge-a": 3}
    # the overall majority would be minilm-b alone; the stream's key names both models
    assert window_version(mv) == "minilm-b;zh=bge-a"
    body = bt.composite_body("entities", datetime(2026, 1, 1, tzinfo=UTC),
                             datetime(2026, 1, 2, tzinfo=UTC), 300, [], None)
    ml = body["aggs"]["series"]["aggs"]["ml"]
    assert ml["terms"]["field"] == "sentiment.model_language" and ml["terms"]["missing"] == "en"
