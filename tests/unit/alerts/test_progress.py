"""The watermark waits for partitions with unread data, not for empty or long-idle ones."""
from __future__ import annotations

from services.alerts.progress import PartitionProgress


def test_an_unread_partition_with_data_holds_an_empty_one_does_not() -> None:
    pp = PartitionProgress(idle_s=10)
    pp.seen(0, 99)
    assert pp.holding({0: 100, 1: 40, 2: 0}, now=0.0) == {0, 1}


def test_a_partition_behind_holds_and_a_long_idle_one_stops_holding() -> None:
    pp = PartitionProgress(idle_s=10)
    pp.seen(0, 9)
    pp.seen(1, 4)
    assert pp.holding({0: 10, 1: 8}, now=0.0) == {0, 1}  # 1 is behind, 0 just caught up
    assert pp.holding({0: 10, 1: 8}, now=11.0) == {1}  # 0 idle for 11 s
    pp.seen(1, 7)
    assert pp.holding({0: 12, 1: 8}, now=12.0) == {0, 1}  # new data on 0: it holds again
    assert pp.holding({0: 12, 1: 8}, now=30.0) == {0}


def test_unknown_highwater_holds() -> None:
    assert PartitionProgress().holding({3: None}, now=0.0) == {3}


def test_highwaters_are_asked_at_most_once_a_period_and_at_once_when_reassigned() -> None:
    from services.alerts.progress import Every

    ask = Every(1.0)
    assert ask.due(0.0, "a") and not ask.due(0.5, "a")
    assert ask.due(0.6, "b")  # a new assignment: ask now
    assert not ask.due(1.5, "b") and ask.due(1.6, "b")
    ask.forget()  # a failed call: ask again next time
    assert ask.due(1.7, "b")
