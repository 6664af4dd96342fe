from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from services.core.schemas import Alert, ScoredDoc, Sentiment
from services.stream.es_layout import (
    ALERT_PROPERTIES,
    DOC_PROPERTIES,
    alert_to_source,
    check_prefix,
    component_templates,
    doc_to_source,
    index_date,
    index_for,
    index_templates,
)

T = datetime(2026, 11, 29, 23, 30, tzinfo=UTC)


def _doc() -> ScoredDoc:
    return ScoredDoc(doc_id="news:s:1", kind="news", source="s", source_id="1", title="Apple",
                     text="Apple beats", published_at=T, ingested_at=T, entities=["AAPL"],
                     topics=["earnings"], classified_at=T,
                     sentiment=Sentiment(label="positive", model_version="v1",
                                         probabilities={"negative": 0.1, "neutral": 0.2,
                                                        "positive": 0.7}))


def test_daily_index_name_uses_utc_date() -> None:
    assert index_for("yuqing-docs", T) == "yuqing-docs-2026.11.29"
    # 07:30 on the 30th in Shanghai is still the 29th in UTC.
    assert index_for("yuqing-docs", T.astimezone(timezone(timedelta(hours=8)))) == \
        "yuqing-docs-2026.11.29"
    assert index_date("yuqing-docs", "yuqing-docs-2026.11.29") == date(2026, 11, 29)
    assert index_date("yuqing-docs", "yuqing-docs-x-2026.11.29") is None
    assert index_date("yuqing-docs", "yuqing-docs-2026.13.40") is None
    assert index_date("yuqing-docs", "yuqing-docs") is None


def test_prefix_validation() -> None:
    assert check_prefix("test-abc") == "test-abc"
    for bad in ("Upper", "-x", "a b", "a*", ""):
        with pytest.raises(ValueError):
            check_prefix(bad)


def test_source_is_flat_and_fully_mapped() -> None:
    src = doc_to_source(_doc())
    assert src["sentiment"] == {"label": "positive", "negative": 0.1, "neutral": 0.2,
                                "positive": 0.7, "model_version": "v1", "truncated": False}
    assert src["published_at"].startswith("2026-11-29T23:30:00")
    assert src["entities"] == ["AAPL"]
    # Every field yuqing writes has an explicit mapping.
    assert set(src) <= set(DOC_PROPERTIES)
    assert set(src["sentiment"]) == set(DOC_PROPERTIES["sentiment"]["properties"])


def test_non_finite_probabilities_become_null() -> None:
    doc = _doc()
    doc.sentiment.probabilities["negative"] = float("nan")
    src = doc_to_source(doc)
    assert src["sentiment"]["negative"] is None
    assert src["sentiment"]["positive"] == 0.7


def test_alert_source_is_fully_mapped() -> None:
    a = Alert(alert_id="a1", entity="AAPL", severity="warning", window_start=T, window_end=T,
              negative_count=5, total_count=8, negative_share=0.6, baseline_mean=1.0,
              baseline_std=0.5, score=4.2, detector="zscore", created_at=T)
    assert set(alert_to_source(a)) <= set(ALERT_PROPERTIES)


def test_templates_compose_and_alias() -> None:
    comps = component_templates("yuqing-docs", "yuqing-alerts")
    idx = index_templates("yuqing-docs", "yuqing-alerts")
    docs = idx["yuqing-docs"]
    assert docs["index_patterns"] == ["yuqing-docs-*"]
    assert docs["template"]["aliases"] == {"yuqing-docs": {}}
    assert set(docs["composed_of"]) <= set(comps)
    assert set(idx["yuqing-alerts"]["composed_of"]) <= set(comps)
    assert idx["yuqing-alerts"]["priority"] > docs["priority"]
    mappings = comps["yuqing-docs-mappings"]["template"]["mappings"]
    assert mappings["dynamic"] is False
    props = mappings["properties"]
    assert props["entities"]["type"] == "keyword"
    assert props["title"]["fields"]["keyword"]["type"] == "keyword"
    assert props["sentiment"]["properties"]["negative"]["type"] == "float"
    assert {props[f]["type"] for f in ("published_at", "ingested_at", "classified_at")} == {"date"}
