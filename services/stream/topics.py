"""The Kafka topics yuqing uses, and delivery that waits for the broker's acknowledgement.

Topic names derive from ``YUQING_NAMESPACE`` (:class:`~services.core.config.Settings`; tests,
the demo and the benchmark each run in a namespace of their own); this module says how each
is laid out and keyed:

* raw inputs are keyed by whatever the producer chose (we never rely on it);
* ``docs.clean`` and ``docs.scored`` are keyed by the primary entity, so one company's
  documents stay in order on one partition (the alert detector sees its series in order);
* the DLQ and alerts are small; alerts are keyed by entity.

Topics are created up front (``ensure_topics``) rather than left to broker auto-creation, so
partition counts are what we asked for.
"""
from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import faust
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from services.core.backends import kafka_errors
from services.core.config import Settings
from services.core.errors import BackendUnavailable


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    purpose: str


def topic_specs(settings: Settings) -> list[TopicSpec]:
    p = settings.topic_partitions
    return [
        TopicSpec(settings.topic_news_raw, p, "raw news (NewsIn JSON)"),
        TopicSpec(settings.topic_comments_raw, p, "raw comments (CommentIn JSON)"),
        TopicSpec(settings.topic_docs_clean, p, "CleanDoc keyed by primary entity"),
        TopicSpec(settings.topic_docs_scored, p, "ScoredDoc keyed by primary entity"),
        TopicSpec(settings.topic_alerts, 1, "Alert keyed by entity"),
        TopicSpec(settings.topic_dlq, 1, "DeadLetter: rejected input and why"),
        TopicSpec(settings.topic_labels, 1, "Feedback: analysts' corrected labels"),
    ]


def pipeline_topics(settings: Settings) -> frozenset[str]:
    """yuqing's own topics: no subscription may deliver into them."""
    return frozenset(spec.name for spec in topic_specs(settings))


async def ensure_topics(settings: Settings, specs: Iterable[TopicSpec] | None = None) -> list[str]:
    """Create missing topics; returns the names created. Existing topics are left as they are."""
    specs = list(specs or topic_specs(settings))
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        await asyncio.wait_for(admin.start(), 30)
    except (KafkaError, OSError, TimeoutError) as exc:
        raise BackendUnavailable(f"cannot reach {settings.kafka_bootstrap}: {exc!r}; "
                                 "is Kafka up (`ops/stack up`)?", "kafka") from exc
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        created: list[str] = []
        for s in missing:
            try:
                await admin.create_topics([NewTopic(s.name, num_partitions=s.partitions,
                                                    replication_factor=1)])
                created.append(s.name)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        await admin.close()


Record = tuple[str, bytes | None, bytes]  # topic, key, value


def bytes_topic(app: faust.App, name: str) -> faust.TopicT:
    """A topic read as raw bytes: every agent parses its input itself, so a value that does
    not parse becomes a dead letter with its reason instead of an exception inside Faust."""
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw",
                     value_serializer="raw")


def doc_key(doc) -> bytes:
    """The key of ``docs.clean`` and ``docs.scored``: the primary entity, so one company's
    documents stay in order on one partition (the alert detector sees its series in order)."""
    return (doc.primary_entity or doc.doc_id).encode()


async def deliver(producer, records: Sequence[Record]) -> None:
    """Send ``records`` and return only when the broker acknowledged every one (acks=all).

    ``producer`` is a Faust app's producer (``app.producer``). Sends are pipelined (all queued
    first, then awaited together). Raises :class:`BackendUnavailable` if any send failed, so
    the caller retries the whole batch rather than acking input whose output is not durable
    (Kafka's idempotent producer plus downstream idempotency make the retry harmless).
    """
    if not records:
        return
    with kafka_errors("send failed"):
        futures = [await producer.send(t, k, v, None, None, None) for t, k, v in records]
        results = await asyncio.gather(*futures, return_exceptions=True)
    # a send the broker refuses for good (a record too large) becomes BackendRejected naming
    # the record, and the worker stops on it (services.stream.effects) rather than retry
    for (topic, key, value), res in zip(records, results, strict=True):
        if isinstance(res, BaseException):
            with kafka_errors(f"send of {len(value)} bytes to {topic} (key {(key or b'')[:80]!r})"):
                raise res
