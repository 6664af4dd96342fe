"""Chinese normalisation and language detection: what training and serving both rely on."""
import pytest

from models.lang import canonical_language, detect_language, document_language
from models.normalizers import normalizer_for
from models.text import normalize_text
from models.text_zh import normalize_zh, to_simplified, truncate_sentences


def test_traditional_folds_to_simplified():
    assert to_simplified("騰訊控股公佈業績") == "腾讯控股公布业绩"
    assert normalize_zh("匯豐控股虧損擴大") == "汇丰控股亏损扩大"


def test_full_width_forms_fold_like_english():
    assert normalize_zh("ＡＢＣ１２３，利润增长！") == "ABC123,利润增长!"


def test_forum_noise():
    assert normalize_zh("回复@股神888:明天涨停") == "明天涨停"
    assert normalize_zh("转发 //@财经网: 某公司被立案调查") == "转发某公司被立案调查"
    assert normalize_zh("$贵州茅台(SH600519)$ 业绩超预期") == "贵州茅台业绩超预期"
    assert normalize_zh("#A股# 大涨") == "A股大涨"
    assert normalize_zh("跌停了！！！！！！😭😭😭😭") == "跌停了!!😭😭"


def test_spaces_between_han_characters_go_but_latin_words_stay_apart():
    assert normalize_zh("平安 银行 发布 公告") == "平安银行发布公告"
    assert normalize_zh("腾讯 Q3 revenue 增长") == "腾讯 Q3 revenue 增长"


def test_normalize_zh_is_idempotent():
    for t in ["騰訊控股公佈業績，虧損擴大！！！！", "回复@a:$茅台(600519)$ 好", "ABC , 你好"]:
        once = normalize_zh(t)
        assert normalize_zh(once) == once


def test_english_normaliser_is_unchanged():
    assert normalizer_for("en") is normalize_text
    assert normalizer_for("zh") is normalize_zh


def test_truncate_sentences_cuts_at_a_sentence_end_in_the_budget():
    s = "公司发布公告。" + "控股股东减持股份" * 3 + "。后续还有很多内容"
    cut = truncate_sentences(s, 36)
    assert cut == "公司发布公告。" + "控股股东减持股份" * 3 + "。"
    assert truncate_sentences("短句。", 40) == "短句。"
    assert truncate_sentences("一" * 50, 10) == "一" * 10  # no sentence end: hard cut


@pytest.mark.parametrize("text,lang", [
    ("贵州茅台发布年报", "zh"), ("腾讯控股 Q3 revenue 增长", "zh"),
    ("Tencent (腾讯) beats estimates", "en"), ("トヨタ自動車の決算発表", "ja"),
    ("삼성전자 실적 발표", "ko"), ("Kweichow Moutai (贵州茅台) shares fell 3%", "en"),
    ("日銀、金融政策を維持", "ja"), ("优衣库(ユニクロ)母公司迅销集团业绩大涨", "zh"),
    ("Газпром увеличил прибыль", "ru"), ("12345 !!!", "und"),
    ("", "und")])
def test_detect_language_by_dominant_script(text, lang):
    assert detect_language(text) == lang


def test_tags_fold_to_the_primary_subtag_and_win_over_the_script():
    assert canonical_language("zh-Hant-HK") == "zh"
    assert canonical_language("EN_us") == "en"
    assert canonical_language("yue") == "zh"
    assert canonical_language("not a tag!") is None
    assert document_language("en", "贵州茅台发布年报") == "en"
    assert document_language(None, "贵州茅台发布年报") == "zh"
    assert document_language("x!", "Apple beats") == "en"


def test_entity_spans_survive_the_chinese_normaliser():
    from models.sentiment.entities import map_spans

    text = "茅台 和 騰訊控股 Q3 results"
    norm, spans = map_spans(text, [(5, 9), (0, 2)], normalize=normalize_zh)
    assert [norm[a:b] for a, b in spans] == ["腾讯控股", "茅台"]
    norm, spans = map_spans("Hello   Apple  beats", [(8, 13)])
    assert norm[spans[0][0]:spans[0][1]] == "Apple"


@pytest.mark.parametrize("text,mention", [
    ("#贵州茅台# 业绩大涨", "贵州茅台"), ("$特斯拉 $贵州茅台(600519)$ 大跌", "$贵州茅台(600519)$"),
    ("回复@股神:平安银行 又跌了", "平安银行"), ("//@财经: 騰訊控股 盈利", "騰訊控股")])
def test_a_mention_maps_onto_its_own_words_whatever_the_noise_around_it(text, mention):
    from models.sentiment.entities import map_spans

    s = text.index(mention)
    norm, [(a, b)] = map_spans(text, [(s, s + len(mention))], normalize=normalize_zh)
    assert norm[a:b] == normalize_zh(mention)
