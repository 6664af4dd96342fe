"""Per-language routing as pure functions: which model scores a document, the groups a
micro-batch splits into, the stamps a scored document carries, and the settings."""
from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from models.routing import (
    NO_MODEL,
    fallback_reason,
    group_by_model,
    model_language,
    no_model_reason,
)
from services.classify.agent import doc_languages, score_batch_records
from services.classify.router import text_languages
from services.classify.scorer import Scored, ScoreError
from services.core.config import Settings, load_settings
from services.core.errors import ConfigError
from services.core.schemas import CleanDoc, DeadLetter, ScoredDoc

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def test_a_language_goes_to_its_own_model_else_the_fallback_else_none() -> None:
    assert model_language("zh", {"en", "zh"}, "en") == "zh"
    assert model_language("ja", {"en", "zh"}, "en") == "en"
    assert model_language("ja", {"en", "zh"}, None) is None
    assert model_language("zh", {"en"}, "en") == "en"  # configured, no model yet: fallback
    assert model_language("ja", {"zh"}, "en") is None  # the fallback's model is absent too


def test_groups_keep_input_order_and_first_seen_key_order() -> None:
    langs = ["en", "zh", "en", "ja", "und", "zh", "ko"]
    assert group_by_model(langs, ("en", "zh"), "en") == {"en": [0, 2, 3, 4, 6], "zh": [1, 5]}
    assert group_by_model(langs, ("en", "zh"), None) == {
        "en": [0, 2], "zh": [1, 5], None: [3, 4, 6]}
    assert list(group_by_model(["zh", "en"], ("en", "zh"), "en")) == ["zh", "en"]
    assert group_by_model(["en"] * 3, ("en",), "en") == {"en": [0, 1, 2]}  # one group
    assert group_by_model([], ("en",), "en") == {}


def test_reasons_say_what_happened_and_what_to_do() -> None:
    assert fallback_reason("zh", "zh") is None
    assert fallback_reason("ja", "en") == "no model for language ja: scored by the en model"
    none = no_model_reason("ja", None)
    assert "no model for language ja" in none and "YUQING_LANGUAGE_FALLBACK" in none
    assert "\n" not in none
    assert "make model" in no_model_reason("zh", "en")


def _doc(text: str, lang: str, **kw) -> CleanDoc:
    return CleanDoc(doc_id=f"news:t:{abs(hash(text))}", kind="news", source="t",
                    source_id="1", text=text, lang=lang, published_at=NOW, ingested_at=NOW,
                    **kw)


def test_documents_are_routed_by_their_tag_else_their_script() -> None:
    docs = [_doc("Acme beats", "en-US"), _doc("腾讯控股业绩大增", "zh-Hant-HK"),
            _doc("腾讯控股业绩大增", "???"), _doc("トヨタの株価が上昇", ""),
            _doc("Acme beats", "zh_CN"), _doc("12345 !!!", "x")]
    assert doc_languages(docs) == ["en", "zh", "zh", "ja", "zh", "und"]
    assert text_languages(["Acme", "腾讯控股 Q3 revenue 增长", None, ""]) == [
        "en", "zh", "und", "und"]


def _event(i: int) -> SimpleNamespace:
    return SimpleNamespace(message=SimpleNamespace(value=b'{"x": 1}', key=b"k", topic="clean",
                                                   partition=0, offset=i))


def test_scored_documents_are_stamped_and_unserved_ones_dead_lettered() -> None:
    s = Settings()
    docs = [_doc("腾讯控股业绩大增", "zh-CN", entities=["0700.HK"]),
            _doc("Acme beats", "en"), _doc("トヨタの株価が上昇", "ja"),
            _doc("サムスン", "ja")]
    probs = {"negative": 0.1, "neutral": 0.2, "positive": 0.7}
    results = [Scored("positive", probs, "zh-1", model_language="zh"),
               Scored("positive", probs, "en-1"),
               Scored("positive", probs, "en-1", model_language="en"),
               ScoreError(NO_MODEL, no_model_reason("ja", None))]
    events = [_event(i) for i in range(5)]
    records = score_batch_records(s, events, [docs[0], docs[1], None, docs[2], docs[3]],
                                  results, [[], [], [], []])
    scored = [ScoredDoc.model_validate_json(v) for t, _, v in records
              if t == s.topic_docs_scored]
    assert [(d.lang, d.sentiment.model_language, d.sentiment.model_version,
             d.sentiment.fallback) for d in scored] == [
        ("zh", "zh", "zh-1", None), ("en", "en", "en-1", None),
        ("ja", "en", "en-1", "no model for language ja: scored by the en model")]
    assert scored[0].entity_sentiment[0].entity == "0700.HK"
    (dead,) = [DeadLetter.model_validate_json(v) for t, _, v in records if t == s.topic_dlq]
    assert dead.reason == "no_model" and "no model for language ja" in dead.error
    assert dead.origin.offset == 4 and dead.stage == "classify"


def test_older_scored_messages_still_parse() -> None:
    old = ScoredDoc(**_doc("Acme beats", "en").model_dump(), classified_at=NOW,
                    sentiment={"label": "neutral", "probabilities": {}, "model_version": "v1"})
    assert old.sentiment.model_language == "en" and old.sentiment.fallback is None


def test_language_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings()
    assert s.language_list == ("en", "zh") and s.fallback_language == "en"
    s = Settings(languages=" ZH, en,zh ", language_fallback="NONE")
    assert s.languages == "zh,en" and s.language_list == ("zh", "en")
    assert s.fallback_language is None
    monkeypatch.setenv("YUQING_LANGUAGES", "en,zh")
    monkeypatch.setenv("YUQING_LANGUAGE_FALLBACK", "ja")
    with pytest.raises(ConfigError, match=r"YUQING_LANGUAGE_FALLBACK=ja is not one of "
                                          r"YUQING_LANGUAGES \(en,zh\)") as e:
        load_settings()
    assert "\n" not in str(e.value)
    monkeypatch.setenv("YUQING_LANGUAGES", "en,chinese")
    monkeypatch.setenv("YUQING_LANGUAGE_FALLBACK", "en")
    with pytest.raises(ConfigError, match="YUQING_LANGUAGES.*not a code: chinese"):
        load_settings()
    monkeypatch.setenv("YUQING_LANGUAGES", " , ")
    with pytest.raises(ConfigError, match="YUQING_LANGUAGES"):
        load_settings()
