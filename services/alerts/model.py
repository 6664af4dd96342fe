"""The seasonal negative-binomial detector: one deterministic step per closed window.

For one series (an entity or a topic), each closed window ``w`` brings its negative count
``x`` and, where known, its total document count ``t``. ``step`` then

1. closes the previous hour if ``w`` starts a new one: its per-window means teach the
   seasonal profiles (``services.alerts.seasonal``) of negatives and totals, and the
   dispersion of each span is re-estimated;
2. takes the expected count of ``w`` from the negative profile, and for each span ``S`` of
   ``cfg.spans`` (e.g. 1 window and 6 windows = 30 minutes) compares the trailing sum
   ``y = x[w-S+1..w]`` with its expectation ``E``:

   * volume: ``p_vol = P(Y >= y)``, Y negative binomial with mean E and dispersion
     ``alpha_S``, learned robustly: ``alpha = (1.4826 MAD(log((y+.5)/(E+.5))))^2 - 1/E``
     over the last week of non-overlapping span blocks, shrunk toward ``alpha_prior``
     while there are few blocks;
   * share (only where totals say more than the negatives: ``T > y``): ``p_share = P(K >= y)``,
     K beta-binomial over ``T`` documents at the usual share (expected negatives over
     expected totals for that hour) with over-dispersion ``share_rho``;
   * the surprise of a span is ``min(s_vol, max(s_share, share_floor * s_vol))`` with
     ``s = -log10 p``: it takes unusually many negatives *and* an unusual share of them; a
     busy day full of neutral news (share ordinary) does not fire on its extra negatives
     (``share_floor`` > 0 would keep that part of the volume surprise). Without totals (or
     with totals equal to the negatives) the share says nothing and ``s = s_vol``;

3. scores the window ``per_decade * (max_S s_S - log10 len(spans))`` (Bonferroni over spans),
   capped to 0..100, and feeds it to the lifecycle (``services.alerts.lifecycle``).

**Model swaps.** Each window may carry the sentiment model version of (most of) its
documents. When it changes, a new model's different negative rate must not read as a spike:
the step records the change (``WindowScore.note = "model_change"``), suppresses every score
for ``settle_hours`` (the lifecycle still runs, so an open episode can resolve), does not
teach the negative profile nor the dispersion meanwhile, and at the end re-bases: the
negative profile (and the span's recent expectations) are multiplied by the ratio of the
share of negatives seen while settling to the share the old profile expected for those
windows (``note = "rebased"``). Totals are model-independent and keep learning.

No verdict before ``warmup_hours`` hours were learned or while ``y < min_count``. Strictly
causal: a window's score uses the past and itself only. The state (``SeriesState``) is plain
JSON, so the Redis detector and the offline replay run the very same code.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from services.alerts import lifecycle, scoring
from services.alerts.seasonal import Profile, median

VERSION = "seasonal-nb/v2"  # v2: spans 30 min + 1 h, 48 h re-arm, model-swap re-base


@dataclass(frozen=True)
class DetectorConfig:
    window_s: int = 300
    spans: tuple[int, ...] = (6, 12)  # trailing 30 minutes and trailing hour (5-min windows)
    weeks: int = 4  # values kept per hour of week
    days: int = 7  # values kept per hour of day
    recent_hours: int = 24
    shrink_week: float = 2.0
    shrink_day: float = 2.0
    warmup_hours: int = 24
    min_count: int = 5
    min_expected: float = 0.2  # floor of a window's expected count
    dispersion_blocks: int = 336  # span blocks kept for the dispersion
    alpha_prior: float = 0.1
    alpha_prior_n: float = 24.0
    alpha_min: float = 0.01
    dispersion_q: float = 0.75  # quantile of |r - median r| that sets the spread (0.5: MAD)
    share_rho: float = 0.02
    share_floor: float = 0.0  # >0: an ordinary share keeps this part of s_vol
    per_decade: float = 10.0
    settle_hours: int = 6  # after a model change: scores suppressed, then the share re-based
    rebase_min: float = 0.05  # bounds of the re-base factor
    rebase_max: float = 20.0
    life: lifecycle.LifecycleConfig = field(default_factory=lifecycle.LifecycleConfig)

    @property
    def windows_per_hour(self) -> int:
        return max(1, 3600 // self.window_s)

    @property
    def settle_windows(self) -> int:
        return self.settle_hours * self.windows_per_hour


@dataclass(frozen=True)
class WindowScore:
    window: int
    negatives: int
    total: int | None
    expected: float  # expected negatives in this window
    score: float  # 0..100
    span: int  # span (windows) that gave the score
    p_volume: float
    p_share: float | None
    model_version: str | None = None  # the model this window was judged under
    suppressed: bool = False  # settling after a model change: score forced to 0
    note: str | None = None  # "model_change" (from -> to) | "rebased" (factor)
    note_detail: dict | None = None


@dataclass(frozen=True)
class Event:
    kind: str  # firing | escalated | resolved
    window: int
    episode_start: int
    severity: str
    score: float
    peak_score: float
    negatives: int  # in this window
    total: int | None
    expected: float
    episode_negatives: int
    last_window: int


@dataclass
class SeriesState:
    """Everything one series' detector remembers (``to_dict``/``from_dict``: JSON)."""

    last_window: int | None = None
    hour: int | None = None
    hour_neg: int = 0
    hour_tot: int = 0
    hour_windows: int = 0
    totals_seen: bool = False
    neg: Profile = field(default_factory=Profile)
    tot: Profile = field(default_factory=Profile)
    # [neg, tot, mu_neg, mu_tot, raw mu_neg, raw mu_tot] (raw: before the min_expected floor)
    tail: list[list[float]] = field(default_factory=list)
    resid: dict[str, list[list[float]]] = field(default_factory=dict)  # span -> [[r, E]]
    alpha: dict[str, float] = field(default_factory=dict)
    life: lifecycle.Lifecycle = field(default_factory=lifecycle.Lifecycle)
    model_version: str | None = None  # sentiment model of the last window with documents
    # while settling after a model change: {"until", "from", "to", "neg", "tot", "e_n", "e_t"}
    settle: dict | None = None

    def to_dict(self) -> dict:
        return {"last_window": self.last_window, "hour": self.hour, "hour_neg": self.hour_neg,
                "hour_tot": self.hour_tot, "hour_windows": self.hour_windows,
                "totals_seen": self.totals_seen, "neg": self.neg.to_dict(),
                "tot": self.tot.to_dict(), "tail": self.tail, "resid": self.resid,
                "alpha": self.alpha, "life": self.life.to_dict(),
                "model_version": self.model_version, "settle": self.settle}

    @classmethod
    def from_dict(cls, d: dict) -> SeriesState:
        return cls(last_window=d["last_window"], hour=d["hour"], hour_neg=d["hour_neg"],
                   hour_tot=d["hour_tot"], hour_windows=d["hour_windows"],
                   totals_seen=d["totals_seen"], neg=Profile.from_dict(d["neg"]),
                   tot=Profile.from_dict(d["tot"]), tail=[list(t) for t in d["tail"]],
                   resid={k: [list(x) for x in v] for k, v in d["resid"].items()},
                   alpha=dict(d["alpha"]), life=lifecycle.Lifecycle.from_dict(d["life"]),
                   model_version=d.get("model_version"),
                   settle=dict(d["settle"]) if d.get("settle") else None)


