"""Replay a feed into the raw topics at a chosen speed.

``speed`` is simulated seconds per wall-clock second (``3600``: an hour of feed per second;
``0``: as fast as the broker takes it). Items keep their own ``published_at``; only the
moment they are produced is paced. Produced with ``acks=all`` and the idempotent producer,
so a replay that returns has put every item durably into Kafka.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from services.core.config import Settings
from services.core.errors import BackendUnavailable
from services.feed.synthetic import FeedItem


def topic_for(settings: Settings, kind: str) -> str:
    return settings.topic_news_raw if kind == "news" else settings.topic_comments_raw


async def replay(items: Sequence[FeedItem], settings: Settings, speed: float = 0.0,
                 on_sent: Callable[[int, FeedItem], None] | None = None,
                 chunk: int = 200, rate: float = 0.0) -> int:
    """Produce ``items`` in order; returns how many were sent (and acknowledged).

    Pacing: ``rate`` > 0 sends at that constant number of items per second (load tests);
    else ``speed`` > 0 follows the items' timestamps, ``speed`` simulated seconds per second
    (a day's rhythm, bursts included); else as fast as Kafka takes them."""
    if rate < 0 or speed < 0:
        raise ValueError("rate and speed must be >= 0")
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                enable_idempotence=True, linger_ms=5,
                                max_request_size=max(settings.max_message_bytes * 2, 1_048_576))
    try:
        await asyncio.wait_for(producer.start(), 30)
    except (KafkaError, OSError, TimeoutError) as exc:
        raise BackendUnavailable(f"cannot reach {settings.kafka_bootstrap}: {exc!r}; "
                                 "is Kafka up (`ops/stack up`)?", "kafka") from exc
    sent = 0
    try:
        t0_wall = time.monotonic()
        t0_feed = items[0].published_at.timestamp() if items else 0.0
        pending: list[asyncio.Future] = []
        for i, it in enumerate(items):
            if rate > 0 or speed > 0:
                due = t0_wall + (i / rate if rate > 0
                                 else (it.published_at.timestamp() - t0_feed) / speed)
                delay = due - time.monotonic()
                if delay > 0:
                    if pending:  # don't hold acknowledged-later items while we sleep
                        await asyncio.gather(*pending)
                        pending.clear()
                    await asyncio.sleep(delay)
            # Kafka timestamps stay "now" (broker retention is by timestamp); event time
            # travels in the message's published_at
            fut = await producer.send(topic_for(settings, it.kind), it.value, key=it.key)
            pending.append(fut)
            sent += 1
            if on_sent is not None:
                on_sent(sent, it)
            if len(pending) >= chunk:
                await asyncio.gather(*pending)
                pending.clear()
        if pending:
            await asyncio.gather(*pending)
    except KafkaError as exc:
        raise BackendUnavailable(f"produce failed after {sent} items: {exc!r}", "kafka") from exc
    finally:
        await producer.stop()
    return sent
