"""Backtest: replay the detector over history already in Elasticsearch (``yuqing backtest``).

What it does, and what the pure parts are (unit-tested without a cluster):

* ``resolve_range`` / ``parse_duration``: ``--since/--until`` (ISO times) or ``--window 7d``
  (the last 7 days up to ``--until`` or now) -> ``[start, end)``; a bad range is
  ``BadInput`` with one line saying what to fix;
* ``config_with``: the production ``DetectorConfig`` (from the settings) with overrides
  ``key=value`` (``fire_score``, any ``DetectorConfig`` or ``LifecycleConfig`` field);
* ``fetch_series`` (Elasticsearch): per series, per window, the negatives, the totals and
  the most frequent sentiment model version, from composite aggregations (a ``terms``
  source on ``entities`` or ``topics`` and a ``date_histogram`` of ``published_at`` at the
  detection window) over the namespace's documents alias -- never by fetching documents.
  Read-only: nothing is written to any index or topic;
* ``run``: ``services.alerts.replay.replay`` per series -- the function the stream detector
  is tested against -- so the alerts are the ones production would have raised on those
  documents (given the same history: a backtest starts each series at its first window in
  the range, or ``lead`` earlier to learn first);
* ``load_labels`` / ``score_labels``: NAB-style ``labels.json`` (``{series: {"windows":
  [[start, end], ...]}}``, series as printed: ``AAPL`` or ``*/legal``) -> detected, missed,
  false alerts, mean delay (windows from a labelled window's start to its first ``firing``);
* ``plot``: one PNG per series (counts, expected band, scores, alerts), matplotlib imported
  lazily (the ``plot`` extra).
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from services.alerts import lifecycle, model, replay
from services.alerts.config import bands_for
from services.alerts.detector import Series, window_version

COMPOSITE_PAGE = 1000


class BadInput(ValueError):
    """A user mistake; the message is one line saying what to fix."""


# ------------------------------------------------------------------------------ time range
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str, what: str = "--window") -> float:
    m = _DURATION.match(text or "")
    if not m:
        raise BadInput(f"{what} {text!r}: use a number and a unit, e.g. 90m, 12h, 7d, 2w")
    seconds = float(m[1]) * _UNIT_S[m[2]]
    if seconds <= 0:
        raise BadInput(f"{what} {text!r}: must be longer than 0")
    return seconds


def parse_time(text: str, what: str) -> datetime:
    if text.strip().lower() == "now":
        return datetime.now(UTC)
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadInput(f"{what} {text!r}: use an ISO time, e.g. 2026-03-01 or "
                       "2026-03-01T09:30:00Z") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def resolve_range(since: str | None, until: str | None, window: str | None,
                  now: datetime | None = None, max_days: float | None = None
                  ) -> tuple[datetime, datetime]:
    """``[start, end)`` from ``--since/--until`` or ``--window`` (with an optional until)."""
    now = now or datetime.now(UTC)
    if since and window:
        raise BadInput("give --since (with --until) or --window, not both")
    if not since and not window:
        raise BadInput("give a time range: --window 7d, or --since ISO [--until ISO]")
    end = parse_time(until, "--until") if until else now
    start = (parse_time(since, "--since") if since
             else end - timedelta(seconds=parse_duration(window or "")))
    if start >= end:
        raise BadInput(f"empty range: --since {start.isoformat()} is not before --until "
                       f"{end.isoformat()}")
    if max_days is not None and (end - start).total_seconds() > max_days * 86400:
        raise BadInput(f"range of {(end - start).total_seconds() / 86400:.1f} days is longer "
                       f"than YUQING_API_MAX_RANGE_DAYS={max_days:g}: shorten it or raise that")
    return start, end


# ------------------------------------------------------------------------------ config
_LIFE_FIELDS = {f.name: f for f in fields(lifecycle.LifecycleConfig) if f.name != "bands"}
_MODEL_FIELDS = {f.name: f for f in fields(model.DetectorConfig) if f.name != "life"}


def _coerce(key: str, value: str, current: Any) -> Any:
    try:
        if isinstance(current, bool):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return value.lower() in ("true", "1")
        if isinstance(current, int):
            return int(value)
        if isinstance(current, float):
            return float(value)
        if isinstance(current, tuple):
            return tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise BadInput(f"--set {key}={value}: not a {type(current).__name__}") from None
    return value


def config_with(base: model.DetectorConfig, overrides: Iterable[str]) -> model.DetectorConfig:
    """``base`` with ``key=value`` overrides (``fire_score`` moves the score bands)."""
    cfg, life = base, base.life
    for item in overrides:
        key, sep, value = item.partition("=")
        key, value = key.strip().replace("-", "_"), value.strip()
        if not sep or not key or not value:
            raise BadInput(f"--set {item!r}: use key=value, e.g. --set fire_score=60")
        if key == "fire_score":
            life = replace(life, bands=bands_for(_coerce(key, value, 0.0)))
        elif key in _LIFE_FIELDS:
            life = replace(life, **{key: _coerce(key, value, getattr(life, key))})
        elif key in _MODEL_FIELDS:
            cfg = replace(cfg, **{key: _coerce(key, value, getattr(cfg, key))})
        else:
            known = sorted({"fire_score", *_LIFE_FIELDS, *_MODEL_FIELDS})
            raise BadInput(f"--set {key}: unknown setting; one of {', '.join(known)}")
    cfg = replace(cfg, life=life)
    if cfg.window_s <= 0 or 3600 % cfg.window_s:
        raise BadInput(f"window_s={cfg.window_s}: must divide an hour (e.g. 60, 300, 900)")
    if not cfg.spans or min(cfg.spans) < 1:
        raise BadInput("spans: give window counts >= 1, e.g. --set spans=6")
    return cfg


# ------------------------------------------------------------------------------ series


@dataclass
class SeriesData:
    counts: dict[int, int] = field(default_factory=dict)  # window -> negatives
    totals: dict[int, int] = field(default_factory=dict)  # window -> documents
    versions: dict[int, str] = field(default_factory=dict)  # window -> model version


def add_bucket(data: dict[Series, SeriesData], key: Series, window: int, total: int,
               negatives: int, versions: Mapping[str, int]) -> None:
    sd = data.setdefault(key, SeriesData())
    sd.totals[window] = sd.totals.get(window, 0) + int(total)
    sd.counts[window] = sd.counts.get(window, 0) + int(negatives)
    ver = window_version(dict(versions))
    if ver is not None:
        sd.versions[window] = ver


# Entities per (entity, window) bucket whose negatives are read: the bucket's own entity is
# among them unless 256 others that its documents also name out-count it in one window.
NEGATIVE_FOR_TERMS = 256


def composite_body(dim: str, start: datetime, end: datetime, window_s: int,
                   values: Sequence[str], after: dict | None) -> dict:
    """One page of the composite aggregation of ``dim`` (``entities`` or ``topics``)."""
    filters: list[dict] = [{"range": {"published_at": {"gte": start.isoformat(),
                                                       "lt": end.isoformat()}}}]
    if values:
        filters.append({"terms": {dim: list(values)}})
    comp: dict[str, Any] = {"size": COMPOSITE_PAGE, "sources": [
        {"s": {"terms": {"field": dim}}},
        {"w": {"date_histogram": {"field": "published_at",
                                  "fixed_interval": f"{window_s}s"}}}]}
    if after:
        comp["after"] = after
    neg: dict[str, Any] = {"term": {"sentiment.label": "negative"}}
    sub: dict[str, Any] = {}
    if dim == "entities":  # an entity's negatives are its own label, as the stream counts
        # them: ``negative_for`` per bucket (read for the bucket's entity in read_page), plus
        # the document's label for documents indexed before entity_sentiment existed
        sub["negfor"] = {"terms": {"field": "negative_for", "size": NEGATIVE_FOR_TERMS}}
        neg = {"bool": {"filter": [neg], "must_not": [{"nested": {
            "path": "entity_sentiment", "ignore_unmapped": True,
            "query": {"exists": {"field": "entity_sentiment.entity"}}}}]}}
    return {"size": 0, "track_total_hits": False, "query": {"bool": {"filter": filters}},
            "aggs": {"series": {"composite": comp, "aggs": {
                "neg": {"filter": neg}, **sub,
                # per language of the scoring model, its most common version (ties: the
                # smallest name, ES's order for equal counts), as the stream's window_version
                "ml": {"terms": {"field": "sentiment.model_language", "size": 16,
                                 "missing": "en"}, "aggs": {
                    "mv": {"terms": {"field": "sentiment.model_version", "size": 1}}}}}}}}


def read_page(data: dict[Series, SeriesData], dim: str, resp: Mapping, window_s: int,
              wanted: set[str]) -> dict | None:
    """Add one composite page's buckets; returns the ``after_key`` (``None``: last page)."""
    agg = resp.get("aggregations", {}).get("series", {})
    buckets = agg.get("buckets", [])
    for b in buckets:
        value = b["key"]["s"]
        if wanted and value not in wanted:
            continue  # a document of a wanted entity also names others
        key = Series(value, "*") if dim == "entities" else Series("*", value)
        window = int(b["key"]["w"]) // 1000 // window_s
        mv = bucket_versions(b)
        neg = b["neg"]["doc_count"] + next(
            (x["doc_count"] for x in b.get("negfor", {}).get("buckets", []) if x["key"] == value),
            0)
        add_bucket(data, key, window, b["doc_count"], neg, mv)
    return agg.get("after_key") if buckets else None