def _normal_quantile(q: float) -> float:
    """z with P(|Z| <= z) = q for a standard normal Z (bisection; q in (0, 1))."""
    lo, hi = 0.0, 10.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if math.erf(mid / math.sqrt(2.0)) < q:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _close_hour(st: SeriesState, cfg: DetectorConfig) -> None:
    if st.hour is None or st.hour_windows == 0:
        return
    # the hour's mean per window; windows of the hour never stepped (a series that started
    # mid-hour) are not counted as zeros
    kw = {"weeks": cfg.weeks, "days": cfg.days, "recent_hours": cfg.recent_hours}
    if st.settle is None:  # an hour (partly) under a new model does not teach negatives
        st.neg.learn(st.hour, st.hour_neg / st.hour_windows, **kw)
    st.tot.learn(st.hour, st.hour_tot / st.hour_windows, **kw)
    for span in cfg.spans:
        rs = st.resid.get(str(span), [])
        n = len(rs)
        if n == 0:
            continue
        r = [x[0] for x in rs]
        mid = median(r)
        dev = sorted(abs(v - mid) for v in r)
        spread = dev[min(n - 1, int(cfg.dispersion_q * n))] / _normal_quantile(cfg.dispersion_q)
        e_typ = max(median([x[1] for x in rs]), 1e-6)
        hat = max(0.0, spread ** 2 - 1.0 / e_typ)
        a = (n * hat + cfg.alpha_prior_n * cfg.alpha_prior) / (n + cfg.alpha_prior_n)
        st.alpha[str(span)] = max(cfg.alpha_min, a)


