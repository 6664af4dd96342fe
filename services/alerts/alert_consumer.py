"""The alerts topic -> the delivery engine; offsets committed only after routing is durable.

A message that is not a valid :class:`~services.core.schemas.Alert` is kept on the DLQ
(stage ``deliver``, keyed ``topic:partition:offset`` like every stage's dead letters) before
its offset is committed; a backend outage rewinds to the last commit and retries.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from services.alerts.delivery import DeliveryEngine
from services.core.aio import finish_despite_cancel, wait_event
from services.core.errors import BackendError
from services.core.schemas import Alert
from services.stream.deadletter import reject

log = logging.getLogger(__name__)


class AlertConsumer:
    """Consumes alerts and routes them; commits offsets only after routing is durable.

    A message that is not a valid :class:`Alert` is kept as a :class:`DeadLetter` on the DLQ
    topic (stage ``deliver``) before its offset is committed.
    """

    def __init__(self, engine: DeliveryEngine, *, bootstrap: str, topic: str, group_id: str,
                 dlq_topic: str, producer: AIOKafkaProducer, from_beginning: bool = False,
                 retry_s: float = 2.0) -> None:
        self._engine = engine
        self._producer = producer
        self._dlq_topic = dlq_topic
        self._topic = topic
        self._retry_s = retry_s
        self._consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False,
            auto_offset_reset="earliest" if from_beginning else "latest")
        self._stopping = asyncio.Event()
        self.routed = 0

    async def run(self) -> None:
        try:
            # inside the try: a group consumer's start() waits for its first assignment, and a
            # stop during that wait must still close what start() had opened
            await self._consumer.start()
            while not self._stopping.is_set():
                batch = await self._consumer.getmany(timeout_ms=500, max_records=200)
                if not batch:
                    continue
                try:
                    for records in batch.values():
                        for rec in records:
                            await self._handle(rec)
                    await self._consumer.commit()
                except (BackendError, KafkaError) as exc:
                    log.warning("routing failed, will re-read from the last commit: %s", exc)
                    await self._rewind()
                    await wait_event(self._stopping, self._retry_s)
        finally:
            await finish_despite_cancel(self._consumer.stop())

    def stop(self) -> None:
        self._stopping.set()

    async def _rewind(self) -> None:
        for tp in self._consumer.assignment():
            committed = await self._consumer.committed(tp)
            if committed is None:
                await self._consumer.seek_to_beginning(tp)
            else:
                self._consumer.seek(tp, committed)

    async def _handle(self, rec: Any) -> None:
        try:
            alert = Alert.model_validate_json(rec.value)
        except ValidationError as exc:
            bad_json = any(e["type"] == "json_invalid" for e in exc.errors())
            await self._dead_letter(rec, "invalid_json" if bad_json else "schema", str(exc))
            return
        await self._engine.handle_alert(alert)
        self.routed += 1

    async def _dead_letter(self, rec: Any, reason: str, error: str) -> None:
        topic, key, value = reject(self._dlq_topic, rec, reason, error, "deliver")
        await self._producer.send_and_wait(topic, value, key=key)
