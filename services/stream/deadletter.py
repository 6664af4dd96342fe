"""Dead letters: every stage rejects bad input the same way, keyed so a redelivery is one record.

A stage that cannot use a record (bytes that are not a document, a text the model refuses,
a document Elasticsearch rejects for good) never drops it and never stops on it: it writes a
:class:`~services.core.schemas.DeadLetter` to the DLQ topic (the original bytes, the reason
and where it came from) in the same durable batch as its other outputs, and moves on.
"""
from __future__ import annotations

import base64
import hashlib
from datetime import datetime

from pydantic import ValidationError

from services.core.schemas import DeadLetter, SourceRef, utcnow
from services.stream.topics import Record

ERROR_MAX_CHARS = 2000
# A dead letter must always fit in a Kafka record (the producer's 1 MiB max.request.size):
# base64 makes bytes 4/3 larger, so an original past ORIGINAL_KEEP_MAX keeps its first
# ORIGINAL_KEEP_MAX bytes plus its size and sha256 (and its origin, to fetch it from the
# source topic). Otherwise one oversized poison message would fail its own dead letter on
# every retry and block its partition.
ORIGINAL_KEEP_MAX = 256 * 1024
KEY_KEEP_MAX = 4 * 1024


def origin_of(message) -> SourceRef:
    """Where a Faust ``Message`` or an aiokafka ``ConsumerRecord`` came from."""
    return SourceRef(topic=message.topic, partition=message.partition, offset=message.offset)


def dead_letter(value: bytes | None, key: bytes | None, origin: SourceRef, reason: str,
                error: str, stage: str = "ingest", now: datetime | None = None) -> DeadLetter:
    """A dead letter keeping the original bytes (base64; a prefix past ``ORIGINAL_KEEP_MAX``)
    with the reason and its origin."""
    value = value or b""
    return DeadLetter(
        reason=reason,
        error=error[:ERROR_MAX_CHARS],
        stage=stage,
        original_b64=base64.b64encode(value[:ORIGINAL_KEEP_MAX]).decode("ascii"),
        key_b64=base64.b64encode(key[:KEY_KEEP_MAX]).decode("ascii") if key is not None else None,
        original_size=len(value),
        original_sha256=hashlib.sha256(value).hexdigest(),
        original_truncated=len(value) > ORIGINAL_KEEP_MAX or len(key or b"") > KEY_KEEP_MAX,
        origin=origin,
        failed_at=now or utcnow(),
    )


def dlq_record(dlq_topic: str, dl: DeadLetter) -> Record:
    """A DLQ record keyed by where the input came from (``topic:partition:offset``).

    The key is the DLQ's idempotency key: a batch redelivered after a crash can produce the
    same dead letter twice (the first copy was acknowledged, the input offset not yet
    committed); readers -- and log compaction, if enabled on the topic -- treat records with
    the same key as one.
    """
    o = dl.origin
    return (dlq_topic, f"{o.topic}:{o.partition}:{o.offset}".encode(),
            dl.model_dump_json().encode())


def reject(dlq_topic: str, message, reason: str, error: str, stage: str) -> Record:
    """The DLQ record for one consumed ``message`` (Faust or aiokafka) that ``stage`` refuses."""
    dl = dead_letter(message.value, message.key, origin_of(message), reason, error, stage=stage)
    return dlq_record(dlq_topic, dl)


def parse_batch(dlq_topic: str, events, model, stage: str) -> tuple[list, list[Record]]:
    """Parse each event's value as the pydantic ``model``.

    Returns one slot per event (None where it did not parse) and the DLQ records of those
    that did not, so callers can zip results back onto their events.
    """
    docs: list = []
    dead: list[Record] = []
    for ev in events:
        m = ev.message
        try:
            docs.append(model.model_validate_json(m.value))
        except (ValidationError, ValueError, TypeError) as exc:
            dead.append(reject(dlq_topic, m, "schema", f"not a {model.__name__}: {exc}", stage))
            docs.append(None)
    return docs, dead
