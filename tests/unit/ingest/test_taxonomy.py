from __future__ import annotations

from pathlib import Path

import pytest

from services.core.errors import ConfigError
from services.ingest.taxonomy import TopicTagger, slug


@pytest.fixture(scope="module")
def tagger() -> TopicTagger:
    return TopicTagger.from_file()


def test_shipped_taxonomy_covers_the_main_topics(tagger: TopicTagger) -> None:
    assert {"earnings", "mergers", "legal", "management", "products", "macro", "markets"} <= \
        set(tagger.topic_ids)


@pytest.mark.parametrize(("text", "expected"), [
    ("Apple quarterly results beat; EPS up", "earnings"),
    ("Microsoft agreed to buy Activision in a $69bn takeover", "mergers"),
    ("Broadcom completes acquisition of VMware", "mergers"),
    ("SEC opens probe into Tesla", "legal"),
    ("Nvidia CEO to step down", "management"),
    ("Apple unveils new iPhone", "products"),
    ("Fed signals rate hike as inflation persists", "macro"),
    ("Shares jumped to an all-time high", "markets"),
    ("阿里巴巴发布财报，净利润大增", "earnings"),
    ("腾讯宣布收购一家游戏公司", "mergers"),
    ("监管机构对拼多多展开调查", "legal"),
])
def test_keyword_tagging(tagger: TopicTagger, text: str, expected: str) -> None:
    assert tagger.tag(text)[0] == expected


def test_no_topic_and_boundaries(tagger: TopicTagger) -> None:
    assert tagger.tag("lovely weather today") == []
    assert "legal" not in tagger.tag("a seconds count")  # "sec" cased acronym, not in "seconds"
    assert "capital" not in tagger.tag("my old ipod")


def test_most_mentioned_first_and_capped() -> None:
    t = TopicTagger.from_mapping({"topics": {"a": ["x"], "b": ["y"], "c": ["z"], "d": ["w"]}},
                                 max_topics=2)
    assert t.tag("y x y z w") == ["b", "a"]


def test_producer_category_wins(tagger: TopicTagger) -> None:
    text = "SEC probe into quarterly results"
    assert tagger.tag(text, category="M&A") == ["mergers"]
    assert tagger.tag(text, category="Legal / Regulatory") == ["legal"]
    assert tagger.tag(text, category="Crypto") == ["crypto"]  # unknown categories kept, slugged
    assert tagger.tag(text, category="  ")[0] in {"legal", "earnings"}


def test_slug() -> None:
    assert slug(" Capital Markets ") == "capital_markets"
    assert slug("M&A") == "m&a"


def test_bad_taxonomy(tmp_path: Path) -> None:
    p = tmp_path / "t.yaml"
    p.write_text("topics: []\n", encoding="utf-8")
    with pytest.raises(ConfigError):
        TopicTagger.from_file(p)
    with pytest.raises(ConfigError, match="YUQING_TAXONOMY"):
        TopicTagger.from_file(tmp_path / "missing.yaml")
