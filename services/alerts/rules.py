"""Spike rules: is this window's negative count far above what this series usually sees?

Pure functions over plain numbers, so they can be tested on synthetic series with known
spikes and replayed offline to get the alerts a stream *should* produce.

Model. A series is the per-window count of negative documents for one key (an entity, or a
topic). Its baseline is an exponentially weighted mean and variance of past *closed* windows
(EWMA adapts to slow drifts: a company that is always in the news gets a higher baseline).
A window is scored ``z = (x - mean) / sqrt(max(var, mean) + var_floor)``: counts vary at least
like a Poisson count (var >= mean), and the floor stops a quiet series (mean ~ 0, var ~ 0)
from turning two negative comments into "20 sigma". It fires when

* the baseline has seen ``warmup_windows`` windows (no verdicts without history),
* ``x >= min_count`` (absolute volume: small numbers are noise whatever z says),
* ``z >= `` the lowest severity threshold, and
* the series is not in cooldown (no new alert within ``cooldown_s`` of the previous one;
  the *same* window may re-fire only to escalate its severity).

An open window may fire early (its count only grows, so an early verdict is conservative),
which keeps detection delay well under one window. When a window closes it is absorbed into
the baseline winsorised at ``mean + clip_sigma * std`` so a spike does not teach the baseline
that spikes are normal. Windows with no documents are absorbed as zeros.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

Thresholds = tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class RuleConfig:
    window_s: int = 300
    alpha: float = 0.1
    warmup_windows: int = 6
    min_count: int = 5
    cooldown_s: int = 900
    var_floor: float = 1.0
    clip_sigma: float = 3.0
    # highest first; a window's severity is the first threshold its z reaches
    thresholds: Thresholds = (("critical", 9.0), ("warning", 6.0), ("info", 4.5))


@dataclass(frozen=True)
class Baseline:
    """Per-series state; JSON-serialisable (``to_dict``/``from_dict``) so it survives restarts."""

    mean: float = 0.0
    var: float = 0.0
    n: int = 0
    last_closed: int | None = None  # window index (start // window_s) last absorbed
    last_alert: int | None = None  # window index of the last alert
    last_severity: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Baseline:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass(frozen=True)
class Verdict:
    window: int
    severity: str
    score: float
    count: int
    mean: float
    std: float


@dataclass
class SeriesResult:
    """What offline evaluation of one series produced (for tests and the e2e oracle)."""

    verdicts: list[Verdict] = field(default_factory=list)
    baseline: Baseline = field(default_factory=Baseline)


_RANK = {"info": 0, "warning": 1, "critical": 2}


def window_of(ts_s: float, window_s: int) -> int:
    return int(ts_s // window_s)


def score(b: Baseline, x: float, cfg: RuleConfig) -> float:
    return (x - b.mean) / _scale(b, cfg)


def _scale(b: Baseline, cfg: RuleConfig) -> float:
    # counts are at least as variable as Poisson (var >= mean): a lucky run of similar
    # counts must not shrink the yardstick below that
    return math.sqrt(max(b.var, b.mean) + cfg.var_floor)


def severity_for(z: float, cfg: RuleConfig) -> str | None:
    for name, threshold in cfg.thresholds:
        if z >= threshold:
            return name
    return None


def absorb(b: Baseline, window: int, x: float, cfg: RuleConfig) -> Baseline:
    """Fold closed window ``window`` (count ``x``) into the baseline (EWMA, winsorised)."""
    if b.n > 0:
        cap = b.mean + cfg.clip_sigma * _scale(b, cfg)
        x = min(x, cap)
        diff = x - b.mean
        incr = cfg.alpha * diff
        mean = b.mean + incr
        var = (1 - cfg.alpha) * (b.var + diff * incr)
    else:
        mean, var = float(x), 0.0
    return replace(b, mean=mean, var=max(var, 0.0), n=b.n + 1, last_closed=window)


def advance(b: Baseline, upto: int, counts: dict[int, int], cfg: RuleConfig) -> Baseline:
    """Absorb every closed window after ``b.last_closed`` up to ``upto`` (inclusive); windows
    missing from ``counts`` had no negative documents. The first window ever seen starts the
    series (there is no history before it)."""
    start = b.last_closed + 1 if b.last_closed is not None else min(counts, default=upto)
    # a long silence converges the EWMA to 0 anyway: cap the work per call
    if upto - start > 2000:
        start = upto - 2000
    for w in range(start, upto + 1):
        b = absorb(b, w, counts.get(w, 0), cfg)
    return b


def judge(b: Baseline, window: int, x: int, cfg: RuleConfig) -> Verdict | None:
    """Should (possibly still open) ``window`` with ``x`` negatives fire, given baseline ``b``?"""
    if b.n < cfg.warmup_windows or x < cfg.min_count:
        return None
    # A window may be judged after it closed: its documents can arrive late (another
    # partition behind, a backlog being replayed); the baseline then already holds the
    # part of it that had arrived, which only makes the verdict more conservative.
    z = score(b, x, cfg)
    sev = severity_for(z, cfg)
    if sev is None:
        return None
    if b.last_alert is not None:
        if window == b.last_alert:
            if _RANK[sev] <= _RANK.get(b.last_severity or "info", 0):
                return None  # same window, no escalation
        elif abs(window - b.last_alert) * cfg.window_s < cfg.cooldown_s:
            return None
    return Verdict(window, sev, z, x, b.mean, math.sqrt(b.var))


def fired(b: Baseline, v: Verdict) -> Baseline:
    return replace(b, last_alert=v.window, last_severity=v.severity)


def run_series(counts: dict[int, int], cfg: RuleConfig, early: bool = True) -> SeriesResult:
    """Offline: the verdicts a stream would give for a complete series (window -> count).

    With ``early`` the open window is judged as its count grows one document at a time,
    like the stream does; the final verdict per window is what counts (escalations share
    the window, hence the alert id).
    """
    res = SeriesResult()
    if not counts:
        return res
    b = Baseline()
    first, last = min(counts), max(counts)
    for w in range(first, last + 1):
        x = counts.get(w, 0)
        steps = range(1, x + 1) if early else [x]
        for partial in steps:
            v = judge(b, w, partial, cfg)
            if v is not None:
                res.verdicts.append(v)
                b = fired(b, v)
        b = absorb(b, w, x, cfg)
    res.baseline = b
    return res
