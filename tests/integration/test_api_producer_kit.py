"""`yuqing produce`: validates the whole file first (bad lines by number), then sends to Kafka."""
from __future__ import annotations

import asyncio
import json
import os

import pytest
from aiokafka import AIOKafkaConsumer

pytestmark = pytest.mark.integration

NEWS = {"id": "n1", "source": "wire", "published_at": "2026-03-02T10:00:00Z",
        "title": "Acme beats estimates", "tickers": ["ACME"]}


async def _run(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        ".venv/bin/yuqing", "produce", *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "COLUMNS": "120"})
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    return proc.returncode, out.decode(), err.decode()


async def test_produce_validates_then_sends(new_topic, settings, unique, tmp_path):
    topic = await new_topic("news")
    path = tmp_path / "news.jsonl"
    good = [{**NEWS, "id": f"n{i}"} for i in range(5)]
    lines = [json.dumps(good[0]), "{broken", json.dumps({**NEWS, "title": ""}),
             *map(json.dumps, good[1:])]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    code, out, err = await _run(str(path), "--topic", "news", "--kafka-topic", topic)
    assert code == 1
    assert f"{path}:2: invalid JSON" in err and f"{path}:3: title" in err
    assert "5 valid, 2 bad line(s)" in err and "--skip-bad" in err

    code, out, err = await _run(str(path), "--topic", "news", "--kafka-topic", topic,
                                "--skip-bad", "--rate", "50")
    assert code == 0, err
    assert f"sent 5 message(s) to {topic}" in out

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap,
                                auto_offset_reset="earliest", group_id=f"test-prod-{unique}")
    await consumer.start()
    try:
        got = []
        while len(got) < 5:
            batch = await consumer.getmany(timeout_ms=10_000)
            assert batch, "messages did not arrive"
            got += [m for ms in batch.values() for m in ms]
    finally:
        await consumer.stop()
    assert sorted(json.loads(m.value)["id"] for m in got) == [f"n{i}" for i in range(5)]
    assert sorted(m.key for m in got) == [f"wire:n{i}".encode() for i in range(5)]

    code, _, err = await _run(str(path), "--topic", "tweets")
    assert code != 0 and "'news', 'comments'" in err
