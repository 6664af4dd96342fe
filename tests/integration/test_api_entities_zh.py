"""Trends, alerts and documents looked up by a Chinese name, a short name or any code
spelling, against the real Redis and Elasticsearch."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio

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

MOUTAI = ("贵州茅台", "贵州茅台酒股份有限公司", "茅台", "600519", "600519.SH", "SH600519",
          "sh600519", "600519.SS", "$贵州茅台(600519)$")


@pytest_asyncio.fixture
async def ctx(settings, redis, redis_ns, es, es_prefix):
    s = isolated_settings(settings, redis_ns)
    await install_templates(es, s)
    now = datetime.now(UTC)
    docs = [
        scored("news:sina:1", text="贵州茅台发布业绩预告，净利润同比下滑", label="negative",
               entities=["600519.SH"], negative=0.8, topics=["earnings"],
               published_at=now - timedelta(minutes=20)),
        scored("comment:guba:2", text="$腾讯控股(00700)$ 明天涨停", label="positive",
               entities=["0700.HK"], source="guba", negative=0.05,
               published_at=now - timedelta(minutes=10)),
    ]
    for d in docs:
        await es.index(index=index_for(s.es_index_prefix, d.published_at), id=d.doc_id,
                       document=doc_to_source(d))
    alert = make_alert("600519.SH", topic="earnings", severity="critical")
    await es.index(index=s.es_alerts_index, id=alert.alert_id, document=alert_to_source(alert))
    await es.indices.refresh(index=f"{es_prefix}*")
    await TrendStore(redis, redis_ns, 48 * 3600).record(docs)
    keys = await make_keys(redis, redis_ns)
    async with api_client(s) as client:
        yield client, auth(keys["read"]), alert
    await es.options(ignore_status=404).indices.delete(index=f"{es_prefix}*")
    await es.options(ignore_status=404).indices.delete_index_template(name=f"{es_prefix}*")
    await remove_component_templates(es, s)


async def test_every_name_and_code_spelling_finds_the_same_data(ctx):
    client, h, alert = ctx
    for entity in MOUTAI:
        r = await client.get("/v1/documents", params={"entity": entity}, headers=h)
        assert r.status_code == 200, (entity, r.text)
        assert [d["doc_id"] for d in r.json()["items"]] == ["news:sina:1"], entity
        r = await client.get("/v1/trends/summary", params={"entity": entity}, headers=h)
        assert r.status_code == 200 and r.json()["value"] == "600519.SH", entity
        assert r.json()["windows"]["1h"]["count"] == 1, entity
        r = await client.get("/v1/alerts", params={"entity": entity}, headers=h)
        assert [a["alert_id"] for a in r.json()["items"]] == [alert.alert_id], entity
    r = await client.get("/v1/trends", params={"entity": "茅台", "topic": "earnings"},
                         headers=h)
    assert r.status_code == 200 and r.json()["value"] == "600519.SH|earnings"
    assert r.json()["total"]["labels"]["negative"] == 1
    for entity in ("騰訊控股", "腾讯", "00700.HK", "700", "HK00700", "Tencent"):
        r = await client.get("/v1/documents", params={"entity": entity}, headers=h)
        assert [d["doc_id"] for d in r.json()["items"]] == ["comment:guba:2"], entity


async def test_ambiguous_and_unknown_chinese_entities_are_refused_with_a_reason(ctx):
    client, h, _ = ctx
    for path in ("/v1/documents", "/v1/trends", "/v1/alerts"):
        r = await client.get(path, params={"entity": "平安"}, headers=h)
        assert r.status_code == 400, path
        assert "ambiguous entity '平安'" in r.json()["detail"]
        assert "平安银行 (000001.SZ)" in r.json()["detail"]
        r = await client.get(path, params={"entity": "某某科技"}, headers=h)
        assert r.status_code == 400 and "unknown entity" in r.json()["detail"], path
        r = await client.get(path, params={"entity": "a|b"}, headers=h)
        assert r.status_code == 422, path