def expected_pair(st: SeriesState, hour: int, cfg: DetectorConfig) -> tuple[float, float]:
    kw = {"shrink_week": cfg.shrink_week, "shrink_day": cfg.shrink_day}
    mu_n = max(st.neg.expected(hour, **kw), cfg.min_expected)
    mu_t = max(st.tot.expected(hour, **kw), mu_n)
    return mu_n, mu_t


def parse_versions(version: str | None) -> dict[str, str]:
    """``"minilm-x;zh=bge-y"`` -> ``{"en": "minilm-x", "zh": "bge-y"}`` (see
    :func:`services.alerts.detector.window_version`); a plain name is English's."""
    out: dict[str, str] = {}
    for part in (version or "").split(";"):
        if part:
            lang, sep, name = part.partition("=")
            out.update({lang: name} if sep else {"en": part})
    return out


def join_versions(versions: dict[str, str]) -> str | None:
    if not versions:
        return None
    return ";".join(v if lang == "en" else f"{lang}={v}" for lang, v in
                    sorted(versions.items(), key=lambda kv: (kv[0] != "en", kv[0])))


def _model_swap(st: SeriesState, window: int, version: str | None,
                cfg: DetectorConfig) -> tuple[str | None, dict | None]:
    """Start (or restart) settling when the window's model differs from the series' one.

    Per language: a series mixing English and Chinese documents sees both models in some
    windows and one in others; only a language whose model changed is a model change."""
    if version is None or version == st.model_version:
        return None, None
    before, now = parse_versions(st.model_version), parse_versions(version)
    merged = join_versions({**before, **now})
    changed = any(lang in before and before[lang] != v for lang, v in now.items())
    old, st.model_version = st.model_version, merged
    if not changed:
        return None, None
    if old is None or st.neg.hours == 0:  # nothing learned under another model
        return None, None
    st.settle = {"until": window + cfg.settle_windows, "from": old, "to": version,
                 "neg": 0, "tot": 0, "e_n": 0.0, "e_t": 0.0}
    return "model_change", {"from": old, "to": version, "settle_windows": cfg.settle_windows}


def _rebase(st: SeriesState, cfg: DetectorConfig) -> dict:
    """End of settling: scale the negative profile to the new model's share of negatives."""
    sd = st.settle
    assert sd is not None
    if st.totals_seen and sd["tot"] > sd["neg"] and sd["e_t"] > 0:
        seen = (sd["neg"] + 0.5) / (sd["tot"] + 0.5)
        k = seen / max(sd["e_n"] / sd["e_t"], 1e-6)
    else:  # volume only: the new model's level relative to the old expectation
        k = (sd["neg"] + 0.5) / (sd["e_n"] + 0.5)
    k = min(cfg.rebase_max, max(cfg.rebase_min, k))
    st.neg.scale(k)
    for row in st.tail:
        row[2] *= k
        if len(row) > 4:
            row[4] *= k
    st.settle = None
    return {"from": sd["from"], "to": sd["to"], "factor": round(k, 6)}


