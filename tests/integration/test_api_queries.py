"""Trends (Redis), alerts and documents (Elasticsearch) and feedback (Kafka + Redis) over HTTP,
against data written with the other stages' own code (TrendStore, the index template)."""
from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer

from services.core.schemas import Feedback
from services.stream.es_layout import alert_to_source, doc_to_source, index_for
from services.trends.store import TrendStore
from tests.integration.api_helpers import (
    api_client,
    auth,
    install_templates,
    isolated_settings,
    make_alert,
    make_keys,
    remove_component_templates,
    scored,
)

pytestmark = pytest.mark.integration



def make_docs(now: datetime) -> list:
    """Documents relative to ``now`` (built when the test runs, not at import)."""
    return [
    scored("news:wire:1", text="Apple recall widens after battery fires", label="negative",
           entities=["AAPL"], negative=0.9, topics=["product"],
           published_at=now - timedelta(minutes=30)),
    scored("news:wire:2", text="Apple beats estimates on services growth", label="positive",
           entities=["AAPL"], negative=0.05, topics=["earnings"],
           published_at=now - timedelta(minutes=20)),
    scored("comment:forum:3", text="Microsoft cloud steady, nothing new", label="neutral",
           entities=["MSFT"], source="forum", negative=0.1,
           published_at=now - timedelta(minutes=10)),
    scored("news:wire:4", text="Apple supplier recall costs mount", label="negative",
           entities=["AAPL"], negative=0.7, topics=["product"],
           published_at=now - timedelta(days=3)),
    ]


@pytest_asyncio.fixture
async def ctx(settings, redis, redis_ns, es, es_prefix, new_topic):
    await new_topic("labels")  # the namespace's labels topic
    s = isolated_settings(settings, redis_ns)
    await install_templates(es, s)
    docs = make_docs(datetime.now(UTC))
    for d in docs:
        await es.index(index=index_for(s.es_index_prefix, d.published_at), id=d.doc_id,
                       document=doc_to_source(d))
    alerts = [make_alert("AAPL", severity="critical"), make_alert("AAPL", severity="info"),
              make_alert("MSFT", severity="warning")]
    for a in alerts:
        await es.index(index=s.es_alerts_index, id=a.alert_id, document=alert_to_source(a))
    await es.indices.refresh(index=f"{es_prefix}*")
    await TrendStore(redis, redis_ns, 48 * 3600).record(docs[:3])
    keys = await make_keys(redis, redis_ns)
    async with api_client(s) as client:
        yield client, keys, s, alerts, docs
    await es.options(ignore_status=404).indices.delete(index=f"{es_prefix}*")
    await es.options(ignore_status=404).indices.delete_index_template(name=f"{es_prefix}*")
    await remove_component_templates(es, s)


async def test_documents_search(ctx):
    client, keys, _, _, _ = ctx
    h = auth(keys["read"])

    async def ids(**params):
        r = await client.get("/v1/documents", params=params, headers=h)
        assert r.status_code == 200, r.text
        return [d["doc_id"] for d in r.json()["items"]], r.json()["total"]

    assert await ids(q="recall") == (["news:wire:1", "news:wire:4"], 2)
    assert await ids(q="recall", window="1d") == (["news:wire:1"], 1)
    assert await ids(entity="aapl", label="negative") == (["news:wire:1", "news:wire:4"], 2)
    assert await ids(entity="MSFT", source="forum", kind="comment") == (["comment:forum:3"], 1)
    assert await ids(entity="AAPL", sort="most_negative", limit=1, offset=1) == (
        ["news:wire:4"], 3)
    assert await ids(entity="GOOG") == ([], 0)  # a watchlist listing of GOOGL: known, no docs
    r = await client.get("/v1/documents", params={"q": "recall"}, headers=h)
    item = r.json()["items"][0]
    assert item["sentiment"]["label"] == "negative" and "highlight" in item
    r = await client.get("/v1/documents/news:wire:2", headers=h)
    assert r.status_code == 200 and r.json()["entities"] == ["AAPL"]
    assert (await client.get("/v1/documents/news:wire:404", headers=h)).status_code == 404


