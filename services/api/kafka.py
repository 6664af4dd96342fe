"""The API's Kafka producer, started on first use so the API serves reads while Kafka is down
(``/readyz`` reports it; feedback answers 503 until it is back)."""
from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError


class KafkaGate:
    def __init__(self, bootstrap: str, start_timeout_s: float = 10.0) -> None:
        self._bootstrap = bootstrap
        self._timeout = start_timeout_s
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()
        self.error: str | None = None

    async def get(self) -> AIOKafkaProducer | None:
        if self._producer is not None:
            return self._producer
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(bootstrap_servers=self._bootstrap, acks="all",
                                            enable_idempotence=True,
                                            request_timeout_ms=int(self._timeout * 1000))
                try:
                    await asyncio.wait_for(producer.start(), self._timeout)
                except (KafkaError, TimeoutError, OSError) as exc:
                    self.error = type(exc).__name__
                    await producer.stop()
                    return None
                self._producer, self.error = producer, None
        return self._producer

    async def ping(self) -> bool:
        producer = await self.get()
        if producer is None:
            return False
        try:
            await asyncio.wait_for(producer.client.fetch_all_metadata(), 5)
        except (KafkaError, TimeoutError, OSError) as exc:
            self.error = type(exc).__name__
            return False
        return True

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
