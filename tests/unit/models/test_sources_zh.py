"""The Chinese sources: stable hash splits and the longest-mention rule for entities."""
from models.finetune.sources_zh import (
    NewsDoc,
    entity_examples,
    news_examples,
    split_of,
    uncovered_spans,
)


def test_split_is_stable_and_roughly_sized():
    keys = [f"帖子{i}" for i in range(4000)]
    splits = [split_of(k) for k in keys]
    assert splits == [split_of(k) for k in keys]
    assert 0.12 < splits.count("test") / 4000 < 0.18
    assert 0.07 < splits.count("dev") / 4000 < 0.13
    # the split follows the normalised text: a traditional spelling lands with its simplified one
    assert split_of("騰訊業績") == split_of("腾讯业绩")


def test_a_mention_inside_a_longer_listed_entity_is_the_longer_ones():
    text = "众车在线平台逾期，众车在线回应称正常运营"
    assert uncovered_spans(text, "众车", ("众车", "众车在线")) == []
    assert uncovered_spans(text, "众车在线", ("众车", "众车在线")) == [(0, 4), (9, 13)]
    text2 = "众车在线逾期；另一家众车也被点名"
    assert uncovered_spans(text2, "众车", ("众车", "众车在线")) == [(10, 12)]
    text3 = "乙公司逾期，众车在线回应；乙公司否认"
    assert uncovered_spans(text3, "乙公司", ("乙公司", "众车在线")) == [(0, 3), (13, 16)]


def test_entity_rows_carry_every_uncovered_mention():
    doc = NewsDoc("乙公司逾期。甲公司起诉乙公司", ("甲公司", "乙公司"), frozenset({"乙公司"}), True, 0)
    rows, _ = entity_examples([doc])
    by = {r.entity: r for r in rows}
    assert by["乙公司"].spans == [(0, 3), (11, 14)]
    assert by["甲公司"].spans == [(6, 9)] and by["甲公司"].more_spans == ()


def test_entity_rows_label_only_the_key_entities_negative():
    docs = [NewsDoc("甲公司起诉乙公司，乙公司资金链断裂", ("甲公司", "乙公司"),
                    frozenset({"乙公司"}), True, 0),
            NewsDoc("丙公司发布新品", ("丙公司", "丁公司"), frozenset(), False, 1)]
    rows, missing = entity_examples(docs)
    got = {(r.doc, r.entity): r.label for r in rows}
    assert got == {(0, "甲公司"): "neutral", (0, "乙公司"): "negative", (1, "丙公司"): "neutral"}
    assert missing == 1  # 丁公司 is listed but never mentioned
    assert [e.label for e in news_examples(docs)] == ["negative", "neutral"]
    assert [e.source for e in news_examples(docs)] == ["finnsp", "finnsp_other"]
