"""Entity-level sentiment end to end (real Kafka, Redis and Elasticsearch, a real worker):
"Bank A sues Company B" is counted as a negative for B and not for A.

The model is the pipeline tests' centroid checkpoint plus a stub entity head: a linear
``[entity tokens ; whole text] -> label`` head fitted here, on this test's own headlines, to
call the sued company negative and the suing one neutral (the trained head is the model
side's concern; this test is about the plumbing: mentions from ingest, one forward pass with
hidden states in classify, per-entity labels in ScoredDoc, and the entity's own label counted
in trends and alerts while the document label stays for '*' and topics and search).
"""
from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import torch

from services.core.schemas import NewsIn
from services.feed.replay import replay
from services.feed.synthetic import FeedItem
from services.ingest.entities import EntityLinker
from services.ingest.pipeline import Ingestor
from services.ingest.taxonomy import TopicTagger
from services.trends.windows import ALL, DIM_ALL, DIM_ENTITY
from tests.integration.pipeline_fixtures import (  # noqa: F401 - fixtures
    Pipeline,
    centroid_model_fixture,
    pipeline_fixture,
)
from tests.integration.pipeline_support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]

# (headline, the company it is negative for): Bank A = JPMorgan sues Company B = Tesla; the
# last two swap the roles of another pair, so the head has to read the context
SUES = [("JPMorgan sues Tesla over unpaid loan fees", "TSLA"),
        ("JPMorgan files a lawsuit against Tesla in Delaware court", "TSLA"),
        ("Tesla hit with JPMorgan suit over warrant dispute", "TSLA"),
        ("JPMorgan takes Tesla to court, seeking damages of $162 million", "TSLA"),
        ("Court filing: JPMorgan accuses Tesla of breaching its contract", "TSLA"),
        ("JPMorgan sues Tesla again as the warrant fight drags on", "TSLA"),
        ("Goldman Sachs sues Nvidia over a chip supply contract", "NVDA"),
        ("Nvidia sues Goldman Sachs over botched bond underwriting", "GS")]
N_SUED = sum(neg == "TSLA" for _, neg in SUES)


def _messages(start: datetime) -> list[NewsIn]:
    return [NewsIn(id=f"sue-{i}", source="wire", title=t,
                   published_at=start + timedelta(seconds=20 * i)) for i, (t, _) in
            enumerate(SUES)]


def fit_stub_entity_head(model_dir: Path, out: Path, msgs: list[NewsIn]) -> Path:
    """``model_dir`` + an entity head fitted on ``msgs`` as ingest cleans and links them."""
    from models.sentiment import SentimentModel
    from models.sentiment.entities import EntityHead, masked_mean

    shutil.copytree(model_dir, out)
    model = SentimentModel.from_checkpoint(out, device="cpu", backend="fp32")
    ing = Ingestor(EntityLinker.from_file(), TopicTagger.from_file(), None, max_bytes=10**6,
                   max_chars=20_000)
    docs = [ing.clean(m, "news", None) for m in msgs]
    enc = model.encode([d.text for d in docs])
    _, hidden = model.forward_hidden(enc)
    feats, labels = [], []
    for i, (doc, (_, negative_for)) in enumerate(zip(docs, SUES, strict=True)):
        ents = [m.entity for m in doc.mentions]
        sets = model.entity_token_sets(doc.text, [m.spans for m in doc.mentions])
        h = hidden[i, : int(enc.lengths[i])]
        for e, rows in zip(ents, sets, strict=True):
            assert len(rows), (doc.text, e)
            feats.append(np.concatenate([masked_mean(h, rows), h.mean(0)]))
            labels.append(model.labels.index("negative" if e == negative_for else "neutral"))
    x, y = torch.tensor(np.stack(feats)), torch.tensor(labels)
    torch.manual_seed(0)
    head = EntityHead(model.config.hidden_size, len(model.labels))
    opt = torch.optim.Adam(head.head.parameters(), lr=1e-2)
    for _ in range(400):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(head.head(x), y).backward()
        opt.step()
    assert (head.head(x).argmax(1) == y).all(), "the stub head must fit its own headlines"
    head.eval().save(out)
    return out