async def test_bad_requests_are_400_or_422_with_a_reason(ctx):
    client, keys, _, _, _ = ctx
    h = auth(keys["read"])
    r = await client.get("/v1/documents", params={"entity": "ZZZZQ"}, headers=h)
    assert r.status_code == 400 and "unknown entity" in r.json()["detail"]
    r = await client.get("/v1/trends", params={"entity": "ZZZZQ"}, headers=h)
    assert r.status_code == 400 and "unknown entity" in r.json()["detail"]
    now = datetime.now(UTC)
    since, until = now.isoformat(), (now - timedelta(hours=1)).isoformat()
    for path in ("/v1/documents", "/v1/alerts", "/v1/trends"):
        r = await client.get(path, params={"since": since, "until": until}, headers=h)
        assert r.status_code == 400 and "bad time range" in r.json()["detail"], path
    r = await client.get("/v1/trends", params={"window": "30d", "resolution": "minute"},
                         headers=h)
    assert r.status_code == 400 and "resolution=hour" in r.json()["detail"]
    r = await client.get("/v1/documents", params={"label": "furious"}, headers=h)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "label"]
    r = await client.get("/v1/alerts", params={"window": "yesterday"}, headers=h)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "window"]


async def test_alerts_filtered_and_paged(ctx):
    client, keys, _, alerts, _ = ctx
    h = auth(keys["read"])
    r = await client.get("/v1/alerts", headers=h)
    assert r.status_code == 200 and r.json()["total"] == 3
    r = await client.get("/v1/alerts", params={"entity": "AAPL", "min_severity": "warning"},
                         headers=h)
    assert [a["alert_id"] for a in r.json()["items"]] == [alerts[0].alert_id]
    r = await client.get("/v1/alerts", params={"limit": 2, "offset": 2}, headers=h)
    assert len(r.json()["items"]) == 1 and r.json()["total"] == 3


async def test_cursor_pages_past_any_offset_and_deep_offsets_name_the_field(ctx):
    client, keys, _, alerts, docs = ctx
    h = auth(keys["read"])
    for path, n in (("/v1/documents", len(docs)), ("/v1/alerts", len(alerts))):
        seen: list[str] = []
        params: dict = {"limit": 1}
        for _ in range(n + 1):
            r = await client.get(path, params=params, headers=h)
            assert r.status_code == 200, r.text
            page = r.json()
            seen += [i.get("doc_id") or i.get("alert_id") for i in page["items"]]
            if page["next_cursor"] is None:
                break
            params = {"limit": 1, "cursor": page["next_cursor"]}
        assert len(seen) == len(set(seen)) == n, (path, seen)
        r = await client.get(path, params={"offset": 9990, "limit": 20}, headers=h)
        assert r.status_code == 422 and r.json()["detail"].startswith("offset:"), r.text
        r = await client.get(path, params={"cursor": "not-a-cursor"}, headers=h)
        assert r.status_code == 422 and r.json()["detail"].startswith("cursor:"), r.text


async def test_trends_from_redis(ctx):
    client, keys, _, _, _ = ctx
    h = auth(keys["read"])
    r = await client.get("/v1/trends", params={"entity": "AAPL", "window": "2h"}, headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["dimension"], body["value"], body["resolution"]) == ("entity", "AAPL", "minute")
    assert body["total"]["count"] == 2 and body["total"]["negative_share"] == 0.5
    assert len(body["points"]) in (120, 121)
    assert sum(p["count"] for p in body["points"]) == 2
    r = await client.get("/v1/trends", params={"window": "2h", "resolution": "hour"}, headers=h)
    assert r.json()["total"]["count"] == 3 and r.json()["value"] == "*"
    r = await client.get("/v1/trends", params={"topic": "product", "window": "2h"}, headers=h)
    assert r.json()["total"]["labels"]["negative"] == 1
    r = await client.get("/v1/trends/summary", params={"entity": "AAPL"}, headers=h)
    w = r.json()["windows"]
    assert w["1h"]["count"] == 2 and w["24h"]["negative_share"] == 0.5 and w["5m"]["count"] == 0
    r = await client.get("/v1/trends/top", params={"window": "1h", "label": "negative"},
                         headers=h)
    assert r.json() == [{"value": "AAPL", "count": 1}]


