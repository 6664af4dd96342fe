"""Alerts agent: ``docs.scored`` batches -> spike detector -> ``yuqing.alerts`` + ES alerts index.

Order inside one batch, chosen so a crash anywhere repeats work but never loses or doubles
it: (1) the detector counts the batch idempotently in Redis and judges the touched series,
(2) the alerts are sent to Kafka (awaited until acknowledged) and indexed in Elasticsearch
(``_id`` = alert id), and model-change annotations into ``<ns>-annotations``, (3) the
baselines are saved, (4) the agent moves on and Faust acks the batch. A crash before (3)
re-judges the same windows with the same counts on redelivery and produces the same alert
ids (and annotation ids).
"""
from __future__ import annotations

import logging
import time

import faust
from redis.asyncio import Redis

from services.alerts.annotations import AnnotationWriter
from services.alerts.config import detector_config
from services.alerts.detector import AlertDetector
from services.alerts.progress import Every, PartitionProgress
from services.core.config import Settings
from services.core.schemas import Alert, ScoredDoc
from services.stream.batches import SINK_MAX_WAIT_S, SINK_TAKE, run_batches
from services.stream.deadletter import parse_batch
from services.stream.effects import until_durable
from services.stream.es_bulk import EsWriter, es_client
from services.stream.topics import Record, bytes_topic, deliver

log = logging.getLogger(__name__)

__all__ = ["build_detector", "detector_config", "register"]


def build_detector(settings: Settings, redis: Redis, partitions: int | None = None
                   ) -> AlertDetector:
    """``partitions``: of the input topic (no window closes before each was seen)."""
    return AlertDetector(redis, settings.redis_prefix, detector_config(settings),
                         lateness_s=settings.alert_lateness_s,
                         ttl_s=settings.trends_retention_h * 3600,
                         partitions=partitions or settings.topic_partitions)


def input_partitions(app: faust.App, topic: str) -> int | None:
    """Partitions of ``topic`` from the consumer's metadata (``None`` until it has some)."""
    try:
        parts = app.consumer.topic_partitions(topic)
    except Exception:  # noqa: BLE001 - not assigned yet: the setting stands in
        return None
    if parts is None:
        return None
    return len(parts) if isinstance(parts, set | frozenset | list | tuple) else int(parts)


def alert_records(settings: Settings, alerts: list[Alert]) -> list[Record]:
    return [(settings.topic_alerts, a.entity.encode(), a.model_dump_json().encode())
            for a in alerts]


def register(app: faust.App, settings: Settings) -> None:
    topic = bytes_topic(app, settings.topic_docs_scored)

    @app.agent(topic, name="alerts")
    async def alerts(stream: faust.StreamT) -> None:
        redis = Redis.from_url(settings.redis_url)
        writer = EsWriter(es_client(settings.es_url), settings.es_index_prefix,
                          alerts_index=settings.es_alerts_index,
                          zh_analysis=settings.es_zh_analysis)
        detector = build_detector(settings, redis)
        notes = AnnotationWriter(writer.es, settings.es_annotations_index,
                                 settings.alert_window_s)
        progress = PartitionProgress()
        ask = Every()  # Kafka's high-water marks at most once a second
        hws: dict = {}
        assigned: frozenset = frozenset()
        fired = 0

        @app.on_partitions_assigned.connect
        async def on_assigned(sender, new_assignment, **kwargs) -> None:  # noqa: ARG001
            # another worker may have counted and judged these partitions' series meanwhile:
            # the detector reads its state back from Redis on its next batch
            detector.reset()
            ask.forget()

        async def holding() -> set[int] | None:
            """The assigned partitions of docs.scored that bound the watermark now."""
            nonlocal hws, assigned
            tps = [tp for tp in app.consumer.assignment() if tp.topic == topic.get_topic_name()]
            if not tps:
                return None
            now_assigned = frozenset(tps)
            if now_assigned != assigned:  # reassigned (in case the signal was missed)
                if assigned:
                    detector.reset()
                assigned = now_assigned
            if ask.due(time.monotonic(), now_assigned):
                try:
                    hws = await app.consumer.highwaters(*tps)
                except Exception:  # noqa: BLE001 - unknown: every partition holds (safe)
                    ask.forget()
                    return {tp.partition for tp in tps}
            return progress.holding({tp.partition: hws.get(tp) for tp in tps},
                                    time.monotonic())

        async def handle(events) -> int:
            docs, _dead = parse_batch(settings.topic_dlq, events, ScoredDoc, "alerts")
            good = [d for d in docs if d is not None]
            parts = [ev.message.partition
                     for d, ev in zip(docs, events, strict=True) if d is not None]
            for ev in events:
                progress.seen(ev.message.partition, ev.message.offset)
            if not good:
                return 0
            known = input_partitions(app, settings.topic_docs_scored)
            if known:  # the topic as it exists (it may predate YUQING_TOPIC_PARTITIONS)
                detector.partitions = known
            hold = await holding()
            found = await until_durable("alerts detect",
                                        lambda g=good, p=parts, h=hold: detector.observe(g, p, h))
            if found:
                await until_durable("alerts deliver",
                                    lambda f=found: deliver(app.producer,
                                                            alert_records(settings, f)))
                await until_durable("alerts index", lambda f=found: writer.index_alerts(f))
                for a in found:
                    log.warning("ALERT %s %s/%s %s %s: %d negative in window %s (score=%.0f)",
                                a.alert_id, a.entity, a.topic, a.state, a.severity,
                                a.negative_count, a.window_start.isoformat(), a.score)
            if detector.annotations:
                await until_durable("alerts annotations",
                                    lambda a=list(detector.annotations): notes.write(a))
            await until_durable("alerts state", detector.commit)
            return len(found)

        async def handle_counted(events) -> int:
            nonlocal fired
            n = await handle(events)
            fired += n
            return n

        try:
            await run_batches(stream, "alerts", handle_counted, take=SINK_TAKE,
                              within_s=SINK_MAX_WAIT_S, grace_s=settings.stop_grace_s)
        finally:
            log.info("alerts: %d alerts emitted", fired)
            await redis.aclose()
            await writer.es.close()