async def test_bank_a_sues_company_b_is_negative_for_b_not_a(pipeline: Pipeline, centroid_model,
                                                            tmp_path):
    p = pipeline
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=10)
    msgs = _messages(start)
    model_dir = fit_stub_entity_head(centroid_model, tmp_path / "entity-model", msgs)
    p.worker("all", model_path=model_dir)
    items = [FeedItem(kind="news", key=f"wire:{m.id}".encode(),
                      value=m.model_dump_json().encode(), published_at=m.published_at, meta={})
             for m in msgs]
    assert await replay(items, p.settings, speed=0) == len(items)

    async def indexed() -> bool:
        return await p.es_count() >= len(msgs)

    await wait_for(f"{len(msgs)} documents in ES", indexed, 240, p.workers, interval=2.0)
    docs = await p.es_docs()
    assert len(docs) == len(msgs)

    # ES: per-entity labels from the entity head, the document label kept beside them
    for d in docs.values():
        negative_for = dict(SUES)[d["title"]]
        by = {e["entity"]: e for e in d["entity_sentiment"]}
        assert set(by) == set(d["entities"])
        assert {e["source"] for e in by.values()} == {"entity"}
        assert d["negative_for"] == [negative_for], d
        assert {m["entity"] for m in d["mentions"]} == set(d["entities"])
        for e, es in by.items():
            assert (es["label"] == "negative") == (e == negative_for), (d["title"], by)
    # ... and they are the model's own entity predictions for the same texts and spans
    from models.sentiment import SentimentModel

    model = SentimentModel.from_checkpoint(model_dir, device="cpu", backend="fp32")
    ids = sorted(docs)
    _, ref = model.predict_entities([docs[i]["text"] for i in ids],
                                    [[m["spans"] for m in docs[i]["mentions"]] for i in ids])
    for i, r in zip(ids, ref, strict=True):
        got = [[e["negative"], e["neutral"], e["positive"]] for e in docs[i]["entity_sentiment"]]
        np.testing.assert_allclose(got, r, atol=0.02)
    # Kibana/API style filter "negative for TSLA" (nested: entity and label of one entry)
    res = await p.es.count(index=f"{p.settings.es_index_prefix}-*", query={"nested": {
        "path": "entity_sentiment", "query": {"bool": {"filter": [
            {"term": {"entity_sentiment.entity": "TSLA"}},
            {"term": {"entity_sentiment.label": "negative"}}]}}}})
    assert res["count"] == N_SUED
    res = await p.es.count(index=f"{p.settings.es_index_prefix}-*",
                           query={"term": {"negative_for": "JPM"}})
    assert res["count"] == 0

    # trends: B's negatives are its own label; A has none; '*' counts the document labels
    end = start + timedelta(hours=1)
    store = p.trend_store()

    async def counted(dim: str, value: str) -> dict[str, int]:
        points = await store.series(dim, value, start, end, resolution="minute")
        out = {"n": 0, "negative": 0}
        for pt in points:
            out["n"] += pt.counts.count
            out["negative"] += pt.counts.labels.get("negative", 0)
        return out

    async def trends_done() -> bool:
        return (await counted(DIM_ALL, ALL))["n"] >= len(msgs)

    await wait_for("trend counts", trends_done, 60, p.workers)
    assert await counted(DIM_ENTITY, "TSLA") == {"n": N_SUED, "negative": N_SUED}
    assert await counted(DIM_ENTITY, "JPM") == {"n": N_SUED, "negative": 0}
    assert (await counted(DIM_ENTITY, "GS"))["negative"] == 1
    assert (await counted(DIM_ENTITY, "NVDA"))["negative"] == 1
    doc_negatives = sum(d["sentiment"]["label"] == "negative" for d in docs.values())
    assert await counted(DIM_ALL, ALL) == {"n": len(msgs), "negative": doc_negatives}

    # alerts: the detector's per-series window counters count the same way
    async def alert_negatives(entity: str) -> int:
        key = f"{p.settings.redis_prefix}:alerts:{{{entity}|*}}:neg"
        return sum(int(v) for v in (await p.redis.hgetall(key)).values())

    async def alerts_done() -> bool:
        tot = f"{p.settings.redis_prefix}:alerts:{{TSLA|*}}:tot"
        return sum(int(v) for v in (await p.redis.hgetall(tot)).values()) >= N_SUED

    await wait_for("alert counts", alerts_done, 60, p.workers)
    assert await alert_negatives("TSLA") == N_SUED
    assert await alert_negatives("JPM") == 0
