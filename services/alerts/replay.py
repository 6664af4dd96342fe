"""The pure, replayable detector API: window counts in, alert events and scores out.

``replay(counts, totals, cfg)`` runs the seasonal detector (``services.alerts.model``) over a
complete series exactly as the stream detector does when the event-time watermark closes
its windows one by one: so thresholds can be swept offline, the benchmark scores the product
detector, and the Redis detector is tested against it (same events, same scores).

``counts``/``totals``: window index (event time ``// window_s``) -> count; windows missing
between the first and the last had no documents. ``totals`` is optional (``None``: the
share signal is off, as for a series that only has a volume).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from services.alerts.model import DetectorConfig, Event, SeriesState, WindowScore, step


@dataclass
class ReplayResult:
    scores: list[WindowScore] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    state: SeriesState = field(default_factory=SeriesState)

    @property
    def notes(self) -> list[WindowScore]:
        """Windows with a model change or a re-base (annotations)."""
        return [s for s in self.scores if s.note is not None]


def replay(counts: Mapping[int, int], totals: Mapping[int, int] | None = None,
           cfg: DetectorConfig | None = None, *, state: SeriesState | None = None,
           upto: int | None = None, versions: Mapping[int, str] | None = None
           ) -> ReplayResult:
    """Step every window from the first in ``counts`` (or after ``state.last_window``) to
    ``upto`` (default: the last in ``counts``). ``versions``: window -> sentiment model
    version of its documents (a change re-bases the share, see ``services.alerts.model``)."""
    cfg = cfg or DetectorConfig()
    res = ReplayResult(state=state if state is not None else SeriesState())
    keys = list(counts) + (list(totals) if totals else [])
    if not keys and upto is None:
        return res
    st = res.state
    first = st.last_window + 1 if st.last_window is not None else min(keys)
    last = upto if upto is not None else max(keys)
    for w in range(first, last + 1):
        tot = totals.get(w, 0) if totals is not None else None
        ver = versions.get(w) if versions is not None else None
        ws, ev = step(st, w, int(counts.get(w, 0)), tot, cfg, ver)
        res.scores.append(ws)
        if ev is not None:
            res.events.append(ev)
    return res


def replay_array(values: Sequence[float], start_window: int,
                 cfg: DetectorConfig | None = None,
                 totals: Sequence[float] | None = None) -> ReplayResult:
    """``replay`` of a dense series: ``values[i]`` is window ``start_window + i``."""
    counts = {start_window + i: int(v) for i, v in enumerate(values)}
    tots = ({start_window + i: int(v) for i, v in enumerate(totals)}
            if totals is not None else None)
    return replay(counts, tots, cfg)
