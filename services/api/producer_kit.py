"""``yuqing produce``: send a JSONL file of news or comments to Kafka, validated first.

Every line is checked against the producer schema before anything is sent, so a file with bad
lines is reported (by line number, with the field and reason) and nothing half-sent; fix the
lines or pass ``--skip-bad``. Messages are keyed ``<source>:<id>`` so updates of one item stay
in order on one partition, produced with ``acks=all`` and idempotence, at most ``rate`` per
second.
"""
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaProducer
from pydantic import BaseModel, ValidationError

from services.core.schemas import CommentIn, NewsIn

MODELS: dict[str, type[BaseModel]] = {"news": NewsIn, "comments": CommentIn}


@dataclass(frozen=True)
class BadLine:
    line: int
    error: str


def _explain(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors()[:3]:
        loc = ".".join(str(x) for x in e["loc"]) or "(line)"
        parts.append(f"{loc}: {e['msg']}")
    more = len(exc.errors()) - 3
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def check_line(raw: bytes, model: type[BaseModel]) -> tuple[BaseModel | None, str | None]:
    text = raw.strip()
    try:
        data = json.loads(text)
    except UnicodeDecodeError:
        return None, "not UTF-8"
    except json.JSONDecodeError as exc:
        return None, f"invalid JSON: {exc.msg} at column {exc.colno}"
    if not isinstance(data, dict):
        return None, "expected a JSON object"
    try:
        return model.model_validate(data), None
    except ValidationError as exc:
        return None, _explain(exc)


def is_replay_format(path: Path) -> bool:
    """True when the file's first line is a replay envelope (``kind`` + ``value`` /
    ``value_b64``, as ``yuqing feed generate`` writes), not a bare NewsIn/CommentIn."""
    for _, raw in iter_lines(path):
        try:
            obj = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return False
        return isinstance(obj, dict) and "kind" in obj and ("value" in obj or "value_b64" in obj)
    return False


def iter_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """Non-blank lines with their 1-based numbers."""
    with path.open("rb") as fh:
        for n, raw in enumerate(fh, start=1):
            if raw.strip():
                yield n, raw.rstrip(b"\r\n")


def validate_file(path: Path, kind: str) -> tuple[int, list[BadLine]]:
    """(valid line count, bad lines)."""
    model = MODELS[kind]
    good, bad = 0, []
    for n, raw in iter_lines(path):
        _, err = check_line(raw, model)
        if err is None:
            good += 1
        else:
            bad.append(BadLine(n, err))
    return good, bad


async def produce_file(path: Path, kind: str, *, bootstrap: str, topic: str, rate: float,
                       skip: set[int], on_sent: Callable[[int], None] | None = None) -> int:
    """Send every valid line (not in ``skip``) at most ``rate`` per second (0 = unlimited)."""
    model = MODELS[kind]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                linger_ms=5)
    await producer.start()
    sent = 0
    started = time.monotonic()
    pending: list[asyncio.Future] = []
    batch = 500 if rate <= 0 else max(1, min(500, int(rate)))  # confirm about once a second
    try:
        for n, raw in iter_lines(path):
            if n in skip:
                continue
            item, err = check_line(raw, model)
            if item is None:
                continue
            if rate > 0:
                delay = started + sent / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            key = f"{item.source}:{item.id}".encode()  # type: ignore[attr-defined]
            pending.append(await producer.send(topic, raw.strip(), key=key))
            sent += 1
            if len(pending) >= batch:
                await asyncio.gather(*pending)
                if on_sent:
                    on_sent(len(pending))
                pending.clear()
        if pending:
            await asyncio.gather(*pending)
            if on_sent:
                on_sent(len(pending))
    finally:
        await producer.stop()
    return sent
