"""Helpers for API and delivery tests: an app on the real backends, keys, templates, alerts."""
from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import httpx
from elasticsearch import AsyncElasticsearch
from redis.asyncio import Redis

from services.api.app import create_app
from services.api.auth import KeyStore
from services.core.config import Settings
from services.core.schemas import Alert, Evidence, ScoredDoc, Sentiment
from services.stream.es_layout import component_templates, index_templates


def isolated_settings(settings: Settings, ns: str, **extra) -> Settings:
    """``settings`` in the test's namespace: its topics, indices and Redis keys only."""
    return settings.model_copy(update={"namespace": ns, **extra})


@asynccontextmanager
async def api_client(s: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running (real Redis/ES/Kafka clients), called in-process."""
    app = create_app(s)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client


async def make_keys(redis: Redis, prefix: str) -> dict[str, str]:
    store = KeyStore(redis, prefix)
    return {scope: (await store.create(f"test-{scope}", [scope])).key
            for scope in ("read", "subscribe", "admin")}


def auth(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


async def install_templates(es: AsyncElasticsearch, s: Settings) -> None:
    for name, body in component_templates(s.es_index_prefix, s.es_alerts_index).items():
        await es.cluster.put_component_template(name=name, **body)
    for name, body in index_templates(s.es_index_prefix, s.es_alerts_index).items():
        await es.indices.put_index_template(name=name, **body)


async def remove_component_templates(es: AsyncElasticsearch, s: Settings) -> None:
    for name in component_templates(s.es_index_prefix, s.es_alerts_index):
        await es.options(ignore_status=404).cluster.delete_component_template(name=name)


def scored(doc_id: str, *, text: str, label: str, entities: list[str], source: str = "wire",
           published_at: datetime | None = None, topics: list[str] | None = None,
           negative: float = 0.1) -> ScoredDoc:
    now = datetime.now(UTC)
    when = published_at or now - timedelta(minutes=10)
    probs = {"negative": negative, "neutral": 0.2, "positive": round(0.8 - negative, 4)}
    kind, src, sid = doc_id.split(":", 2)
    return ScoredDoc(doc_id=doc_id, kind=kind, source=src, source_id=sid, title=text[:40],
                     text=text, published_at=when, ingested_at=when, entities=entities,
                     primary_entity=entities[0] if entities else None, topics=topics or [],
                     sentiment=Sentiment(label=label, probabilities=probs, model_version="t1"),
                     classified_at=when)


def make_alert(entity: str = "ACME", topic: str = "earnings", severity: str = "warning",
               alert_id: str | None = None, sources: tuple[str, ...] = ("wire",)) -> Alert:
    now = datetime.now(UTC)
    return Alert(alert_id=alert_id or uuid.uuid4().hex, entity=entity, topic=topic,
                 severity=severity, window_start=now - timedelta(minutes=5), window_end=now,
                 negative_count=8, total_count=10, negative_share=0.8, baseline_mean=1.0,
                 baseline_std=0.5, score=14.0, detector="test", created_at=now,
                 evidence=[Evidence(doc_id=f"news:{s}:{i}", title=f"{entity} falls",
                                    negative=0.9, published_at=now)
                           for i, s in enumerate(sources)])
