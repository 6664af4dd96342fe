"""Faust's consumer gets the configured fetch limits (and an aiokafka upgrade that moves them
fails here, not silently in production)."""
from __future__ import annotations

import pytest

from services.app import create_app
from services.core.config import Settings
from services.stream.kafka_fetch import FETCH_MAX_WAIT_MS, FETCH_MIN_BYTES, configure_fetches


async def test_faust_consumer_is_built_with_the_fetch_limits(tmp_path) -> None:
    s = Settings(data_dir=tmp_path)
    app = create_app(s, "sink")
    thread = app.consumer._new_consumer_thread()
    consumer = thread._create_worker_consumer(app.transport)
    assert (FETCH_MIN_BYTES, FETCH_MAX_WAIT_MS) != (1, 500)  # not aiokafka's own defaults
    assert consumer._fetch_min_bytes == FETCH_MIN_BYTES
    assert consumer._fetch_max_wait_ms == FETCH_MAX_WAIT_MS
    await consumer._client.close()


def test_aiokafka_still_reads_them_when_it_starts() -> None:
    """The values are set after __init__; they only matter if start() builds the fetcher
    from these attributes (true for the installed aiokafka; an upgrade that changes it must
    fail here)."""
    import inspect

    from aiokafka import AIOKafkaConsumer

    src = inspect.getsource(AIOKafkaConsumer.start)
    assert "fetch_min_bytes=self._fetch_min_bytes" in src
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in src


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match=">= 1"):
        configure_fetches(0, 100)
