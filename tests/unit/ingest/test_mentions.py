"""Where each linked entity is mentioned: the spans the classifier's entity head reads."""
from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from services.core.schemas import CleanDoc, Mention, SourceRef
from services.ingest.entities import EntityLinker
from services.ingest.pipeline import Forward, Ingestor
from services.ingest.taxonomy import TopicTagger

NOW = datetime(2026, 11, 29, 6, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def linker() -> EntityLinker:
    return EntityLinker.from_file()


def test_names_and_cashtags_have_spans_in_text_order(linker: EntityLinker) -> None:
    text = "JPMorgan sues Tesla over a $AAPL deal; Tesla shares fall"
    got = linker.link_mentions(text, ["msft"])
    assert got.entities == ["MSFT", "JPM", "TSLA", "AAPL"]  # same order as link()
    assert got.entities == linker.link(text, ["msft"])
    assert "MSFT" not in got.spans  # only the producer named it: no spans
    assert {e: [text[a:b] for a, b in s] for e, s in got.spans.items()} == {
        "JPM": ["JPMorgan"], "TSLA": ["Tesla", "Tesla"], "AAPL": ["$AAPL"]}


def test_listings_and_aliases_map_to_the_canonical_ticker(linker: EntityLinker) -> None:
    text = "腾讯 and $0700.HK: Tencent results"
    got = linker.link_mentions(text)
    assert got.entities == ["0700.HK"]
    assert [text[a:b] for a, b in got.spans["0700.HK"]] == ["腾讯", "$0700.HK", "Tencent"]


def test_unknown_cashtag_keeps_its_span(linker: EntityLinker) -> None:
    got = linker.link_mentions("$ZZZQ halted")
    assert got.entities == ["ZZZQ"] and got.spans == {"ZZZQ": [(0, 5)]}


async def test_clean_doc_carries_mentions_into_its_own_text() -> None:
    ing = Ingestor(EntityLinker.from_file(), TopicTagger.from_file(), None,
                   max_bytes=4000, max_chars=400, clock=lambda: NOW)
    value = json.dumps({"id": "1", "source": "wire", "published_at": "2026-11-29T05:59:00Z",
                        "title": "<b>JPMorgan</b>   sues Tesla", "body": "Tesla denies it.",
                        "tickers": ["GS"]}).encode()
    (out,) = await ing.process_many([(value, b"k", SourceRef(topic="t", partition=0,
                                                             offset=0))], "news")
    assert isinstance(out, Forward)
    doc = out.doc
    assert doc.entities == ["GS", "JPM", "TSLA"]
    assert [m.entity for m in doc.mentions] == ["JPM", "TSLA"]
    spans = {m.entity: [doc.text[a:b] for a, b in m.spans] for m in doc.mentions}
    assert spans == {"JPM": ["JPMorgan"], "TSLA": ["Tesla", "Tesla"]}
    # the record on the topic round-trips, and an older record without the field still parses
    again = CleanDoc.model_validate_json(doc.model_dump_json())
    assert again.mentions == doc.mentions
    assert again.mentions[1] == Mention(entity="TSLA", spans=doc.mentions[1].spans)
    old = json.loads(doc.model_dump_json())
    del old["mentions"]
    assert CleanDoc.model_validate(old).mentions == []
