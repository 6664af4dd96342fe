"""What the stream detector remembers between batches, in process (pure: no Redis).

Redis holds the durable truth (counts, states, late marks, the due set); reading all of it
for every batch is what made the detector cost ~2-3 CPU ms per document (a state read and
parse per series, a range read of every closed window's counts and model versions). This
memory mirrors it, so a batch costs what it changes:

* ``states``: each series' state as last committed (``SeriesState``), ``marks``: the
  earliest window that got new documents since the series was last judged (the counting
  script's ``{series}:new``), ``due``: the latest window with counts per series (the due set);
  filled from Redis when the detector starts or its partitions are reassigned, then kept in
  step with what the detector itself writes;
* ``counts``: (negatives, total, model version) of recent windows, as the counting script
  returned them after each update, so judging a window reads no Redis;
* ``checkpoints``: the pickled state of a series at a few hour boundaries, so documents for a
  window already judged re-judge the series from the checkpoint below it instead of from its
  first window (the model is causal and deterministic: the same counts from the same state
  give the same verdicts).

Which series a newly closed window must step (``to_step``): those with counts not yet judged,
a late mark, or a state that could still emit something without new documents
(``idle_safe``). Every other series would only step empty windows that cannot change a
verdict; it is stepped through them (exactly as before, so its state is the same) when it
next gets a document.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass, field

from services.alerts.model import DetectorConfig, SeriesState

# Checkpoints kept per series: hour boundaries in the last RECENT_HOURS before the closed
# frontier (fast replays: classify reorders by minutes to hours of event time), in the
# AHEAD_HOURS after the latest late window (a backfill over judged hours arrives in time
# order, so the next late window is just above this one), and the newest one below the run.
RECENT_HOURS = 2
AHEAD_HOURS = 2


def idle_safe(st: SeriesState, cfg: DetectorConfig) -> bool:
    """True when stepping any number of windows without documents from ``st`` can emit no
    lifecycle event and no annotation, so those steps may be taken later, in one go.

    Why it holds: with no open episode a window emits only by scoring ``>= fire_score``, and
    it scores above 0 only when a trailing span holds ``>= min_count`` negatives; the spans
    of empty windows hold only what the tail already has, which only falls. A model change
    needs documents; a re-base needs a settling period in progress."""
    if st.last_window is None or st.life.episode is not None or st.settle is not None:
        return False
    if cfg.life.fire_score <= 0:
        return False
    return sum(row[0] for row in st.tail) < cfg.min_count


def boundary(w: int, cfg: DetectorConfig) -> bool:
    """Window ``w`` is the last of its hour (a checkpoint is taken after stepping it)."""
    return (w + 1) % cfg.windows_per_hour == 0


def keep_checkpoint(b: int, closed_upto: int, late_from: int | None,
                    cfg: DetectorConfig) -> bool:
    wph = cfg.windows_per_hour
    if b > closed_upto - RECENT_HOURS * wph:
        return True
    return late_from is not None and late_from <= b < late_from + AHEAD_HOURS * wph


@dataclass
class Memory:
    states: dict = field(default_factory=dict)  # Series -> SeriesState (committed)
    marks: dict = field(default_factory=dict)  # Series -> earliest window with new documents
    due: dict = field(default_factory=dict)  # Series -> latest window with counts
    counts: dict = field(default_factory=dict)  # Series -> {window: (neg, tot, version)}
    checkpoints: dict = field(default_factory=dict)  # Series -> {window: pickled state}
    loaded: bool = False  # states/marks/due read from Redis since the last reset

    def reset(self) -> None:
        """Forget everything (partitions reassigned: another worker may have written)."""
        self.states.clear()
        self.marks.clear()
        self.due.clear()
        self.counts.clear()
        self.checkpoints.clear()
        self.loaded = False

    # -- what the counting script reported
    def counted(self, s, w: int, added: int, neg: int, tot: int, version: str | None) -> None:
        self.counts.setdefault(s, {})[w] = (neg, tot, version)
        if w > self.due.get(s, w - 1):
            self.due[s] = w
        if added > 0 and w < self.marks.get(s, w + 1):
            self.marks[s] = w

    # -- which series a newly closed window steps
    def to_step(self, known, cfg: DetectorConfig) -> list:
        """Series (sorted by tag) whose state must advance: counts after their last judged
        window, a late mark, no state yet, or a state that is not ``idle_safe``."""
        out = []
        for s in known:
            st = self.states.get(s)
            if (st is None or st.last_window is None or s in self.marks
                    or self.due.get(s, -1) > st.last_window or not idle_safe(st, cfg)):
                out.append(s)
        return sorted(out, key=lambda x: x.tag)

    # -- checkpoints
    def checkpoint_before(self, s, w: int) -> SeriesState | None:
        """A fresh copy of the newest checkpoint of ``s`` that ends before window ``w``."""
        got = [b for b in self.checkpoints.get(s, {}) if b < w]
        if not got:
            return None
        return pickle.loads(self.checkpoints[s][max(got)])

    def keep_checkpoints(self, s, start: int, taken: dict[int, bytes], closed_upto: int,
                         late_from: int | None, cfg: DetectorConfig) -> None:
        """After stepping ``s`` from window ``start`` to ``closed_upto``: the checkpoints
        taken on the way, the older ones (still valid: their windows did not change) that
        ``keep_checkpoint`` still wants, and the newest older one."""
        older = [b for b in self.checkpoints.get(s, {}) if b < start]
        kept = {b: self.checkpoints[s][b] for b in older
                if b == max(older) or keep_checkpoint(b, closed_upto, late_from, cfg)}
        kept.update(taken)
        if kept:
            self.checkpoints[s] = kept
        else:
            self.checkpoints.pop(s, None)
        # counts a re-judge from the oldest checkpoint reads; older ones are read from Redis
        floor = min(kept) if kept else None
        st = self.states.get(s)
        if st is not None and st.last_window is not None:
            floor = st.last_window if floor is None else min(floor, st.last_window)
        if floor is not None and s in self.counts:
            self.counts[s] = {w: c for w, c in self.counts[s].items() if w > floor}

    def closed(self, upto: int) -> None:
        """Every series with counts up to ``upto`` only was judged that far: not due."""
        for s in [s for s, w in self.due.items() if w <= upto]:
            del self.due[s]


def snapshot(st: SeriesState) -> bytes:
    return pickle.dumps(st, protocol=pickle.HIGHEST_PROTOCOL)