def step(st: SeriesState, window: int, negatives: int, total: int | None,
         cfg: DetectorConfig, model_version: str | None = None
         ) -> tuple[WindowScore, Event | None]:
    """Advance ``st`` (mutated in place) by closed window ``window``; windows must come in
    order without gaps (a window without documents is stepped with 0). ``model_version``:
    the sentiment model of the window's documents (the most frequent; ``None``: unknown or
    no documents)."""
    if st.last_window is not None and window != st.last_window + 1:
        raise ValueError(f"window {window} after {st.last_window}: step every window in order")
    tot = negatives if total is None else max(int(total), negatives)
    if total is not None and total > negatives:
        st.totals_seen = True
    hour = window // cfg.windows_per_hour
    if st.hour != hour:
        _close_hour(st, cfg)
        st.hour, st.hour_neg, st.hour_tot, st.hour_windows = hour, 0, 0, 0
    note, detail = _model_swap(st, window, model_version, cfg)
    if st.settle is not None and note is None and window >= st.settle["until"]:
        note, detail = "rebased", _rebase(st, cfg)
    mu_n, mu_t = expected_pair(st, hour, cfg)
    settling = st.settle is not None
    if settling:
        sd = st.settle
        sd["neg"] += negatives
        sd["tot"] += tot
        sd["e_n"] += mu_n
        sd["e_t"] += mu_t
    ready = st.neg.hours >= cfg.warmup_hours and not settling
    keep = max(cfg.spans)
    kw = {"shrink_week": cfg.shrink_week, "shrink_day": cfg.shrink_day}
    st.tail.append([negatives, tot, mu_n, mu_t, st.neg.expected(hour, **kw),
                    st.tot.expected(hour, **kw)])
    if len(st.tail) > keep:
        del st.tail[: len(st.tail) - keep]

    lvl_n, lvl_t = st.neg.level(), st.tot.level()
    day_share = min(1.0, lvl_n / lvl_t) if lvl_t > 0 else 0.5
    best, best_span, best_pv, best_ps = 0.0, cfg.spans[0], 1.0, None
    for span in cfg.spans:
        if len(st.tail) < span:
            continue
        part = st.tail[-span:]
        # the span's columns (each sum adds the rows in their order, as before)
        cols = list(zip(*part, strict=False))
        y = int(sum(cols[0]))
        t = int(sum(cols[1]))
        e = sum(cols[2])
        # the usual share from the unfloored expectations, shrunk by one pseudo-document
        # toward the series' share of the last day: the floor of a sparse series' expected
        # negatives must not make its usual share look like 100%
        if len(cols) > 5:
            raw_n, raw_t = sum(cols[4]), sum(cols[5])
        else:  # rows saved before the raw expectations were kept
            raw_n = sum(x[4] if len(x) > 4 else x[2] for x in part)
            raw_t = sum(x[5] if len(x) > 5 else x[3] for x in part)
        if ready and (window + 1) % span == 0:
            rs = st.resid.setdefault(str(span), [])
            rs.append([math.log((y + 0.5) / (e + 0.5)), e])
            if len(rs) > cfg.dispersion_blocks:
                del rs[: len(rs) - cfg.dispersion_blocks]
        if not ready or y < cfg.min_count or y <= e:
            continue
        pv = scoring.nb_sf(y, e, st.alpha.get(str(span), cfg.alpha_prior))
        s = scoring.surprise(pv)
        ps = None
        if st.totals_seen and t > y:
            share0 = min(max((raw_n + day_share) / (raw_t + 1.0), 1e-4), 1 - 1e-4)
            ps = scoring.betabinom_sf(y, t, share0, cfg.share_rho) if y > share0 * t else 1.0
            s = min(s, max(scoring.surprise(ps), cfg.share_floor * s))
        if s > best:
            best, best_span, best_pv, best_ps = s, span, pv, ps
    best = max(0.0, best - math.log10(len(cfg.spans)))
    score = min(100.0, cfg.per_decade * best)

    st.hour_neg += negatives
    st.hour_tot += tot
    st.hour_windows += 1
    st.last_window = window
    ws = WindowScore(window, negatives, total, mu_n, score, best_span, best_pv, best_ps,
                     model_version=st.model_version, suppressed=settling, note=note,
                     note_detail=detail)
    tr = lifecycle.advance(st.life, window, score, negatives, cfg.life)
    if tr is None:
        return ws, None
    return ws, Event(kind=tr.kind, window=window, episode_start=tr.episode_start,
                     severity=tr.severity, score=score, peak_score=tr.peak,
                     negatives=negatives, total=total, expected=mu_n,
                     episode_negatives=tr.episode_negatives, last_window=tr.last_window)
