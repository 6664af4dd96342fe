"""Faust's real commit-offset method, with several actors acking one partition out of order."""
from __future__ import annotations

from collections import defaultdict
from weakref import WeakSet

import pytest
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaDriverConsumer
from faust.types import TP
from intervaltree import IntervalTree

from services.stream import faust_commits

TP0 = TP("yuqing.docs.clean", 0)
TP1 = TP("yuqing.docs.clean", 1)


class Msg:
    """What Faust tracks per fetched record (``tp``, ``offset``, ``acked``)."""

    def __init__(self, tp: TP, offset: int) -> None:
        self.tp, self.offset, self.acked = tp, offset, False


class State:
    """A consumer's ack bookkeeping, driven the way Faust's ``track_message``/``ack`` do."""

    def __init__(self, committed: int | None) -> None:
        self.c = object.__new__(AIOKafkaDriverConsumer)
        self.c._acked = defaultdict(list)
        self.c._acked_index = defaultdict(set)
        self.c._gap = defaultdict(IntervalTree)
        self.c._committed_offset = defaultdict(lambda: None)
        self.c._committed_offset[TP0] = committed
        self.c._unacked_messages = WeakSet()
        self.msgs: dict[tuple[TP, int], Msg] = {}

    def fetch(self, tp: TP, offsets: range) -> None:
        for o in offsets:
            m = self.msgs[(tp, o)] = Msg(tp, o)
            self.c._unacked_messages.add(m)

    def ack(self, tp: TP, offsets: range) -> None:
        for o in offsets:
            m = self.msgs[(tp, o)]
            m.acked = True
            self.c._unacked_messages.discard(m)
            self.c._acked_index[tp].add(o)
            self.c._acked[tp].append(o)


@pytest.fixture(scope="module", autouse=True)
def original():
    faust_commits.guard_commits()
    guarded = Consumer._new_offset
    faust_commits.guard_commits()  # idempotent: not wrapped twice
    assert Consumer._new_offset is guarded
    return faust_commits._ORIGINAL


def test_unguarded_faust_commits_past_an_unfinished_message(original) -> None:
    """Why the guard exists: both holes in faust-streaming 0.15's head-gap check. If this
    fails after an upgrade, Faust fixed them and the guard can go."""
    s = State(committed=100)  # offset 100 is the next to process
    s.fetch(TP0, range(100, 103))
    s.ack(TP0, range(101, 103))  # another actor finished 101-102 first
    assert original(s.c, TP0) == 103  # would commit 100 unprocessed
    s = State(committed=None)  # before the partition's first commit
    s.fetch(TP0, range(0, 100))
    s.ack(TP0, range(50, 100))
    assert original(s.c, TP0) == 100


def test_guard_waits_for_the_head_after_a_commit() -> None:
    s = State(committed=100)
    s.fetch(TP0, range(100, 110))
    s.ack(TP0, range(101, 105))
    assert Consumer._new_offset(s.c, TP0) is None
    s.ack(TP0, range(100, 101))
    assert Consumer._new_offset(s.c, TP0) == 105  # 100-104 done, 105-109 still in flight


def test_guard_waits_for_the_head_before_the_first_commit() -> None:
    s = State(committed=None)
    s.fetch(TP0, range(0, 100))
    s.ack(TP0, range(50, 100))
    assert Consumer._new_offset(s.c, TP0) is None
    s.ack(TP0, range(0, 50))
    assert Consumer._new_offset(s.c, TP0) == 100


def test_guard_looks_only_at_the_partition_being_committed() -> None:
    s = State(committed=None)
    s.fetch(TP0, range(0, 10))
    s.fetch(TP1, range(0, 10))
    s.ack(TP0, range(0, 10))  # partition 1 unfinished must not hold partition 0 back
    assert Consumer._new_offset(s.c, TP0) == 10
    assert Consumer._new_offset(s.c, TP1) is None  # nothing acked there


def test_in_order_acks_commit_as_before(original) -> None:
    a, b = State(committed=5), State(committed=5)
    for s in (a, b):
        s.fetch(TP0, range(5, 20))
        s.ack(TP0, range(5, 12))
    assert Consumer._new_offset(a.c, TP0) == original(b.c, TP0) == 12
