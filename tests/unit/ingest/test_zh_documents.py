"""Chinese documents through the ingest step: the language a document gets (its tag, else
its script), and entities, spans and topics on CleanDoc for Chinese news and 股吧 posts."""
from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from services.core.schemas import CommentIn, NewsIn, SourceRef
from services.ingest.entities import EntityLinker
from services.ingest.pipeline import Forward, Ingestor
from services.ingest.taxonomy import TopicTagger

ORIGIN = SourceRef(topic="yuqing.news.raw", partition=0, offset=1)
NOW = datetime(2026, 11, 29, 6, 0, tzinfo=UTC)
WHEN = "2026-11-29T05:59:00+08:00"


@pytest.fixture(scope="module")
def ingestor() -> Ingestor:
    return Ingestor(EntityLinker.from_file(), TopicTagger.from_file(), None,
                    max_bytes=20_000, max_chars=4000, clock=lambda: NOW)


async def _doc(ingestor: Ingestor, kind: str, **fields):
    base = {"id": "1", "source": "s", "published_at": WHEN}
    if kind == "comment":
        base["author"] = "a"
    (out,) = await ingestor.process_many(
        [(json.dumps({**base, **fields}).encode(), None, ORIGIN)], kind)  # type: ignore[arg-type]
    assert isinstance(out, Forward), out
    return out.doc


@pytest.mark.parametrize(("lang", "title", "expected"), [
    (None, "贵州茅台发布业绩预告，净利润同比增长15%", "zh"),       # untagged Chinese is Chinese
    (None, "Apple beats estimates on services", "en"),              # English unchanged
    (None, "腾讯控股 Q3 revenue 增长超预期", "zh"),                  # mixed: dominant script
    (None, "Tencent (腾讯) beats estimates again", "en"),
    ("zh-Hant-HK", "騰訊控股業績勝預期", "zh"),                       # tags fold to the primary
    ("zh_CN", "Moutai results", "zh"),                              # a valid tag wins
    ("EN-us", "贵州茅台", "en"),
    ("", "贵州茅台业绩", "zh"),                                        # empty tag: detect
    ("??", "贵州茅台业绩", "zh"),                                      # malformed tag: detect
    ("chinese-simplified-x", "Apple results", "en"),                # not BCP-47: detect
    (None, "2026 -- 1,234.5 %", "und"),                             # no letters at all
])
async def test_language_is_the_tag_or_the_script(ingestor: Ingestor, lang: str | None,
                                                  title: str, expected: str) -> None:
    fields = {"title": title} if lang is None else {"title": title, "lang": lang}
    assert (await _doc(ingestor, "news", **fields)).lang == expected


def test_producer_tag_is_optional_in_the_schema() -> None:
    news = NewsIn.model_validate({"id": "1", "source": "s", "published_at": WHEN, "title": "t"})
    comment = CommentIn.model_validate({"id": "1", "source": "s", "published_at": WHEN,
                                        "text": "t", "author": "a"})
    assert news.lang is None and comment.lang is None


async def test_chinese_news_entities_spans_topics(ingestor: Ingestor) -> None:
    doc = await _doc(
        ingestor, "news", tickers=["SH600036"],
        title="<p>平安银行（000001.SZ）收到监管函，中国平安拟减持</p>",
        body="平安银行公告称，公司因违规发放贷款被立案调查；中国平安称不存在逾期。")
    assert doc.lang == "zh"
    assert doc.entities == ["600036.SH", "000001.SZ", "2318.HK"]
    spans = {m.entity: [doc.text[a:b] for a, b in m.spans] for m in doc.mentions}
    assert spans == {"000001.SZ": ["平安银行(000001.SZ)", "平安银行"],
                     "2318.HK": ["中国平安", "中国平安"]}
    assert doc.topics[0] == "legal" and {"shareholding", "credit"} <= set(doc.topics)


async def test_guba_post_with_traditional_text(ingestor: Ingestor) -> None:
    doc = await _doc(ingestor, "comment",
                     text="$騰訊控股(00700)$ 業績預告不及預期，大股東減持，明天跌停？？？")
    assert doc.lang == "zh" and doc.entities == ["0700.HK"]
    (m,) = doc.mentions
    assert [doc.text[a:b] for a, b in m.spans] == ["$騰訊控股(00700)$"]
    # one hit each: ties keep taxonomy order
    assert doc.topics == ["earnings", "markets", "shareholding"]
