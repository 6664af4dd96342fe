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
                                "positive": 0.7, "model_version": "v1", "model_language": "en",
                                "fallback": None, "truncated": False}
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


def test_templates_are_versioned() -> None:
    from services.stream.es_layout import TEMPLATE_VERSION
    comps = component_templates("yuqing-docs", "yuqing-alerts")
    assert {c["version"] for c in comps.values()} == {TEMPLATE_VERSION}
    assert {t["version"] for t in index_templates("yuqing-docs", "yuqing-alerts").values()} == \
        {TEMPLATE_VERSION}
    mappings = comps["yuqing-docs-mappings"]["template"]["mappings"]
    assert mappings["_meta"] == {"template_version": TEMPLATE_VERSION, "zh_analysis": "bigram"}


def test_chinese_subfields_and_their_analysis() -> None:
    from services.stream.es_layout import ZH_ANALYZER, ZH_SEARCH_ANALYZER
    comps = component_templates("yuqing-docs", "yuqing-alerts")
    tpl = comps["yuqing-docs-mappings"]["template"]
    props = tpl["mappings"]["properties"]
    for f in ("title", "text", "title_sc", "text_sc"):
        assert props[f]["type"] == "text"  # the standard analyzer: English as before
        assert props[f]["fields"]["zh"] == {"type": "text", "analyzer": ZH_ANALYZER,
                                            "search_analyzer": ZH_SEARCH_ANALYZER}
    assert props["title"]["fields"]["keyword"]["type"] == "keyword"
    analysis = tpl["settings"]["analysis"]
    assert set(analysis["analyzer"]) == {ZH_ANALYZER, ZH_SEARCH_ANALYZER}
    bigram = analysis["filter"]["yuqing_zh_bigram"]
    assert (bigram["type"], bigram["min_shingle_size"], bigram["max_shingle_size"],
            bigram["output_unigrams"], bigram["token_separator"]) == ("shingle", 2, 2, False, "")
    # Only components every Elasticsearch has (no analysis-common, no plugin).
    assert analysis["analyzer"][ZH_ANALYZER] == {"type": "custom", "tokenizer": "standard",
                                                 "filter": ["lowercase", "yuqing_zh_bigram"]}


def test_plugin_analysis_modes_change_only_the_analyzers() -> None:
    from services.stream.es_layout import ZH_ANALYZER, ZH_SEARCH_ANALYZER, zh_analysis
    base = component_templates("d", "a")["d-mappings"]["template"]["mappings"]["properties"]
    ik = component_templates("d", "a", zh="ik")["d-mappings"]["template"]
    assert ik["mappings"]["properties"] == base
    assert ik["settings"]["analysis"]["analyzer"][ZH_ANALYZER]["tokenizer"] == "ik_max_word"
    assert ik["settings"]["analysis"]["analyzer"][ZH_SEARCH_ANALYZER]["tokenizer"] == "ik_smart"
    smartcn = zh_analysis("smartcn")["analyzer"]
    assert {a["tokenizer"] for a in smartcn.values()} == {"smartcn_tokenizer"}
    with pytest.raises(ValueError, match="bigram, smartcn, ik"):
        zh_analysis("jieba")


def test_added_fields_fit_an_index_without_the_chinese_analyzer() -> None:
    from services.stream.es_layout import ADDED_FIELDS
    assert set(ADDED_FIELDS) == {"mentions", "entity_sentiment", "negative_for", "title_sc",
                                 "text_sc"}
    assert ADDED_FIELDS["title_sc"] == {"type": "text"}
    assert "yuqing_zh" not in str(ADDED_FIELDS)


def test_traditional_text_gets_a_simplified_fold() -> None:
    from services.stream.es_layout import simplified_folds
    doc = _doc().model_copy(update={"title": "騰訊控股虧損擴大",
                                    "text": "騰訊控股虧損擴大。Tencent loss widens", "lang": "zh"})
    src = doc_to_source(doc)
    assert src["title_sc"] == "腾讯控股亏损扩大"
    assert src["text_sc"] == "腾讯控股亏损扩大。Tencent loss widens"
    assert src["text"] == doc.text  # the document itself is stored as written
    assert set(src) <= set(DOC_PROPERTIES)
    # Nothing to fold: simplified Chinese, English; Japanese kanji are not traditional Chinese.
    assert "text_sc" not in doc_to_source(_doc())
    assert simplified_folds("腾讯控股", "腾讯控股亏损") == {}
    assert simplified_folds(None, "國際", lang="ja") == {}
    assert simplified_folds(None, "國際", lang="zh-Hant") == {"text_sc": "国际"}
