"""Chinese entity linking: codes and 股吧 mentions, longest match, the ambiguity rule,
traditional text, and spans that index the text (and survive the Chinese normaliser)."""
from __future__ import annotations

import pytest

from services.ingest.entities import EntityLinker
from services.ingest.normalize import clean_text


@pytest.fixture(scope="module")
def linker() -> EntityLinker:
    return EntityLinker.from_file()


def spans(linker: EntityLinker, text: str) -> dict[str, list[str]]:
    got = linker.link_mentions(text)
    assert list(got.spans) == got.entities  # every text entity has its spans, in order
    return {e: [text[a:b] for a, b in s] for e, s in got.spans.items()}


@pytest.mark.parametrize(("text", "expected"), [
    # longest match first
    ("平安银行年报:净利润同比增长2.1%", {"000001.SZ": ["平安银行"]}),
    ("中国平安与平安银行同日公告", {"2318.HK": ["中国平安"], "000001.SZ": ["平安银行"]}),
    ("京东方A与京东合作", {"000725.SZ": ["京东方A"], "JD": ["京东"]}),
    ("京东方面回应称", {"000725.SZ": ["京东方"]}),  # known limit: 京东方 wins the overlap
    ("中国石油化工集团与中国石油", {"600028.SH": ["中国石油化工"], "601857.SH": ["中国石油"]}),
    ("腾讯音乐与腾讯控股", {"TME": ["腾讯音乐"], "0700.HK": ["腾讯控股"]}),
    ("贵州茅台酒股份有限公司发布公告", {"600519.SH": ["贵州茅台酒股份有限公司"]}),
    # the ambiguity rule: a bare ambiguous short name links nothing...
    ("平安今天又跌了", {}),
    ("中信获券商金股推荐", {}),
    # ...unless the watchlist names the company, or a bracketed code decides
    ("恒大清盘呈请再押后", {"3333.HK": ["恒大"]}),
    ("恒大汽车停牌", {"0708.HK": ["恒大汽车"]}),
    ("平安(000001)涨停", {"000001.SZ": ["平安(000001)"]}),
    ("平安(601318)跌", {"2318.HK": ["平安(601318)"]}),
    ("恒大(0708)停牌", {"0708.HK": ["恒大(0708)"]}),  # a default link yields to the code
    # after an unambiguous name a bracketed number is its code only when it is its own code
    ("贵州茅台(2007)年报回顾", {"600519.SH": ["贵州茅台"]}),
    ("贵州茅台(600519)年报", {"600519.SH": ["贵州茅台(600519)"]}),
    # exclusions: the longer non-company phrase wins
    ("早餐喝小米粥", {}),
    ("中国银行业协会发布报告", {}),
    ("中国移动互联网用户规模", {}),
])
def test_longest_match_and_the_ambiguity_rule(linker: EntityLinker, text: str,
                                              expected: dict[str, list[str]]) -> None:
    assert spans(linker, text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("騰訊控股業績勝預期", {"0700.HK": ["騰訊控股"]}),
    ("滙豐控股及匯豐銀行", {"0005.HK": ["滙豐控股", "匯豐銀行"]}),
    ("碧桂園債務重組", {"2007.HK": ["碧桂園"]}),
    ("中國平安與平安銀行", {"2318.HK": ["中國平安"], "000001.SZ": ["平安銀行"]}),
])
def test_traditional_text_links_and_keeps_its_own_characters(
        linker: EntityLinker, text: str, expected: dict[str, list[str]]) -> None:
    assert spans(linker, text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("$贵州茅台(SH600519)$ 今天放量", {"600519.SH": ["$贵州茅台(SH600519)$"]}),
    ("$贵州茅台(600519)$", {"600519.SH": ["$贵州茅台(600519)$"]}),
    ("$腾讯控股(00700)$和$小米集团-W(01810)$", {"0700.HK": ["$腾讯控股(00700)$"],
                                               "1810.HK": ["$小米集团-W(01810)$"]}),
    ("$贵州茅台$ 又新高", {"600519.SH": ["$贵州茅台$"]}),  # no code: the name decides
    ("$特斯拉(TSLA)$ 大跌", {"TSLA": ["$特斯拉(TSLA)$"]}),
    ("$平安银行(SZ000001)$", {"000001.SZ": ["$平安银行(SZ000001)$"]}),
    ("$平安$", {}),  # an ambiguous name without a code
    ("$浦发银行(SH600000)$", {"600000.SH": ["$浦发银行(SH600000)$"]}),  # unknown code: kept
])
def test_guba_cashtags(linker: EntityLinker, text: str, expected: dict[str, list[str]]) -> None:
    assert spans(linker, text) == expected