def bucket_versions(bucket: Mapping) -> dict[str, int]:
    """{version key: documents} of one bucket, keyed as the stream counts them
    (:func:`services.alerts.detector.doc_version`: ``zh=<version>`` for a Chinese model's).
    Buckets read before per-language versions (a flat ``mv`` terms) are English's."""
    out: dict[str, int] = {}
    for lang in bucket.get("ml", {}).get("buckets", []):
        for x in lang.get("mv", {}).get("buckets", []):
            key = x["key"] if lang["key"] in ("en", "") else f"{lang['key']}={x['key']}"
            out[key] = out.get(key, 0) + x["doc_count"]
    for x in bucket.get("mv", {}).get("buckets", []):
        out[x["key"]] = out.get(x["key"], 0) + x["doc_count"]
    return out


async def fetch_series(es: Any, alias: str, start: datetime, end: datetime, window_s: int,
                       entities: Sequence[str] = (), topics: Sequence[str] = ()
                       ) -> dict[Series, SeriesData]:
    """Per-series window counts from the ``alias`` (read-only aggregations)."""
    data: dict[Series, SeriesData] = {}
    dims = []
    if entities or not topics:
        dims.append(("entities", list(entities)))
    if topics or not entities:
        dims.append(("topics", list(topics)))
    for dim, values in dims:
        after: dict | None = None
        while True:
            body = composite_body(dim, start, end, window_s, values, after)
            resp = await es.search(index=alias, ignore_unavailable=True, **body)
            after = read_page(data, dim, resp.body if hasattr(resp, "body") else resp,
                              window_s, set(values))
            if after is None:
                break
    return data


