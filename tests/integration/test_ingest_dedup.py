"""DedupStore and the Ingestor against the real Redis: first writer wins, redelivery-safe."""
from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from services.core.errors import BackendUnavailable
from services.core.schemas import SourceRef
from services.ingest.dedup import DedupStore
from services.ingest.entities import EntityLinker
from services.ingest.pipeline import Duplicate, Forward, Ingestor, Reject
from services.ingest.taxonomy import TopicTagger


async def _one(ingestor: Ingestor, value, key, kind, origin):
    """One message through the batch entry point (the agent's only one)."""
    return (await ingestor.process_many([(value, key, origin)], kind))[0]

pytestmark = pytest.mark.integration

ORIGIN = SourceRef(topic="t", partition=0, offset=1)
NOW = datetime(2026, 11, 29, 7, 0, tzinfo=UTC)  # the fixtures' published_at is an hour before


async def test_first_writer_wins_and_redelivery_is_not_a_duplicate(redis: Redis,
                                                                   redis_ns: str) -> None:
    store = DedupStore(redis, redis_ns, window_s=60)
    first = await store.check("fp1", "news:a:1")
    assert (first.is_duplicate, first.original_doc_id) == (False, "news:a:1")
    # The same document again (redelivered after a crash): still the original.
    assert not first.redelivered
    again = await store.check("fp1", "news:a:1")
    assert (again.is_duplicate, again.original_doc_id, again.redelivered) == \
        (False, "news:a:1", True)
    copy = await store.check("fp1", "news:b:7")
    assert (copy.is_duplicate, copy.original_doc_id) == (True, "news:a:1")
    assert await store.duplicates("news:a:1") == 1
    # A redelivered copy is not counted twice; a second copy is.
    await store.check("fp1", "news:b:7")
    assert await store.duplicates("news:a:1") == 1
    await store.check("fp1", "news:c:9")
    assert await store.duplicates_many(["news:a:1", "news:zzz"]) == {"news:a:1": 2, "news:zzz": 0}
    # Another story is independent.
    assert not (await store.check("fp2", "news:b:7")).is_duplicate
    # Keys expire with the window.
    ttl = await redis.ttl(f"{redis_ns}:dedup:fp:fp1")
    assert 0 < ttl <= 60


def _news(id_: str, source: str, title: str, body: str) -> bytes:
    return json.dumps({"id": id_, "source": source, "published_at": "2026-11-29T06:00:00Z",
                       "title": title, "body": body}).encode()


async def test_ingestor_drops_syndicated_copies(redis: Redis, redis_ns: str) -> None:
    ing = Ingestor(EntityLinker.from_file(), TopicTagger.from_file(),
                   DedupStore(redis, redis_ns, 300), max_bytes=100_000, max_chars=5000, clock=lambda: NOW)
    body = "Alibaba said on Thursday its quarterly revenue rose 8%, beating analysts' estimates."
    orig = await _one(ing, _news("1", "reuters", "Alibaba beats estimates - Reuters",
                                   "HANGZHOU (Reuters) - " + body), None, "news", ORIGIN)
    assert isinstance(orig, Forward)
    assert orig.doc.entities == ["BABA"]
    copy = await _one(ing, _news("x9", "yahoo", "Alibaba beats estimates", body + " "),
                             None, "news", ORIGIN)
    assert isinstance(copy, Duplicate)
    assert (copy.doc_id, copy.original_doc_id) == ("news:yahoo:x9", "news:reuters:1")
    # Redelivery of the original goes through again and now carries the copy count.
    again = await _one(ing, _news("1", "reuters", "Alibaba beats estimates - Reuters",
                                    "HANGZHOU (Reuters) - " + body), None, "news", ORIGIN)
    assert isinstance(again, Forward)
    assert again.doc.duplicates == 1
    other = await _one(ing, _news("2", "reuters", "Tencent misses estimates", body),
                              None, "news", ORIGIN)
    assert isinstance(other, Forward)
    bad = await _one(ing, b"{", None, "news", ORIGIN)
    assert isinstance(bad, Reject)


async def test_redis_down_is_backend_unavailable(redis_ns: str) -> None:
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    try:
        with pytest.raises(BackendUnavailable):
            await DedupStore(dead, redis_ns, 60).check("fp", "news:a:1")
    finally:
        await dead.aclose()


async def test_a_batch_gets_the_same_verdicts_as_one_at_a_time(redis: Redis, redis_ns: str) -> None:
    """process_many pipelines the dedup claims; copies inside one batch still resolve in order,
    and a redelivered batch (crash before the offsets were committed) counts nothing twice."""
    body = "Tencent said on Friday that its quarterly revenue rose 11%, ahead of forecasts."
    msgs = [
        _news("1", "reuters", "Tencent beats forecasts - Reuters", "SHENZHEN (Reuters) - " + body),
        _news("2", "reuters", "Alibaba cuts outlook", "Alibaba lowered its full-year outlook."),
        _news("x1", "yahoo", "Tencent beats forecasts", body),  # copy of 1, same batch
        b"{not json",
        _news("x2", "msn", "Tencent beats forecasts", body + " "),  # another copy of 1
    ]
    origins = [SourceRef(topic="news", partition=0, offset=i) for i in range(len(msgs))]

    def ingestor(ns: str) -> Ingestor:
        return Ingestor(EntityLinker.from_file(), TopicTagger.from_file(),
                        DedupStore(redis, ns, 300), max_bytes=100_000, max_chars=5000, clock=lambda: NOW)

    batch = await ingestor(redis_ns).process_many(
        [(m, None, o) for m, o in zip(msgs, origins, strict=True)], "news")
    one_by_one = [await _one(ingestor(redis_ns + "-single"), m, None, "news", o)
                  for m, o in zip(msgs, origins, strict=True)]
    kinds = [type(o).__name__ for o in batch]
    assert kinds == ["Forward", "Forward", "Duplicate", "Reject", "Duplicate"]
    assert kinds == [type(o).__name__ for o in one_by_one]
    assert [o.original_doc_id for o in batch if isinstance(o, Duplicate)] == [
        "news:reuters:1", "news:reuters:1"]
    again = await ingestor(redis_ns).process_many(
        [(m, None, o) for m, o in zip(msgs, origins, strict=True)], "news")
    assert [type(o).__name__ for o in again] == kinds
    assert again[0].doc.duplicates == 2 and again[1].doc.duplicates == 0
    assert await redis.scard(f"{redis_ns}:dedup:dups:news:reuters:1") == 2