def test_unknown_guba_codes_can_be_ignored() -> None:
    strict = EntityLinker.from_file(unknown_cashtags=False)
    assert strict.link("$浦发银行(SH600000)$ $贵州茅台(SH600519)$") == ["600519.SH"]


@pytest.mark.parametrize(("text", "expected"), [
    ("600519.SH、SH600519、sh600519、600519.SS", {"600519.SH": [
        "600519.SH", "SH600519", "sh600519", "600519.SS"]}),
    ("000001.SZ 与 SZ000001", {"000001.SZ": ["000001.SZ", "SZ000001"]}),
    ("00700.HK 0700.HK 700.HK HK00700 hk0700", {"0700.HK": [
        "00700.HK", "0700.HK", "700.HK", "HK00700", "hk0700"]}),
    ("招商银行(3968.HK)与招商银行(600036)", {"600036.SH": ["招商银行(3968.HK)",
                                                        "招商银行(600036)"]}),
    ("贵州茅台（600519）", {"600519.SH": ["贵州茅台(600519)"]}),  # after clean_text (NFKC)
    ("公告称，证券代码：600519", {"600519.SH": ["600519"]}),
    # bare numbers in running text are prices, amounts and dates, not codes
    ("收盘价600519元，成交额000001万", {}),
    ("2024年营收1810亿元，700名员工", {}),
    # codes glued to other letters or digits are not codes
    ("订单号A600519.SHX与1600519.SH", {}),
])
def test_codes_in_text(linker: EntityLinker, text: str, expected: dict[str, list[str]]) -> None:
    assert spans(linker, clean_text(text, 1000)) == expected


def test_producer_codes_in_any_spelling(linker: EntityLinker) -> None:
    assert linker.link("", producer=["SH600519", "600519", "00700", "hk09988"]) == \
        ["600519.SH", "0700.HK", "BABA"]
    assert linker.link("", producer=["SH600000"]) == ["600000.SH"]  # unknown, one spelling


def test_mixed_english_and_chinese_one_entity(linker: EntityLinker) -> None:
    text = "Tencent (腾讯, 00700.HK) and $TCEHY: 騰訊 shares rose"
    got = spans(linker, text)
    assert got == {"0700.HK": ["Tencent", "腾讯", "00700.HK", "$TCEHY", "騰訊"]}


def test_spans_survive_the_chinese_normaliser(linker: EntityLinker) -> None:
    """The classify stage maps CleanDoc spans onto normalize_zh's text; a 股吧 mention's span
    (the whole $...$) lands on the bare name, a traditional name on its simplified form."""
    from models.sentiment.entities import map_spans
    from models.text_zh import normalize_zh

    text = clean_text("回复@老股民:$贵州茅台(SH600519)$ 和騰訊控股都跌了！！！！ Tencent", 1000)
    got = linker.link_mentions(text)
    norm, moved = map_spans(text, [s for e in got.entities for s in got.spans[e]],
                            normalize=normalize_zh)
    assert [norm[a:b] for a, b in moved] == ["贵州茅台", "腾讯控股", "Tencent"]


def test_english_cashtag_runs_are_not_one_guba_mention():
    from services.ingest.entities import EntityLinker

    linker = EntityLinker.from_file()
    got = linker.link_mentions("$META $AAPL rally")
    assert got.entities == ["META", "AAPL"]
    got = linker.link_mentions("$特斯拉 $贵州茅台(600519)$ 大跌")
    assert set(got.entities) == {"TSLA", "600519.SH"}
