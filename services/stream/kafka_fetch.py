"""How much Faust's Kafka consumer waits for per fetch.

Faust (faust-streaming 0.15) builds its aiokafka consumer with ``fetch_min_bytes=1``: the
broker answers a fetch as soon as one byte is there, and there is no Faust setting to change
it. At moderate rates that means a fetch round trip (and two event-loop hand-offs, the
consumer runs in its own thread) for every message or two, in every stage: measured on the
2-core box at half load, Kafka plus the stream stages spent ~8% more CPU per document than
with fetches that wait for ``fetch_min_bytes`` or ``fetch_max_wait_ms``. So the consumer
Faust creates is given the two values before it starts. The price is latency at low rates:
a fetch may wait up to ``fetch_max_wait_ms`` for ``fetch_min_bytes`` before answering, once
per stage hop (three to searchable), on top of the stages' ``take(within=...)`` windows; the
100 ms default keeps that well inside the 3 s produce->searchable budget.

aiokafka keeps both values on the consumer until ``start()`` builds its fetcher, so they are
set there (``tests/unit/stream/test_kafka_fetch.py`` checks both that they are set and that
aiokafka's ``start()`` still hands them to its fetcher, so an upgrade that moves them fails
there, not silently in production).
"""
from __future__ import annotations

from typing import Any

# Measured on the 2-core box (see the docstring): 64 kB or 100 ms, whichever comes first.
FETCH_MIN_BYTES = 65_536
FETCH_MAX_WAIT_MS = 100

_ORIGINAL: Any = None


def configure_fetches(min_bytes: int, max_wait_ms: int) -> None:
    """Make every Faust consumer created from now on use these fetch limits (idempotent)."""
    global _ORIGINAL
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    if min_bytes < 1 or max_wait_ms < 1:
        raise ValueError("fetch min bytes and max wait must be >= 1")
    if _ORIGINAL is None:
        _ORIGINAL = AIOKafkaConsumerThread._create_worker_consumer

    def create(self, transport):  # type: ignore[no-untyped-def]
        consumer = _ORIGINAL(self, transport)
        if not hasattr(consumer, "_fetch_min_bytes") or not hasattr(consumer,
                                                                    "_fetch_max_wait_ms"):
            raise RuntimeError("aiokafka changed: AIOKafkaConsumer has no _fetch_min_bytes/"
                               "_fetch_max_wait_ms; update services/stream/kafka_fetch.py")
        consumer._fetch_min_bytes = min_bytes
        consumer._fetch_max_wait_ms = max_wait_ms
        return consumer

    AIOKafkaConsumerThread._create_worker_consumer = create  # type: ignore[method-assign]
