"""deliver(): a record the broker refuses for good names itself and stops the retry loop."""
from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError

from services.core.errors import BackendRejected, BackendUnavailable
from services.stream.topics import deliver


class _Producer:
    """Stands in for Faust's producer: ``send`` returns a future per record."""

    def __init__(self, fail_on: bytes | None, exc: BaseException | None) -> None:
        self.fail_on, self.exc = fail_on, exc

    async def send(self, topic, key, value, *_):  # type: ignore[no-untyped-def]
        fut = asyncio.get_running_loop().create_future()
        if key == self.fail_on:
            fut.set_exception(self.exc)
        else:
            fut.set_result(None)
        return fut


async def test_a_refused_record_is_named() -> None:
    p = _Producer(b"big", MessageSizeTooLargeError())
    with pytest.raises(BackendRejected, match=r"1500 bytes to yuqing.dlq \(key b'big'\)"):
        await deliver(p, [("yuqing.dlq", b"ok", b"x"), ("yuqing.dlq", b"big", b"y" * 1500)])


async def test_a_broker_outage_stays_retriable() -> None:
    p = _Producer(b"k", KafkaConnectionError())
    with pytest.raises(BackendUnavailable):
        await deliver(p, [("t", b"k", b"v")])
    await deliver(_Producer(None, None), [("t", b"k", b"v")])  # all acknowledged: returns
