"""The pure part of the ingest step (no dedup store): outcomes, DLQ records, CleanDoc fields."""
from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from services.core.schemas import SourceRef
from services.ingest.entities import EntityLinker
from services.ingest.pipeline import Forward, Ingestor, Reject
from services.ingest.taxonomy import TopicTagger


async def _one(ingestor: Ingestor, value, key, kind, origin):
    """One message through the batch entry point (the agent's only one)."""
    return (await ingestor.process_many([(value, key, origin)], kind))[0]

ORIGIN = SourceRef(topic="yuqing.news.raw", partition=3, offset=42)
NOW = datetime(2026, 11, 29, 6, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def ingestor() -> Ingestor:
    return Ingestor(EntityLinker.from_file(), TopicTagger.from_file(), None,
                    max_bytes=2000, max_chars=200, clock=lambda: NOW)


async def test_news_becomes_clean_doc(ingestor: Ingestor) -> None:
    value = json.dumps({
        "id": "r-1", "source": "reuters", "published_at": "2026-11-29T05:59:00Z",
        "title": "<b>Apple</b> beats estimates", "body": "<p>Shares of 腾讯 rose.</p>",
        "tickers": ["nvda"], "url": "https://example.com/a",
    }).encode()
    out = await _one(ingestor, value, b"k", "news", ORIGIN)
    assert isinstance(out, Forward)
    doc = out.doc
    assert doc.doc_id == "news:reuters:r-1"
    assert doc.text == "Apple beats estimates. Shares of 腾讯 rose."
    assert doc.title == "Apple beats estimates"
    assert doc.entities == ["NVDA", "AAPL", "0700.HK"]
    assert doc.primary_entity == "NVDA"
    assert doc.topics == ["earnings"]
    assert doc.fingerprint and doc.fingerprint.startswith("n")
    assert doc.ingested_at == NOW
    assert doc.origin == ORIGIN
    assert doc.url == "https://example.com/a"


async def test_small_clock_skew_is_accepted(ingestor: Ingestor) -> None:
    value = json.dumps({"id": "1", "source": "s", "published_at": "2026-11-29T06:10:00Z",
                        "title": "t"}).encode()
    assert isinstance(await _one(ingestor, value, None, "news", ORIGIN), Forward)


async def test_comment_and_category_and_cap(ingestor: Ingestor) -> None:
    value = json.dumps({
        "id": "c-9", "source": "stocktwits", "published_at": "2026-11-29T05:59:00Z",
        "text": "$tsla " + "great " * 100, "author": "ann", "ticker": "AAPL",
        "category": "Products",
    }).encode()
    out = await _one(ingestor, value, None, "comment", ORIGIN)
    assert isinstance(out, Forward)
    assert out.doc.doc_id == "comment:stocktwits:c-9"
    assert out.doc.entities == ["AAPL", "TSLA"]
    assert out.doc.topics == ["products"]
    assert len(out.doc.text) <= 200
    assert out.doc.author == "ann"


@pytest.mark.parametrize(("value", "reason"), [
    (None, "empty"),
    (b"x" * 2001, "too_large"),
    (b"\xff\xfe{}", "not_utf8"),
    (b"{not json", "invalid_json"),
    (b"[]", "not_object"),
    (b'{"id": "1", "source": "s", "published_at": "soon", "title": "t"}', "schema"),
    (b'{"id": "1", "source": "s", "published_at": "2026-11-28", "title": "<br/>"}',
     "empty_text"),
    (b'{"id": "1", "source": "s", "published_at": "1970-01-01T00:00:00", "title": "t"}',
     "stale_published_at"),
    (b'{"id": "1", "source": "s", "published_at": "2026-10-29T11:00:00", "title": "t"}',
     "stale_published_at"),
    (b'{"id": "1", "source": "s", "published_at": "2026-11-29T14:00:00", "title": "t"}',
     "future_published_at"),
])
async def test_bad_input_becomes_dead_letter(ingestor: Ingestor, value: bytes | None,
                                             reason: str) -> None:
    out = await _one(ingestor, value, b"key-1", "news", ORIGIN)
    assert isinstance(out, Reject)
    dl = out.dead_letter
    assert dl.reason == reason
    assert dl.stage == "ingest"
    assert base64.b64decode(dl.original_b64) == (value or b"")
    assert base64.b64decode(dl.key_b64 or "") == b"key-1"
    assert dl.origin == ORIGIN
    assert dl.error
    assert dl.failed_at == NOW


class _BrokenTagger(TopicTagger):
    def tag(self, text: str, category: str | None = None) -> list[str]:
        raise RuntimeError("bug in a tagger")


async def test_unexpected_error_is_dead_lettered_not_raised() -> None:
    """A message that trips a bug must not crash-loop the agent: it goes to the DLQ."""
    ing = Ingestor(EntityLinker.from_file(), _BrokenTagger.from_file(), None, max_bytes=2000,
                   max_chars=200, clock=lambda: NOW)
    value = json.dumps({"id": "1", "source": "s", "published_at": "2026-11-29T05:00:00Z",
                        "title": "Apple"}).encode()
    out = await _one(ing, value, None, "news", ORIGIN)
    assert isinstance(out, Reject)
    assert out.dead_letter.reason == "ingest_error"
    assert "bug in a tagger" in out.dead_letter.error