def check_known(data: Mapping[Series, SeriesData], entities: Sequence[str],
                topics: Sequence[str], where: str) -> None:
    have_e = {k.entity for k in data if k.topic == "*"}
    have_t = {k.topic for k in data if k.entity == "*"}
    for e in entities:
        if e not in have_e:
            raise BadInput(f"unknown entity {e!r}: no documents name it in {where}; "
                           "check the ticker (entities are upper-case tickers) or the range")
    for t in topics:
        if t not in have_t:
            raise BadInput(f"unknown topic {t!r}: no documents carry it in {where}; "
                           "check the name or the range")


# ------------------------------------------------------------------------------ run
@dataclass
class SeriesResult:
    key: Series
    data: SeriesData
    result: replay.ReplayResult
    first: int  # first window reported (the range start, after any lead)


@dataclass
class Backtest:
    start: datetime
    end: datetime
    cfg: model.DetectorConfig
    series: list[SeriesResult]

    @property
    def days(self) -> float:
        return (self.end - self.start).total_seconds() / 86400

    def events(self) -> list[tuple[Series, model.Event]]:
        return [(s.key, e) for s in self.series for e in s.result.events if e.window >= s.first]

    def firings(self) -> list[tuple[Series, model.Event]]:
        return [(k, e) for k, e in self.events() if e.kind == "firing"]

    @property
    def alerts_per_series_day(self) -> float:
        n = len(self.series) * self.days
        return len(self.firings()) / n if n else 0.0


