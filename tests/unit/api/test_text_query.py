"""The documents search's text query builder (pure): English unchanged, Chinese as phrases."""
from __future__ import annotations

import pytest

from services.api.text_query import (
    CHAR_FIELDS,
    ZH_FIELDS,
    fold_query,
    has_cjk,
    legacy_from_field_caps,
    simple_clause,
    split_terms,
    text_query,
)


def phrase(term: str, fields: list[str] = ZH_FIELDS) -> dict:
    return {"multi_match": {"query": term, "type": "phrase", "fields": fields}}


def test_english_query_is_the_old_simple_query_string() -> None:
    for q in ("recall", '"profit warning" -guidance', "apple | msft", "ＡＢＣ"):
        tq = text_query(q)
        assert not tq.cjk
        assert tq.query == {"simple_query_string": {"query": q, "fields": ["title^2", "text"],
                                                    "default_operator": "and"}}
        assert tq.highlight == {"fields": {"text": {}, "title": {}}}


def test_one_chinese_term_is_a_phrase_on_the_bigram_fields() -> None:
    tq = text_query("立案调查")
    assert tq.cjk and tq.terms == ["立案调查"]
    assert tq.query == phrase("立案调查")
    assert tq.highlight["fields"]["text"]["matched_fields"] == ["text", "text.zh"]


def test_every_term_is_required_each_as_a_phrase() -> None:
    tq = text_query("平安银行  立案调查")
    assert tq.query == {"bool": {"must": [phrase("平安银行"), phrase("立案调查")],
                                 "must_not": []}}


def test_query_is_folded_like_the_index() -> None:
    assert fold_query("騰訊　虧損") == "腾讯 亏损"  # ideographic space too
    assert fold_query("ｉＰｈｏｎｅ销量，") == "iPhone销量,"
    assert text_query("騰訊控股").query == phrase("腾讯控股")


def test_mixed_terms_keep_english_syntax_in_one_clause() -> None:
    tq = text_query('腾讯 "profit warning" -guidance')
    assert tq.query == {"bool": {"must": [simple_clause('"profit warning" -guidance'),
                                          phrase("腾讯")], "must_not": []}}
    # Han and Latin in one term: one phrase (the standard tokenizer splits them anyway).
    assert text_query("iPhone销量").query == phrase("iPhone销量")


def test_negation_and_alternatives() -> None:
    assert text_query("茅台 -减持").query == {"bool": {"must": [phrase("茅台")],
                                                      "must_not": [phrase("减持")]}}
    assert text_query('-"立案调查"').query == {"bool": {"must": [],
                                                      "must_not": [phrase("立案调查")]}}
    anyof = {"bool": {"should": [phrase("平安银行"), phrase("招商银行")],
                      "minimum_should_match": 1}}
    assert text_query("平安银行|招商银行").query == anyof
    assert text_query("平安银行 | 招商银行").query == anyof
    assert text_query("腾讯|Tencent").query == {"bool": {
        "should": [phrase("腾讯"), simple_clause("Tencent")], "minimum_should_match": 1}}


def test_operators_inside_chinese_terms_are_dropped() -> None:
    assert text_query("+立案调查~2").query == phrase("立案调查")
    assert text_query("立案*").query == phrase("立案")
    assert text_query('"平安').query == phrase("平安")


def test_single_characters_katakana_and_hangul_use_the_per_character_fields() -> None:
    assert text_query("涨").query == phrase("涨", CHAR_FIELDS)
    assert text_query("涨！").query == phrase("涨!", CHAR_FIELDS)
    assert text_query("トヨタ").query == phrase("トヨタ", CHAR_FIELDS)
    assert text_query("삼성전자").query == phrase("삼성전자", CHAR_FIELDS)
    # One character with a letter is two tokens: a bigram (a股).
    assert text_query("A股").query == phrase("A股")


def test_legacy_indices_are_searched_on_the_per_character_fields() -> None:
    q = text_query("立案调查", legacy=["docs-2026.11.01", "docs-2026.11.02"]).query
    assert q == {"bool": {"should": [
        phrase("立案调查"),
        {"bool": {"filter": [{"terms": {"_index": ["docs-2026.11.01", "docs-2026.11.02"]}}],
                  "must": [phrase("立案调查", CHAR_FIELDS)]}}], "minimum_should_match": 1}}
    # Already per character: no second branch.
    assert text_query("涨", legacy=["docs-2026.11.01"]).query == phrase("涨", CHAR_FIELDS)


@pytest.mark.parametrize("mode", ["smartcn", "ik"])
def test_segmenting_modes_match_all_words(mode: str) -> None:
    assert text_query("平安银行立案调查", mode=mode).query == {"multi_match": {
        "query": "平安银行立案调查", "type": "best_fields", "operator": "and",
        "fields": ZH_FIELDS}}


def test_split_terms() -> None:
    assert [(t.text, t.negated) for t in split_terms('a -b "c d" -"e f" -')] == [
        ("a", False), ("b", True), ("c d", False), ("e f", True), ("-", False)]
    assert has_cjk("A股") and has_cjk("トヨタ") and has_cjk("ﾄﾖﾀ") and not has_cjk("Apple, 100%")


def test_legacy_from_field_caps_shapes() -> None:
    mixed = {"indices": ["d-1", "d-2", "d-3"], "fields": {"text.zh": {
        "text": {"type": "text", "indices": ["d-3"]},
        "unmapped": {"type": "unmapped", "indices": ["d-2", "d-1"]}}}}
    assert legacy_from_field_caps(mixed) == ["d-1", "d-2"]
    everywhere = {"indices": ["d-3"], "fields": {"text.zh": {"text": {"type": "text"}}}}
    assert legacy_from_field_caps(everywhere) == []
    assert legacy_from_field_caps({"indices": ["d-2", "d-1"], "fields": {}}) == ["d-1", "d-2"]
    only_unmapped = {"indices": ["d-1"], "fields": {"text.zh": {"unmapped": {"type": "unmapped"}}}}
    assert legacy_from_field_caps(only_unmapped) == ["d-1"]
    assert legacy_from_field_caps({"indices": [], "fields": {}}) == []
