"""Client errors become yuqing's tree in one place per client kind."""
from __future__ import annotations

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, MessageSizeTooLargeError
from redis.exceptions import ConnectionError as RedisConnectionError

from services.core.backends import kafka_errors, redis_errors
from services.core.errors import BackendRejected, BackendUnavailable


def test_redis_errors_translate_in_with_and_as_decorator() -> None:
    with pytest.raises(BackendUnavailable, match="redis: trend read failed"):
        with redis_errors("trend read"):
            raise RedisConnectionError("refused")

    @redis_errors("lookup")
    async def lookup() -> None:
        raise RedisConnectionError("refused")

    import asyncio

    with pytest.raises(BackendUnavailable) as e:
        asyncio.run(lookup())
    assert isinstance(e.value.__cause__, RedisConnectionError)


def test_a_kafka_error_the_broker_repeats_is_rejected_not_retried() -> None:
    with pytest.raises(BackendRejected):
        with kafka_errors("send"):
            raise MessageSizeTooLargeError()
    for transient in (KafkaConnectionError(), KafkaTimeoutError()):  # a broker restart
        with pytest.raises(BackendUnavailable):
            with kafka_errors("send"):
                raise transient


def test_other_errors_pass_through() -> None:
    with pytest.raises(KeyError):
        with redis_errors("x"):
            raise KeyError("not a backend problem")
