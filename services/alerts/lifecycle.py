"""Alert lifecycle: one episode per anomaly, ``firing`` -> ``escalated``* -> ``resolved``.

A state machine over per-window anomaly scores (0..100), JSON-serialisable:

* no episode: a window scoring ``>= fire_score`` (and past the re-arm) opens an episode and
  emits ``firing`` with the severity of its score band;
* in an episode: a window whose band is higher than the episode's emits ``escalated``; the
  episode tracks its peak score and its total negatives; once ``quiet_windows`` windows in a
  row score below ``resolve_score`` (hysteresis: lower than ``fire_score``) it emits
  ``resolved`` (duration up to the last window at or above ``resolve_score``);
* after ``resolved`` no new episode opens for ``rearm_windows`` windows, so a series that
  hovers around the threshold pages once, not on every crossing.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from services.core.schemas import SEVERITY_ORDER

Bands = tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class LifecycleConfig:
    # highest first: a window's band is the first whose score it reaches
    bands: Bands = (("critical", 90.0), ("warning", 75.0), ("info", 50.0))
    resolve_score: float = 25.0
    quiet_windows: int = 12
    rearm_windows: int = 576  # 48 h of 5-minute windows

    @property
    def fire_score(self) -> float:
        return min(t for _, t in self.bands)


@dataclass
class Episode:
    start: int
    severity: str
    peak: float
    negatives: int
    last_high: int  # last window scoring >= resolve_score
    below: int = 0


@dataclass
class Lifecycle:
    episode: Episode | None = None
    rearm_at: int | None = None  # no new episode before this window

    def to_dict(self) -> dict:
        return {"episode": asdict(self.episode) if self.episode else None,
                "rearm_at": self.rearm_at}

    @classmethod
    def from_dict(cls, d: dict) -> Lifecycle:
        ep = d.get("episode")
        return cls(episode=Episode(**ep) if ep else None, rearm_at=d.get("rearm_at"))


@dataclass(frozen=True)
class Transition:
    kind: str  # firing | escalated | resolved
    window: int
    episode_start: int
    severity: str
    peak: float
    episode_negatives: int
    last_window: int  # last window of the episode so far (>= resolve_score)


def band(score: float, cfg: LifecycleConfig) -> str | None:
    for name, threshold in cfg.bands:
        if score >= threshold:
            return name
    return None


def advance(lc: Lifecycle, window: int, score: float, negatives: int,
            cfg: LifecycleConfig) -> Transition | None:
    """Feed one closed window's score; returns the lifecycle event it causes, if any."""
    ep = lc.episode
    if ep is None:
        sev = band(score, cfg)
        if sev is None or (lc.rearm_at is not None and window < lc.rearm_at):
            return None
        lc.episode = Episode(start=window, severity=sev, peak=score, negatives=negatives,
                             last_high=window)
        return Transition("firing", window, window, sev, score, negatives, window)
    ep.negatives += negatives
    ep.peak = max(ep.peak, score)
    if score >= cfg.resolve_score:
        ep.below = 0
        ep.last_high = window
    else:
        ep.below += 1
    sev = band(score, cfg)
    if sev is not None and SEVERITY_ORDER[sev] > SEVERITY_ORDER[ep.severity]:
        ep.severity = sev
        return Transition("escalated", window, ep.start, sev, ep.peak, ep.negatives,
                          ep.last_high)
    if ep.below >= cfg.quiet_windows:
        lc.episode = None
        lc.rearm_at = window + 1 + cfg.rearm_windows
        return Transition("resolved", window, ep.start, ep.severity, ep.peak, ep.negatives,
                          ep.last_high)
    return None
