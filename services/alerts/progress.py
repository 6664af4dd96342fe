"""Which input partitions hold the event-time watermark back.

The detector judges a window once the watermark -- the slowest partition's progress in
event time -- has passed it. "Slowest" must include a partition that has not delivered
anything to this worker yet but has data (at start-up one partition's consumer can be
seconds ahead of another's: measured, it closed every window before the spike's partition
had been read, so the spike was never judged). It must not include a partition that has no
data at all, or one that has been caught up for a while (a quiet partition would otherwise
stall every alert), which is Kafka Streams' ``max.task.idle.ms`` idea.

Pure: fed with offsets seen and the partitions' high-water marks, it answers the set of
partitions whose event time bounds the watermark now.
"""
from __future__ import annotations

from collections.abc import Mapping

# A partition caught up for this long stops holding the watermark back.
IDLE_S = 10.0
# Kafka's high-water marks are asked at most this often (a metadata round trip per batch was
# a measurable part of the alerts stage's CPU); 1 s stale marks against the 10 s idle rule
# move when a partition stops holding by at most that second.
HIGHWATERS_EVERY_S = 1.0


class PartitionProgress:
    def __init__(self, idle_s: float = IDLE_S) -> None:
        self.idle_s = idle_s
        self.last: dict[int, int] = {}
        self.caught_up_since: dict[int, float] = {}

    def seen(self, partition: int, offset: int) -> None:
        if offset > self.last.get(partition, -1):
            self.last[partition] = offset

    def holding(self, highwaters: Mapping[int, int | None], now: float) -> set[int]:
        """Partitions that bound the watermark: those with data not yet read, and those
        caught up for less than ``idle_s``. ``highwaters[p]`` is the next offset Kafka
        would write (None: unknown, which holds)."""
        hold: set[int] = set()
        for p, hw in highwaters.items():
            if hw is None:
                hold.add(p)
                continue
            if hw == 0:  # never had a record
                continue
            if self.last.get(p, -1) + 1 >= hw:
                since = self.caught_up_since.setdefault(p, now)
                if now - since < self.idle_s:
                    hold.add(p)
            else:
                self.caught_up_since.pop(p, None)
                hold.add(p)
        return hold


class Every:
    """At most one call per ``period_s``: ``due(now, key)`` says whether to call again (a
    different ``key``, e.g. a new partition assignment, is due at once)."""

    def __init__(self, period_s: float = HIGHWATERS_EVERY_S) -> None:
        self.period_s = period_s
        self._at: float | None = None
        self._key: object = None

    def due(self, now: float, key: object = None) -> bool:
        if self._at is None or key != self._key or now - self._at >= self.period_s:
            self._at, self._key = now, key
            return True
        return False

    def forget(self) -> None:
        self._at = None
