from __future__ import annotations

from pathlib import Path

import pytest

from services.core.errors import ConfigError
from services.ingest.entities import EntityLinker, default_watchlist_path


@pytest.fixture(scope="module")
def linker() -> EntityLinker:
    return EntityLinker.from_file()


def test_shipped_watchlist_is_big_enough_and_has_chinese_names() -> None:
    import yaml

    data = yaml.safe_load(default_watchlist_path().read_text(encoding="utf-8"))
    companies = data["companies"]
    assert len(companies) >= 12
    aliases = {a for c in companies for a in c.get("aliases", [])}
    assert {"阿里巴巴", "腾讯"} <= aliases


@pytest.mark.parametrize(("text", "expected"), [
    ("Apple beats estimates", ["AAPL"]),
    ("I made applesauce with Applesauce brand", []),
    ("Meta shares fell", ["META"]),
    ("The metadata service and meta-analysis", []),
    ("Meta's AI spending", ["META"]),
    ("Microsoft and Tesla rallied", ["MSFT", "TSLA"]),
    ("microsoft rallied", ["MSFT"]),  # aliases are case-insensitive unless marked cased
    ("an apple a day", []),  # "Apple" is cased: the fruit is not the company
    ("Shell raised its dividend", ["SHEL"]),
    ("a shell company", []),
    ("Teslas everywhere", []),
    ("J.P. Morgan upgraded Nvidia", ["JPM", "NVDA"]),
])
def test_latin_word_boundaries(linker: EntityLinker, text: str, expected: list[str]) -> None:
    assert linker.link(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("阿里巴巴股价大跌", ["BABA"]),
    ("昨日阿里巴巴和腾讯均上涨", ["BABA", "0700.HK"]),
    ("腾讯音乐发布财报", ["TME"]),  # the longer name wins over the 腾讯 inside it
    ("腾讯音乐和腾讯控股", ["TME", "0700.HK"]),
    ("Apple的股价", ["AAPL"]),  # a Latin name next to CJK text still matches
    ("比亚迪,蔚来与小米", ["1211.HK", "NIO", "1810.HK"]),
    ("トヨタの決算", ["TM"]),
])
def test_chinese_names_need_no_word_boundaries(linker: EntityLinker, text: str,
                                                expected: list[str]) -> None:
    assert linker.link(text) == expected


def test_cashtags(linker: EntityLinker) -> None:
    assert linker.link("$AAPL and $msft, also $BRK.B and $0700.HK") == \
        ["AAPL", "MSFT", "BRK.B", "0700.HK"]
    # Listings map to the canonical ticker; unknown cashtags are kept; money is not a cashtag.
    assert linker.link("$TCEHY $9988.HK $XYZ cost $5 or $5.2bn") == ["0700.HK", "BABA", "XYZ"]
    assert linker.link("US$AAPL") == []  # glued to a word: not a cashtag


def test_unknown_cashtags_can_be_ignored() -> None:
    strict = EntityLinker.from_file(unknown_cashtags=False)
    assert strict.link("$XYZ $AAPL") == ["AAPL"]


def test_producer_tickers_first_then_text_order_unique(linker: EntityLinker) -> None:
    text = "Tesla and Apple; $AAPL again and 特斯拉"
    assert linker.link(text, producer=["nvda", "$AAPL"]) == ["NVDA", "AAPL", "TSLA"]
    assert linker.link(text, producer=["TCEHY"]) == ["0700.HK", "TSLA", "AAPL"]
    assert linker.link("", producer=["ZZZ"]) == ["ZZZ"]


def test_custom_watchlist_file(tmp_path: Path) -> None:
    p = tmp_path / "w.yaml"
    p.write_text("companies:\n  - ticker: ACME\n    name: Acme Corp\n    aliases: [Acme, 艾克米]\n"
                 "    listings: [ACM.L]\n", encoding="utf-8")
    linker = EntityLinker.from_file(p)
    assert linker.link("acme and 艾克米 and $ACM.L and Acmeville") == ["ACME"]


@pytest.mark.parametrize("content", [
    "companies: {}\n",
    "nope: []\n",
    "companies:\n  - name: No ticker\n",
    "companies:\n  - ticker: A\n    aliases: 3\n",
    "companies: [\n",
])
def test_bad_watchlist_is_config_error(tmp_path: Path, content: str) -> None:
    p = tmp_path / "w.yaml"
    p.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError):
        EntityLinker.from_file(p)


def test_missing_watchlist_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="YUQING_WATCHLIST"):
        EntityLinker.from_file(tmp_path / "missing.yaml")