def run(data: Mapping[Series, SeriesData], cfg: model.DetectorConfig, start: datetime,
        end: datetime) -> Backtest:
    """Replay every series over its windows up to the last whole window before ``end``;
    events before ``start`` (a lead to learn from) are not reported."""
    upto = int(end.timestamp() // cfg.window_s) - 1
    first = int(math.ceil(start.timestamp() / cfg.window_s))
    out = []
    for key in sorted(data, key=lambda k: (k.entity == "*", k.entity, k.topic)):
        sd = data[key]
        if not sd.totals:
            continue
        res = replay.replay(sd.counts, sd.totals, cfg, upto=upto, versions=sd.versions)
        out.append(SeriesResult(key, sd, res, first))
    return Backtest(start, end, cfg, out)


def table(bt: Backtest) -> str:
    rows = [("series", "state", "window", "severity", "score")]
    for key, e in bt.events():
        ts = datetime.fromtimestamp(e.window * bt.cfg.window_s, tz=UTC)
        rows.append((key.name, e.kind, ts.strftime("%Y-%m-%d %H:%M"), e.severity,
                     f"{e.score:.1f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    n_fire = len(bt.firings())
    lines.append(f"{n_fire} alerts (firing) on {len(bt.series)} series over {bt.days:.2f} days: "
                 f"{bt.alerts_per_series_day:.3f} alerts/series/day")
    notes = [(s.key, n) for s in bt.series for n in s.result.notes]
    for key, n in notes:
        ts = datetime.fromtimestamp(n.window * bt.cfg.window_s, tz=UTC)
        lines.append(f"note {key.name} {ts:%Y-%m-%d %H:%M} {n.note} {json.dumps(n.note_detail)}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ labels
def load_labels(path: Path) -> dict[str, list[tuple[float, float]]]:
    """``{series: [(start_s, end_s), ...]}`` from a NAB-style labels file."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BadInput(f"--labels {path}: cannot read it ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"--labels {path}: not JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise BadInput(f"--labels {path}: expected an object {{series: {{\"windows\": "
                       "[[start, end], ...]}}}")
    out: dict[str, list[tuple[float, float]]] = {}
    for name, spec in raw.items():
        wins = spec.get("windows") if isinstance(spec, dict) else spec
        if not isinstance(wins, list):
            raise BadInput(f"--labels {path}: {name}: expected {{\"windows\": [[start, end], "
                           "...]}")
        pairs = []
        for pair in wins:
            if not (isinstance(pair, list | tuple) and len(pair) == 2
                    and all(isinstance(x, str) for x in pair)):
                raise BadInput(f"--labels {path}: {name}: window {pair!r} is not two ISO times")
            a = parse_time(pair[0], f"--labels {name}").timestamp()
            b = parse_time(pair[1], f"--labels {name}").timestamp()
            if b < a:
                raise BadInput(f"--labels {path}: {name}: window {pair!r} ends before it starts")
            pairs.append((a, b))
        out[name] = pairs
    return out


@dataclass
class LabelScore:
    windows: int = 0
    detected: int = 0
    false_alerts: int = 0
    delays: list[int] = field(default_factory=list)  # windows from label start to detection

    @property
    def missed(self) -> int:
        return self.windows - self.detected

    @property
    def mean_delay(self) -> float | None:
        return sum(self.delays) / len(self.delays) if self.delays else None


def score_labels(bt: Backtest, labels: Mapping[str, list[tuple[float, float]]]) -> LabelScore:
    """Detections are ``firing`` events; a labelled window is detected by the first one
    inside it; a firing outside every window of its series is a false alert."""
    names = {s.key.name for s in bt.series}
    unknown = sorted(set(labels) - names)
    if unknown:
        raise BadInput(f"--labels names series the range has no documents for: "
                       f"{', '.join(unknown[:5])}; use names as printed (AAPL, */legal)")
    w_s = bt.cfg.window_s
    out = LabelScore()
    fired: dict[str, list[int]] = {}
    for key, e in bt.firings():
        fired.setdefault(key.name, []).append(e.window)
    for name in names:
        wins = [(int(a // w_s), int(b // w_s)) for a, b in labels.get(name, [])]
        hits = fired.get(name, [])
        out.windows += len(wins)
        for lo, hi in wins:
            inside = [w for w in hits if lo <= w <= hi]
            if inside:
                out.detected += 1
                out.delays.append(min(inside) - lo)
        out.false_alerts += sum(1 for w in hits if not any(lo <= w <= hi for lo, hi in wins))
    return out


# ------------------------------------------------------------------------------ plots
def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name.replace("*/", "topic-")).strip("_") or "series"


def plot(bt: Backtest, folder: Path) -> list[Path]:
    """One PNG per series: negatives and their expected band, score, alerts."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise BadInput("--plot needs matplotlib: pip install 'yuqing[plot]'") from None
    folder.mkdir(parents=True, exist_ok=True)
    w_s, paths = bt.cfg.window_s, []
    fire = bt.cfg.life.fire_score
    for s in bt.series:
        sc = [x for x in s.result.scores if x.window >= s.first] or s.result.scores
        if not sc:
            continue
        t = [datetime.fromtimestamp(x.window * w_s, tz=UTC) for x in sc]
        alpha = s.result.state.alpha.get(str(max(bt.cfg.spans)), bt.cfg.alpha_prior)
        mu = [x.expected for x in sc]
        hi = [m + 3 * math.sqrt(m + alpha * m * m) for m in mu]
        fig, (ax, ax2) = plt.subplots(2, 1, sharex=True, figsize=(12, 6),
                                      gridspec_kw={"height_ratios": [3, 1.4]})
        ax.fill_between(t, [0.0] * len(t), hi, color="tab:blue", alpha=0.15,
                        label="expected band (+3 sd)")
        ax.plot(t, mu, color="tab:blue", lw=1, label="expected negatives")
        ax.plot(t, [x.negatives for x in sc], color="black", lw=0.8, label="negatives")
        ax2.plot(t, [x.score for x in sc], color="tab:red", lw=0.8, label="score")
        ax2.axhline(fire, color="tab:red", ls="--", lw=0.6)
        ax2.set_ylim(0, 100)
        for e in s.result.events:
            if e.window < s.first:
                continue
            te = datetime.fromtimestamp(e.window * w_s, tz=UTC)
            color = {"firing": "tab:red", "escalated": "tab:orange"}.get(e.kind, "tab:green")
            for a in (ax, ax2):
                a.axvline(te, color=color, lw=1, alpha=0.8)
        for n in s.result.notes:
            tn = datetime.fromtimestamp(n.window * w_s, tz=UTC)
            ax.axvline(tn, color="tab:purple", ls=":", lw=1)
        ax.set_title(f"{s.key.name}: negatives per {w_s // 60} min")
        ax.legend(loc="upper left", fontsize=8)
        ax2.set_ylabel("score")
        fig.autofmt_xdate()
        path = folder / f"{_safe(s.key.name)}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    return paths
