"""The per-series rule "is this document negative for series S": an entity's own label for its
entity series (trends and alerts), the document's label for '*', kind and topic series."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from services.alerts.detector import Series, _evidence_json, _negative
from services.core.schemas import EntitySentiment, ScoredDoc, Sentiment
from services.stream.es_layout import DOC_PROPERTIES, doc_to_source
from services.trends.windows import (
    ALL,
    DIM_ALL,
    DIM_ENTITY,
    DIM_ENTITY_TOPIC,
    DIM_KIND,
    DIM_TOPIC,
    dims_of,
    series_sentiment,
)

T = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
NEG = {"negative": 0.8, "neutral": 0.15, "positive": 0.05}
NEU = {"negative": 0.1, "neutral": 0.8, "positive": 0.1}


def sues(**over) -> ScoredDoc:
    """"Bank A sues Company B": the document reads negative, and so it is for B, not for A."""
    values = dict(
        doc_id="news:w:1", kind="news", source="w", source_id="1", title="JPMorgan sues Tesla",
        text="JPMorgan sues Tesla", published_at=T, ingested_at=T, classified_at=T,
        entities=["JPM", "TSLA", "GS"], topics=["legal"],
        sentiment=Sentiment(label="negative", probabilities=NEG, model_version="v1"),
        entity_sentiment=[
            EntitySentiment(entity="JPM", label="neutral", probabilities=NEU, source="entity"),
            EntitySentiment(entity="TSLA", label="negative", probabilities=NEG,
                            source="entity"),
            EntitySentiment(entity="GS", label="negative", probabilities=NEG,
                            source="document")])
    values.update(over)
    return ScoredDoc(**values)


def test_trend_series_count_an_entitys_own_label() -> None:
    doc = sues()
    got = {(d, v): series_sentiment(doc, d, v)[0] for d, v in dims_of(doc)}
    assert got[(DIM_ENTITY, "JPM")] == "neutral"
    assert got[(DIM_ENTITY, "TSLA")] == "negative"
    assert got[(DIM_ENTITY_TOPIC, "JPM|legal")] == "neutral"
    assert got[(DIM_ENTITY_TOPIC, "TSLA|legal")] == "negative"
    # document-level series keep the document's label
    assert got[(DIM_ALL, ALL)] == got[(DIM_KIND, "news")] == got[(DIM_TOPIC, "legal")] \
        == "negative"
    assert series_sentiment(doc, DIM_ENTITY, "JPM")[1] == NEU


def test_alert_series_negatives_and_evidence_follow_the_entity() -> None:
    doc = sues()
    assert not _negative(doc, Series("JPM", "*"))
    assert _negative(doc, Series("TSLA", "*"))
    assert _negative(doc, Series("*", "legal"))  # topic series: the document's label
    ev = json.loads(_evidence_json(doc, Series("TSLA", "*")).split("|", 1)[1])
    assert ev["negative"] == 0.8


def test_documents_without_entity_sentiment_count_as_before() -> None:
    old = sues(entity_sentiment=[])  # scored before this field existed
    for e in old.entities:
        assert series_sentiment(old, DIM_ENTITY, e) == ("negative", NEG)
        assert _negative(old, Series(e, "*"))
    assert old.entity_label("NOPE") == "negative"


def test_scored_doc_round_trip_with_and_without_entity_sentiment() -> None:
    doc = sues()
    assert ScoredDoc.model_validate_json(doc.model_dump_json()) == doc
    raw = json.loads(doc.model_dump_json())
    del raw["entity_sentiment"], raw["mentions"]
    old = ScoredDoc.model_validate(raw)
    assert old.entity_sentiment == [] and old.mentions == []
    assert old.entity_label("TSLA") == "negative"


def test_es_source_maps_entity_sentiment_and_negative_for() -> None:
    src = doc_to_source(sues())
    assert src["negative_for"] == ["TSLA", "GS"]
    assert [(x["entity"], x["label"], x["source"]) for x in src["entity_sentiment"]] == [
        ("JPM", "neutral", "entity"), ("TSLA", "negative", "entity"),
        ("GS", "negative", "document")]
    assert src["entity_sentiment"][1]["negative"] == 0.8
    assert set(src) <= set(DOC_PROPERTIES)
    nested = DOC_PROPERTIES["entity_sentiment"]
    assert nested["type"] == "nested"
    assert set(src["entity_sentiment"][0]) == set(nested["properties"])
    # an old document: every entity takes the document's sentiment, source "document"
    old = doc_to_source(sues(entity_sentiment=[]))
    assert old["negative_for"] == ["JPM", "TSLA", "GS"]
    assert {x["source"] for x in old["entity_sentiment"]} == {"document"}


def test_backtest_reads_an_entitys_negatives_from_its_own_label() -> None:
    from services.alerts import backtest as bt

    body = bt.composite_body("entities", T, T + timedelta(hours=1), 300, [], None)
    aggs = body["aggs"]["series"]["aggs"]
    assert aggs["negfor"]["terms"]["field"] == "negative_for"
    assert "must_not" in aggs["neg"]["filter"]["bool"]  # legacy docs: the document label
    topics = bt.composite_body("topics", T, T + timedelta(hours=1), 300, [], None)
    assert topics["aggs"]["series"]["aggs"]["neg"] == {
        "filter": {"term": {"sentiment.label": "negative"}}}

    def bucket(entity: str, tot: int, legacy: int, negfor: dict[str, int]) -> dict:
        return {"key": {"s": entity, "w": 10 * 300 * 1000}, "doc_count": tot,
                "neg": {"doc_count": legacy},
                "negfor": {"buckets": [{"key": k, "doc_count": c} for k, c in negfor.items()]},
                "mv": {"buckets": []}}

    page = {"aggregations": {"series": {"after_key": None, "buckets": [
        bucket("JPM", 6, 0, {"TSLA": 6}), bucket("TSLA", 6, 1, {"TSLA": 5})]}}}
    data: dict = {}
    bt.read_page(data, "entities", page, 300, set())
    assert data[bt.Series("JPM", "*")].counts == {10: 0}
    assert data[bt.Series("TSLA", "*")].counts == {10: 6}
