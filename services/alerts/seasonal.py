"""Seasonal expectation of a count series: hour of week, shrunk to hour of day and recent level.

State is plain lists and numbers (``to_dict``/``from_dict``: JSON in Redis). The profile
learns from *closed hours*: when an hour ends, its mean count per window goes into

* ``week[h % 168]``: the last ``weeks`` values of that hour of the week,
* ``day[h % 24]``: the last ``days`` values of that hour of the day,
* ``recent``: the last ``recent_hours`` hourly values (the series' current level),

and the expected count of a window in hour ``h`` is a median per level, shrunk toward the
coarser one while the finer one has few values (``n`` values vs a pseudo-count ``k``):

    level = median(recent)
    hod   = (n_d * median(day[h % 24])   + k_d * level) / (n_d + k_d)
    mean  = (n_w * median(week[h % 168]) + k_w * hod)   / (n_w + k_w)

Medians, not means: one spike day is one value of seven (or of four weeks) and does not move
the expectation, so an anomaly does not teach the profile that it is normal. The totals (all
documents, not only negatives) are profiled the same way for the share signal.
"""
from __future__ import annotations

from dataclasses import dataclass, field

HOURS_PER_WEEK = 168


def median(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    if n == 0:
        return 0.0
    mid = n // 2
    return s[mid] if n % 2 else 0.5 * (s[mid - 1] + s[mid])


def _push(ring: list[float], x: float, keep: int) -> None:
    ring.append(x)
    if len(ring) > keep:
        del ring[: len(ring) - keep]


@dataclass
class Profile:
    """Hour-of-week profile of one count series (mean count per window, per hour)."""

    week: list[list[float]] = field(default_factory=lambda: [[] for _ in range(HOURS_PER_WEEK)])
    day: list[list[float]] = field(default_factory=lambda: [[] for _ in range(24)])
    recent: list[float] = field(default_factory=list)
    hours: int = 0  # closed hours learned
    # expectations already computed since the profile last changed: a detector asks for the
    # same hour's expectation every window of that hour (several times per window), and a
    # re-judged series asks again; the values change only when an hour is learned or the
    # profile re-based. Not state: not serialised, not compared.
    _memo: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def to_dict(self) -> dict:
        return {"week": self.week, "day": self.day, "recent": self.recent, "hours": self.hours}

    @classmethod
    def from_dict(cls, d: dict) -> Profile:
        return cls(week=[list(x) for x in d["week"]], day=[list(x) for x in d["day"]],
                   recent=list(d["recent"]), hours=int(d["hours"]))

    def learn(self, hour: int, per_window: float, *, weeks: int, days: int,
              recent_hours: int) -> None:
        _push(self.week[hour % HOURS_PER_WEEK], per_window, weeks)
        _push(self.day[hour % 24], per_window, days)
        _push(self.recent, per_window, recent_hours)
        self.hours += 1
        self._memo.clear()

    def scale(self, k: float) -> None:
        """Multiply every learned value by ``k`` (a re-based profile keeps its shape)."""
        self.week = [[v * k for v in ring] for ring in self.week]
        self.day = [[v * k for v in ring] for ring in self.day]
        self.recent = [v * k for v in self.recent]
        self._memo.clear()

    def level(self) -> float:
        """The series' current level: the median of the recent hourly values."""
        lvl = self._memo.get("level")
        if lvl is None:
            lvl = self._memo["level"] = median(self.recent)
        return lvl

    def expected(self, hour: int, *, shrink_week: float, shrink_day: float) -> float:
        """Expected count per window in ``hour`` (0.0 before any hour was learned)."""
        key = (hour % HOURS_PER_WEEK, shrink_week, shrink_day)
        got = self._memo.get(key)
        if got is None:
            got = self._memo[key] = self._expected(hour, shrink_week, shrink_day)
        return got

    def _expected(self, hour: int, shrink_week: float, shrink_day: float) -> float:
        if not self.recent:
            return 0.0
        level = self.level()
        d = self.day[hour % 24]
        hod = (len(d) * median(d) + shrink_day * level) / (len(d) + shrink_day)
        w = self.week[hour % HOURS_PER_WEEK]
        return (len(w) * median(w) + shrink_week * hod) / (len(w) + shrink_week)
