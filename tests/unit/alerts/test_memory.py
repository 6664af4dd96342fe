"""The stream detector's in-process memory: which series a closed window must step, that
the ones it skips could not have emitted anything, and checkpoints for late documents."""
from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from services.alerts import memory, replay
from services.alerts.model import DetectorConfig, SeriesState, step

CFG = DetectorConfig(window_s=300, warmup_hours=2)


@dataclass(frozen=True)
class S:  # stands in for detector.Series (only .tag is used)
    tag: str


def _run(counts: dict[int, int], upto: int, totals: bool = True) -> SeriesState:
    tots = {w: 3 * c + 4 for w, c in counts.items()} if totals else None
    return replay.replay(counts, tots, CFG, upto=upto).state


def test_idle_safe_states_emit_nothing_on_empty_windows() -> None:
    """Soundness on many random series: from every state ``idle_safe`` accepts, 300 empty
    windows give no event and no annotation (so skipping them until the next document
    changes nothing)."""
    rng = random.Random(3)
    accepted = 0
    for trial in range(40):
        base = rng.choice([0, 1, 3])
        counts = {w: base + (rng.randint(0, 40) if rng.random() < 0.02 else rng.randint(0, 2))
                  for w in range(12 * 30)}
        st = _run(counts, max(counts))
        for w in range(max(counts) + 1, max(counts) + 40):  # the tail empties step by step
            if memory.idle_safe(st, CFG):
                accepted += 1
                probe = SeriesState.from_dict(st.to_dict())
                for k in range(probe.last_window + 1, probe.last_window + 301):
                    ws, ev = step(probe, k, 0, 0, CFG)
                    assert ev is None and ws.note is None, (trial, w, k)
                break
            step(st, w, 0, 0, CFG)
    assert accepted >= 30


def test_open_episode_settling_or_a_full_tail_is_not_idle_safe() -> None:
    counts = {w: 1 for w in range(12 * 6)}
    counts.update({w: 30 for w in range(12 * 6, 12 * 6 + 4)})  # a burst: an episode opens
    st = _run(counts, max(counts), totals=False)
    assert st.life.episode is not None and not memory.idle_safe(st, CFG)
    calm = _run({w: 1 for w in range(12 * 6)}, 12 * 6 - 1)
    assert memory.idle_safe(calm, CFG) is False  # 12 windows of 1: a span still holds >= 5
    for w in range(12 * 6, 12 * 6 + 12):
        step(calm, w, 0, 0, CFG)
    assert memory.idle_safe(calm, CFG)
    calm.settle = {"until": 10**9, "from": "a", "to": "b", "neg": 0, "tot": 0, "e_n": 0.0,
                   "e_t": 0.0}
    assert not memory.idle_safe(calm, CFG)
    assert not memory.idle_safe(SeriesState(), CFG)  # never judged


def test_to_step_takes_due_marked_new_and_busy_series_only() -> None:
    mem = memory.Memory()
    quiet = _run({w: 1 for w in range(12 * 6)}, 12 * 6 + 20)  # idle-safe, judged to 91
    busy = _run({w: 30 for w in range(12 * 6)}, 12 * 6 - 1)  # its tail still scores
    a, b, c, d, e = S("a"), S("b"), S("c"), S("d"), S("e")
    for s in (a, b, c, d):
        mem.states[s] = SeriesState.from_dict(quiet.to_dict())
    mem.states[e] = busy
    mem.counted(b, 95, added=1, neg=1, tot=2, version="m")  # counts after its last window
    mem.marks[c] = 50  # late documents
    assert mem.to_step([a, b, c, d, e, S("new")], CFG) == [b, c, e, S("new")]
    mem.closed(95)
    assert b not in mem.due


def test_counted_keeps_the_latest_window_and_the_earliest_new_one() -> None:
    mem = memory.Memory()
    s = S("x")
    mem.counted(s, 10, added=0, neg=1, tot=3, version=None)  # redelivered: not new
    assert mem.due[s] == 10 and s not in mem.marks
    mem.counted(s, 8, added=2, neg=2, tot=5, version="m")
    mem.counted(s, 9, added=1, neg=2, tot=5, version="m")
    assert mem.due[s] == 10 and mem.marks[s] == 8 and mem.counts[s][8] == (2, 5, "m")


def test_checkpoints_restore_exact_copies_and_are_bounded() -> None:
    """A late document at window w re-judges from the newest checkpoint before w; what it
    gives is a copy (stepping it does not touch the kept one), and after a run the kept
    checkpoints are the policy's (recent hours, hours after the late window, the newest older
    one), so memory stays bounded however long the series runs."""
    wph = CFG.windows_per_hour
    counts = {w: (w * 7) % 5 for w in range(wph * 30)}
    st, taken = SeriesState(), {}
    upto = max(counts)
    for w in range(upto + 1):
        step(st, w, counts[w], counts[w] + 2, CFG)
        if memory.boundary(w, CFG) and memory.keep_checkpoint(w, upto, None, CFG):
            taken[w] = memory.snapshot(st)
    mem = memory.Memory()
    s = S("x")
    mem.states[s] = st
    mem.checkpoints[s] = {wph * 3 - 1: b"old", wph * 5 - 1: b"older-newest"}
    mem.keep_checkpoints(s, wph * 6, taken, upto, None, CFG)
    assert sorted(mem.checkpoints[s]) == [wph * 5 - 1] + sorted(taken)
    assert len(taken) == memory.RECENT_HOURS
    late = upto - 3
    ck = mem.checkpoint_before(s, late)
    assert ck is not None and ck.last_window == max(b for b in taken if b < late)
    # stepping the copy from the checkpoint reproduces the state exactly
    for w in range(ck.last_window + 1, upto + 1):
        step(ck, w, counts[w], counts[w] + 2, CFG)
    assert ck.to_dict() == st.to_dict()
    assert mem.checkpoint_before(s, 0) is None


@pytest.mark.parametrize("late_from", [100, None])
def test_keep_checkpoint_policy(late_from) -> None:
    wph = CFG.windows_per_hour
    upto = 1000
    assert memory.keep_checkpoint(upto - 1, upto, late_from, CFG)
    assert not memory.keep_checkpoint(upto - memory.RECENT_HOURS * wph, upto, late_from, CFG)
    assert memory.keep_checkpoint(100 + wph, upto, late_from, CFG) == (late_from is not None)
    assert not memory.keep_checkpoint(99, upto, late_from, CFG)
