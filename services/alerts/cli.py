"""``yuqing deliver``: the delivery worker (alerts topic -> subscriptions' webhooks/topics)."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from typing import Annotated

import typer

from services.core.cli import connect_redis as _redis
from services.core.cli import fail as _fail
from services.core.config import Settings, get_settings


def register(app: typer.Typer) -> None:
    @app.command("deliver")
    def deliver(
        from_beginning: Annotated[bool, typer.Option(
            help="A new consumer group starts at the oldest alert instead of the newest.")] = False,
        metrics_port: Annotated[int, typer.Option(
            help="Serve Prometheus metrics on this port (0: off).")] = 0,
    ) -> None:
        """Run the delivery worker: route alerts from the alerts topic to subscriptions."""
        settings = get_settings()
        logging.basicConfig(level=settings.log_level,
                            format="%(asctime)s %(levelname)s %(name)s %(message)s")
        from services.stream.log_noise import install

        install()  # a Kafka outage: one aiokafka line per template per 30 s, not hundreds
        # httpx logs every request URL at INFO; webhook URLs often embed tokens.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        asyncio.run(_deliver(settings, from_beginning, metrics_port))


async def _deliver(settings: Settings, from_beginning: bool, metrics_port: int = 0) -> None:
    import httpx
    from aiokafka import AIOKafkaProducer
    from prometheus_client import start_http_server

    from services.alerts.alert_consumer import AlertConsumer
    from services.alerts.delivery import DeliveryEngine, DeliveryMetrics
    from services.alerts.egress import EgressPolicy
    from services.stream.topics import pipeline_topics

    metrics = DeliveryMetrics()
    if metrics_port:
        start_http_server(metrics_port, addr=settings.api_host, registry=metrics.registry)

    redis = await _redis(settings)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                enable_idempotence=True)
    try:
        await producer.start()
    except Exception as exc:
        await redis.aclose()
        _fail(f"cannot reach Kafka at {settings.kafka_bootstrap} ({type(exc).__name__}); "
              "start it or set YUQING_KAFKA_BOOTSTRAP")
    http = httpx.AsyncClient(follow_redirects=False)
    engine = DeliveryEngine(redis, settings.redis_prefix, http=http, producer=producer,
                            max_attempts=settings.deliver_max_attempts,
                            timeout_s=settings.deliver_timeout_s, metrics=metrics,
                            egress=EgressPolicy.from_setting(settings.webhook_allow_networks),
                            reserved_topics=pipeline_topics(settings))
    consumer = AlertConsumer(engine, bootstrap=settings.kafka_bootstrap,
                             topic=settings.topic_alerts, group_id=settings.deliver_group_id,
                             dlq_topic=settings.topic_dlq, producer=producer,
                             from_beginning=from_beginning)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, consumer.stop)
    engine_task = asyncio.create_task(engine.run())
    logging.getLogger(__name__).info("delivering alerts from %s", settings.topic_alerts)
    try:
        await consumer.run()
    finally:
        await engine.stop(grace_s=settings.deliver_timeout_s)
        engine_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await engine_task
        await http.aclose()
        await producer.stop()
        await redis.aclose()
    print("delivery worker stopped", file=sys.stderr)