async def test_feedback_is_stored_in_kafka_and_redis_and_exported(ctx, settings, redis,
                                                                  redis_ns, unique, tmp_path):
    client, keys, s, _, docs = ctx
    r = await client.post("/v1/feedback", json={"doc_id": "news:wire:2", "label": "neutral"},
                          headers=auth(keys["read"]))
    assert r.status_code == 403
    r = await client.post("/v1/feedback", json={"doc_id": "news:wire:2", "label": "neutral"},
                          headers=auth(keys["subscribe"]))
    assert r.status_code == 201, r.text
    r = await client.post("/v1/feedback", json={"doc_id": "news:wire:1", "label": "neutral"},
                          headers=auth(keys["subscribe"]))
    r = await client.post("/v1/feedback", json={"doc_id": "news:wire:1", "label": "negative",
                                                "analyst": "li"},
                          headers=auth(keys["subscribe"]))
    assert r.status_code == 201
    r = await client.post("/v1/feedback", json={"doc_id": "news:wire:999", "label": "negative"},
                          headers=auth(keys["subscribe"]))
    assert r.status_code == 404 and "send its 'text'" in r.json()["detail"]

    consumer = AIOKafkaConsumer(s.topic_labels, bootstrap_servers=s.kafka_bootstrap,
                                auto_offset_reset="earliest", group_id=f"test-labels-{unique}")
    await consumer.start()
    try:
        got: list[Feedback] = []
        while len(got) < 3:
            batch = await consumer.getmany(timeout_ms=10_000)
            assert batch, "labels did not reach Kafka"
            got += [Feedback.model_validate_json(m.value) for ms in batch.values() for m in ms]
    finally:
        await consumer.stop()
    assert [(f.doc_id, f.label) for f in got] == [("news:wire:2", "neutral"),
                                                  ("news:wire:1", "neutral"),
                                                  ("news:wire:1", "negative")]
    assert got[0].text == docs[1].text and got[2].analyst == "li"
    assert await redis.xlen(f"{redis_ns}:feedback") == 3

    out = tmp_path / "labels.jsonl"
    proc = await asyncio.create_subprocess_exec(
        ".venv/bin/yuqing", "feedback", "export", "--output", str(out),
        env={**os.environ, "YUQING_NAMESPACE": redis_ns},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["doc_id"], r["label"]) for r in rows] == [("news:wire:2", "neutral"),
                                                         ("news:wire:1", "negative")]
    assert set(rows[0]) == {"doc_id", "text", "label", "ts"} and rows[1]["text"] == docs[0].text


async def test_health_ready_metrics(ctx):
    client, _, _, _, _ = ctx
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    r = await client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["checks"] == {"kafka": "ok", "redis": "ok", "elasticsearch": "ok"}
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert 'yuqing_api_requests_total{method="GET",route="/readyz",status="200"} 1.0' in r.text


async def test_readyz_reports_a_dead_backend(settings, redis_ns, es_prefix):
    s = isolated_settings(settings, redis_ns, redis_url="redis://127.0.0.1:1/0")
    async with api_client(s) as client:
        r = await client.get("/readyz")
        assert r.status_code == 503 and r.json()["checks"]["redis"] == "down"
        r = await client.get("/v1/subscriptions", headers=auth("yq_x_" + "y" * 43))
        assert r.status_code == 503 and "redis is unavailable" in r.json()["detail"]
