"""Chinese search end to end on the real Elasticsearch: documents written by the real index sink
(template version 2), a daily index left from version 1, and ``GET /v1/documents?q=`` through
the app. The precision cases of docs/search.md are asserted here."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio

from services.api.text_query import simple_clause, text_query
from services.core.errors import BackendRejected
from services.core.schemas import ScoredDoc, Sentiment
from services.index.sink import EsSink
from services.stream.es_layout import (
    ADDED_FIELDS,
    DOC_PROPERTIES,
    TEMPLATE_VERSION,
    doc_to_source,
    index_for,
)
from tests.integration.api_helpers import (
    api_client,
    auth,
    isolated_settings,
    make_keys,
    remove_component_templates,
)

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
LEGACY_DAY = NOW - timedelta(days=3)

# Headlines as ingest stores them: NFKC-normalised (full-width ASCII folded), title + body in
# `text`, traditional characters kept as the source wrote them.
HEADLINES = {
    "news:zh:1": ("zh", "平安银行涉嫌信息披露违规被证监会立案调查", "公司公告称将积极配合监管工作。"),
    "news:zh:2": ("zh", "中国平安发布业绩预告，银行与保险业务净利润同比增长", "寿险新业务价值回升。"),
    "news:zh:3": ("zh", "某地产公司被立案，监管部门随后展开专项检查", "投资者关注后续调查进展。"),
    "news:zh:4": ("zh", "騰訊控股第三季度虧損擴大", "遊戲業務收入下滑，股價承壓。"),
    "news:zh:5": ("zh", "腾讯控股发布新游戏，股价上涨", "分析师上调目标价。"),
    "news:zh:6": ("zh", "招商银行零售贷款逾期率上升", "资产质量承压。"),
    "news:mix:7": ("zh", "苹果公司iPhone销量下滑", "Apple shares fall in Hong Kong trading."),
    "news:en:8": ("en", "Apple recall widens after battery fires", "The recall covers 2 million units."),
    "news:en:9": ("en", "Ping An Bank shares fall on probe", "Regulators opened an investigation."),
}
# Written into a daily index made before template version 2 (no *.zh subfields).
LEGACY = {
    "news:old:1": ("zh", "平安银行因违规被立案调查", "旧索引里的文档。"),
    "news:old:2": ("zh", "中国平安子公司立案后接受调查", "旧索引里的文档。"),
}


def _doc(doc_id: str, lang: str, title: str, body: str, when: datetime) -> ScoredDoc:
    kind, source, sid = doc_id.split(":")
    return ScoredDoc(doc_id=doc_id, kind=kind, source=source, source_id=sid, title=title,
                     text=f"{title}。{body}" if lang == "zh" else f"{title}. {body}",
                     lang=lang, published_at=when, ingested_at=when, classified_at=when,
                     sentiment=Sentiment(label="negative", model_version="t1",
                                         probabilities={"negative": 0.8, "neutral": 0.1,
                                                        "positive": 0.1}))


def _v1_properties() -> dict:
    """The document mapping of template version 1 (before Chinese search)."""
    props = {k: v for k, v in DOC_PROPERTIES.items() if k not in ADDED_FIELDS}
    props["title"] = {"type": "text",
                      "fields": {"keyword": {"type": "keyword", "ignore_above": 512}}}
    props["text"] = {"type": "text"}
    return props


@pytest_asyncio.fixture
async def zh(settings, redis, redis_ns, es, es_prefix):
    s = isolated_settings(settings, redis_ns)
    alias = s.es_index_prefix
    # A daily index left by version 1: made (with the alias) before the new templates.
    legacy = index_for(alias, LEGACY_DAY)
    await es.indices.create(index=legacy, aliases={alias: {}},
                            mappings={"dynamic": False, "properties": _v1_properties()})
    sink = EsSink(es, alias, alerts_index=s.es_alerts_index, refresh="wait_for")
    await sink.ensure_templates()  # v2 templates; the plain new fields added to `legacy`
    res = await sink.write([_doc(i, *v, NOW - timedelta(minutes=n))
                            for n, (i, v) in enumerate(HEADLINES.items())])
    assert (res.indexed, res.failures) == (len(HEADLINES), [])
    for i, v in LEGACY.items():
        await es.index(index=legacy, id=i, document=doc_to_source(_doc(i, *v, LEGACY_DAY)))
    await es.indices.refresh(index=f"{es_prefix}*")
    keys = await make_keys(redis, redis_ns)
    async with api_client(s) as client:
        yield client, auth(keys["read"]), s, legacy
    await es.options(ignore_status=404).indices.delete(index=f"{es_prefix}*")
    await es.options(ignore_status=404).indices.delete_index_template(name=f"{es_prefix}*")
    await remove_component_templates(es, s)


async def _ids(client, h, **params) -> list[str]:
    r = await client.get("/v1/documents", params={"limit": 50, **params}, headers=h)
    assert r.status_code == 200, r.text
    return sorted(d["doc_id"] for d in r.json()["items"])


async def test_template_v2_indexes_bigrams_and_folds(zh, es):
    _, _, s, legacy = zh
    new = index_for(s.es_index_prefix, NOW)
    got = await es.indices.get(index=new)
    props = got[new]["mappings"]["properties"]
    assert props["text"]["fields"]["zh"]["analyzer"] == "yuqing_zh"
    assert props["title"]["fields"]["zh"]["search_analyzer"] == "yuqing_zh_search"
    assert got[new]["mappings"]["_meta"]["template_version"] == TEMPLATE_VERSION
    tokens = await es.indices.analyze(index=new, analyzer="yuqing_zh", text="平安银行")
    assert [t["token"] for t in tokens["tokens"]] == ["平安", "安银", "银行"]
    # The traditional headline keeps its spelling in text, its simplified fold in text_sc.
    src = (await es.get(index=new, id="news:zh:4"))["_source"]
    assert src["text"].startswith("騰訊控股") and src["text_sc"].startswith("腾讯控股")
    assert "text_sc" not in (await es.get(index=new, id="news:zh:5"))["_source"]
    # The version-1 index got the plain folds, not the subfields it has no analyzer for.
    old = (await es.indices.get_mapping(index=legacy))[legacy]["mappings"]["properties"]
    assert old["text_sc"] == {"type": "text"} and "fields" not in old["text"]


async def test_chinese_precision(zh):
    client, h, _, _ = zh
    # A phrase, not its characters: 立案 and 调查 apart (zh:3, old:2) do not match.
    assert await _ids(client, h, q="立案调查") == ["news:old:1", "news:zh:1"]
    # 平安银行 is not 中国平安 (zh:2 has 平安 and 银行 apart), and the other way round.
    assert await _ids(client, h, q="平安银行") == ["news:old:1", "news:zh:1"]
    assert await _ids(client, h, q="中国平安") == ["news:old:2", "news:zh:2"]
    # Several terms: all of them, each a phrase.
    assert await _ids(client, h, q="平安银行 立案调查") == ["news:old:1", "news:zh:1"]
    assert await _ids(client, h, q="平安银行 增长") == []
    # Any of (|), and not (-).
    assert await _ids(client, h, q="平安银行|招商银行") == ["news:old:1", "news:zh:1",
                                                          "news:zh:6"]
    assert await _ids(client, h, q="腾讯 -亏损") == ["news:zh:5"]
    # One character: no bigram, matched on the per-character field.
    assert await _ids(client, h, q="涨") == ["news:zh:5"]


async def test_traditional_and_full_width_fold(zh):
    client, h, _, _ = zh
    # A simplified query finds the traditional headline (through text_sc), a traditional
    # query the simplified one (the query is folded).
    assert await _ids(client, h, q="腾讯") == ["news:zh:4", "news:zh:5"]
    assert await _ids(client, h, q="騰訊") == ["news:zh:4", "news:zh:5"]
    assert await _ids(client, h, q="腾讯 亏损") == ["news:zh:4"]
    assert await _ids(client, h, q="ｉＰｈｏｎｅ销量") == ["news:mix:7"]


async def test_mixed_chinese_english_and_lang_filter(zh):
    client, h, _, _ = zh
    assert await _ids(client, h, q="iPhone销量") == ["news:mix:7"]
    assert await _ids(client, h, q="Apple 销量") == ["news:mix:7"]
    assert await _ids(client, h, q="苹果 shares") == ["news:mix:7"]
    assert await _ids(client, h, q="苹果 recall") == []
    assert await _ids(client, h, q="立案调查", lang="zh") == ["news:old:1", "news:zh:1"]
    assert await _ids(client, h, q="立案调查", lang="en") == []
    assert await _ids(client, h, lang="en") == ["news:en:8", "news:en:9"]


async def test_english_as_before(zh, es):
    client, h, s, _ = zh
    assert await _ids(client, h, q="recall") == ["news:en:8"]
    assert await _ids(client, h, q="Apple") == ["news:en:8", "news:mix:7"]
    assert await _ids(client, h, q='"shares fall" -Apple') == ["news:en:9"]
    for q in ("recall", "Apple", "shares fall", '"shares fall" -Apple', "bank | apple"):
        assert text_query(q).query == simple_clause(q)
        old = await es.search(index=s.es_index_prefix, size=50, query={
            "simple_query_string": {"query": q, "fields": ["title^2", "text"],
                                    "default_operator": "and"}})
        assert await _ids(client, h, q=q) == sorted(x["_id"] for x in old["hits"]["hits"]), q


async def test_highlight_and_relevance(zh):
    client, h, _, _ = zh
    r = await client.get("/v1/documents", params={"q": "立案调查", "sort": "relevance"},
                         headers=h)
    assert r.status_code == 200, r.text
    items = {d["doc_id"]: d for d in r.json()["items"]}
    assert "<em>立案调查</em>" in "".join(items["news:zh:1"]["highlight"]["text"])
    assert all(d["score"] > 0 for d in items.values())
    r = await client.get("/v1/documents", params={"q": "recall"}, headers=h)
    assert "<em>recall</em>" in "".join(r.json()["items"][0]["highlight"]["text"])


async def test_a_segmenter_without_its_plugin_is_refused_with_what_to_do(es, es_prefix):
    # This Elasticsearch has no analysis-ik: the template is refused and the sink says why.
    sink = EsSink(es, f"{es_prefix}-ik-docs", alerts_index=f"{es_prefix}-ik-alerts",
                  zh_analysis="ik")
    try:
        with pytest.raises(BackendRejected, match=r"ik_max_word.*YUQING_ES_ZH_ANALYSIS=ik"):
            await sink.ensure_templates()
    finally:
        await es.options(ignore_status=404).indices.delete_index_template(name=f"{es_prefix}*")
        await es.options(ignore_status=404).cluster.delete_component_template(
            name=f"{es_prefix}*")
