"""The shared watchlist: Chinese names, codes in any spelling, the ambiguity rule, resolve()."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from models.text_zh import to_simplified
from services.core.errors import ConfigError
from services.core.watchlist import Ambiguous, Resolution, Watchlist, default_watchlist_path


@pytest.fixture(scope="module")
def wl() -> Watchlist:
    return Watchlist.from_file(fold=to_simplified)


# The names, each to its id (A+H companies: one id, the other code a listing).
SHIPPED = {
    "贵州茅台": "600519.SH", "中国平安": "2318.HK", "平安银行": "000001.SZ",
    "招商银行": "600036.SH", "工商银行": "601398.SH", "建设银行": "601939.SH",
    "宁德时代": "300750.SZ", "比亚迪": "1211.HK", "五粮液": "000858.SZ", "美的集团": "000333.SZ",
    "格力电器": "000651.SZ", "中国石油": "601857.SH", "中国石化": "600028.SH",
    "万科A": "000002.SZ", "恒瑞医药": "600276.SH", "隆基绿能": "601012.SH",
    "紫金矿业": "601899.SH", "中信证券": "600030.SH", "腾讯控股": "0700.HK",
    "阿里巴巴": "BABA", "美团": "3690.HK", "小米集团": "1810.HK", "京东": "JD", "网易": "NTES",
    "百度": "BIDU", "中国移动": "0941.HK", "友邦保险": "1299.HK", "汇丰控股": "0005.HK",
    "港交所": "0388.HK", "碧桂园": "2007.HK", "中国恒大": "3333.HK", "融创中国": "1918.HK",
    "海康威视": "002415.SZ", "中芯国际": "0981.HK",
}


def test_shipped_watchlist_covers_the_large_a_and_h_names(wl: Watchlist) -> None:
    assert {n: wl.resolve(n).entity for n in SHIPPED} == SHIPPED
    assert len(wl.companies) >= 50


@pytest.mark.parametrize(("code", "entity"), [
    ("601318.SH", "2318.HK"), ("SH601318", "2318.HK"), ("601318", "2318.HK"),
    ("002594.SZ", "1211.HK"), ("SZ002594", "1211.HK"), ("3968.HK", "600036.SH"),
    ("03968.HK", "600036.SH"), ("HK01398", "601398.SH"), ("0857.HK", "601857.SH"),
    ("00386", "600028.SH"), ("688981.SH", "0981.HK"), ("600941", "0941.HK"),
    ("9988.HK", "BABA"), ("TCEHY", "0700.HK"), ("00700.HK", "0700.HK"), ("700", "0700.HK"),
    ("600519.SS", "600519.SH"), ("sh600519", "600519.SH"), ("GOOG", "GOOGL"),
])
def test_every_listing_in_every_spelling_is_one_id(wl: Watchlist, code: str,
                                                   entity: str) -> None:
    assert wl.resolve(code).entity == entity
    assert wl.canonical(code) == entity


def test_names_full_short_alias_traditional_and_cashtags(wl: Watchlist) -> None:
    for q in ("贵州茅台酒股份有限公司", "贵州茅台", "茅台", "Moutai", "moutai", "$贵州茅台(SH600519)$",
              "$贵州茅台(600519)$", "$贵州茅台$", "600519"):
        assert wl.resolve(q).entity == "600519.SH", q
    assert wl.resolve("騰訊控股").entity == "0700.HK"  # traditional
    assert wl.resolve("匯豐").entity == "0005.HK"
    assert wl.resolve("美团-W").entity == "3690.HK"  # HK share-class marks dropped
    assert wl.resolve("ＳＨ６００５１９").entity == "600519.SH"  # full-width


def test_ambiguous_short_names(wl: Watchlist) -> None:
    r = wl.resolve("平安")
    assert r.entity is None and isinstance(r.ambiguous, Ambiguous)
    assert set(r.ambiguous.candidates) == {"2318.HK", "000001.SZ"}
    assert wl.describe("000001.SZ") == "平安银行 (000001.SZ)"
    assert wl.resolve("恒大").entity == "3333.HK"  # the watchlist says which
    assert wl.resolve("恒大汽车").entity == "0708.HK"


def test_unknown_and_ticker_like(wl: Watchlist) -> None:
    assert wl.resolve("某某科技") == Resolution()  # nothing at all
    assert wl.resolve("ZZZQ").ticker == "ZZZQ" and wl.resolve("ZZZQ").entity is None
    assert wl.resolve("sh600000").ticker == "600000.SH"  # a code, not on the watchlist


def test_a_name_given_to_two_companies_is_ambiguous(tmp_path: Path) -> None:
    data = {"companies": [{"ticker": "AAA", "aliases": ["双子"]},
                          {"ticker": "BBB", "aliases": ["双子", "乙"]}]}
    wl = Watchlist.from_mapping(data)
    assert wl.resolve("双子").ambiguous == Ambiguous("双子", ("AAA", "BBB"))
    assert ("双子", None, False) in wl.phrases()
    data["ambiguous"] = {"双子": {"candidates": ["AAA", "BBB"], "link": "BBB"}}
    assert Watchlist.from_mapping(data).resolve("双子").entity == "BBB"


def test_code_tickers_are_stored_in_one_spelling() -> None:
    wl = Watchlist.from_mapping({"companies": [{"ticker": "sh600519", "listings": ["00700"]}]})
    assert [c.ticker for c in wl.companies] == ["600519.SH"]
    assert wl.canonical("0700.HK") == "600519.SH"


@pytest.mark.parametrize(("data", "message"), [
    ({"companies": [{"ticker": "A"}, {"ticker": "a"}]}, "already companies"),
    ({"companies": [{"ticker": "A"}], "ambiguous": {"x": ["A", "ZZZ"]}}, "ZZZ"),
    ({"companies": [{"ticker": "A"}], "ambiguous": {"x": {"link": "Q"}}}, "add the company"),
    ({"companies": [{"ticker": "A"}], "ambiguous": ["x"]}, "ambiguous"),
    ({"companies": [{"ticker": "A", "name_zh": ["x"]}]}, "name_zh"),
    ({"companies": [{"ticker": "A", "short_zh": 3}]}, "short_zh"),
])
def test_bad_watchlists_say_what_to_fix(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Watchlist.from_mapping(data)


def test_shipped_file_header_documents_the_fields_and_the_rule() -> None:
    text = default_watchlist_path().read_text(encoding="utf-8")
    for word in ("name_zh", "short_zh", "listings", "exclude", "ambiguous", "longest match",
                 "BARE number"):
        assert word in text, word
    data = yaml.safe_load(text)
    ids = [c["ticker"] for c in data["companies"]]
    assert len(ids) == len(set(ids))
