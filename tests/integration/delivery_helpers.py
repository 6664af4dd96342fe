"""A delivery worker (engine + Kafka consumer) that tests can start, stop and crash."""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from services.alerts.alert_consumer import AlertConsumer
from services.alerts.delivery import DeliveryEngine
from services.alerts.egress import EgressPolicy
from services.alerts.subscriptions import SubscriptionIn, SubscriptionStore, new_subscription
from services.core.schemas import Alert

# The test receiver listens on 127.0.0.1, an address deliveries may not reach by default.
LOCAL_RECEIVER = EgressPolicy.from_setting("127.0.0.0/8")

SECRET = "whsec-delivery-test-0123456789"


class Worker:
    def __init__(self, redis: Redis, prefix: str, *, bootstrap: str, topic: str, group_id: str,
                 dlq_topic: str, producer: AIOKafkaProducer, **engine_kw: Any) -> None:
        self.http = httpx.AsyncClient()
        kw = {"poll_s": 0.1, "backoff_base_s": 0.05, "backoff_max_s": 0.5, "timeout_s": 5.0,
              "max_attempts": 5, **engine_kw}
        kw.setdefault("egress", LOCAL_RECEIVER)
        self.engine = DeliveryEngine(redis, prefix, http=self.http, producer=producer, **kw)
        self.consumer = AlertConsumer(self.engine, bootstrap=bootstrap, topic=topic,
                                      group_id=group_id, dlq_topic=dlq_topic, producer=producer,
                                      from_beginning=True)
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> Worker:
        await self.engine.refresh()
        self._tasks = [asyncio.create_task(self.engine.run()),
                       asyncio.create_task(self.consumer.run())]
        return self

    async def stop(self) -> None:
        self.consumer.stop()
        await self.engine.stop(grace_s=2)
        await self._finish()

    async def crash(self) -> None:
        """Stop as abruptly as a killed process: in-flight requests are cut, nothing flushed."""
        self.engine.abort()
        await self._finish()

    async def _finish(self) -> None:
        """Cancel each task once and wait for it: a second cancel() would cut short the cleanup
        in its ``finally`` (the Kafka consumer's stop) and leak the consumer's tasks."""
        for t in self._tasks:
            if not t.done():
                t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        await self.engine.stop(grace_s=0)
        await self.http.aclose()


async def add_subscription(redis: Redis, prefix: str, url: str, **fields: Any) -> str:
    body = {"name": "test", "channel": {"type": "webhook", "url": url, "secret": SECRET},
            "group_wait_s": 0.5, "group_interval_s": 0, "repeat_interval_s": 3600, **fields}
    sub = new_subscription(SubscriptionIn.model_validate(body))
    await SubscriptionStore(redis, prefix).put(sub)
    return sub.id


async def produce(producer: AIOKafkaProducer, topic: str, *alerts: Alert) -> None:
    for a in alerts:
        await producer.send_and_wait(topic, a.model_dump_json().encode(), key=a.entity.encode())


def alert_ids(body: dict[str, Any]) -> list[str]:
    return [a["alert_id"] for a in body["alerts"]]
