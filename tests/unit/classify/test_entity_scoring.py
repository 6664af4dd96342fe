"""Entity-level scores in the inference worker: one forward pass per document (the hidden
states come with the probabilities only for batches that need them), agreement with the
model's own ``predict_entities``, poison isolation, and what each entity of a ScoredDoc gets."""
from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
import torch

from bench.common import headlines
from models.sentiment import SentimentModel
from models.sentiment.entities import EntityHead
from models.sentiment.network import tokenizer_file
from services.classify.entities import entity_sentiment, mention_spans
from services.classify.scorer import EntityScore, Scored, ScoreError
from services.classify.worker import InferenceWorker
from services.core.schemas import CleanDoc, Mention

T = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def emodel() -> SentimentModel:
    """The test model with a random entity head (the serving path needs no trained one)."""
    m = SentimentModel.untrained_for_tests(device="cpu", seed=0)
    torch.manual_seed(1)
    head = EntityHead(m.config.hidden_size, len(m.labels)).eval()
    torch.nn.init.normal_(head.head.weight, std=0.5)
    m.set_entity_head(head)
    return m


class _Counting:
    """Counts rows through ``forward`` and ``forward_hidden``; optionally poisons a token."""

    def __init__(self, model: SentimentModel, poison_id: int | None = None) -> None:
        self.model, self.poison_id = model, poison_id
        self.plain = self.hidden = 0
        self._f, self._h = model.forward, model.forward_hidden

    def __enter__(self) -> _Counting:
        def forward(enc):
            self.plain += len(enc)
            return self._f(enc)

        def forward_hidden(enc):
            if self.poison_id is not None and (enc.input_ids == self.poison_id).any():
                raise ValueError("poison")
            self.hidden += len(enc)
            return self._h(enc)

        self.model.forward = forward  # type: ignore[method-assign]
        self.model.forward_hidden = forward_hidden  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc) -> None:
        del self.model.forward, self.model.forward_hidden


def _worker(model, metrics, **kw) -> InferenceWorker:
    kw.setdefault("max_batch", 16)
    kw.setdefault("max_tokens", 1024)
    kw.setdefault("max_wait_ms", 5)
    kw.setdefault("chunk_size", 8)
    return InferenceWorker(model, metrics=metrics, **kw)


def _spans(text: str, *words: str) -> list[list[tuple[int, int]]]:
    return [[(i, i + len(w))] for w in words if (i := text.find(w)) >= 0]


TEXTS = ["JPMorgan sues Tesla over the Autopilot deal", "Apple beats estimates",
         "Goldman upgrades Nvidia while Microsoft slips", "markets were quiet"]
SPANS = [_spans(TEXTS[0], "JPMorgan", "Tesla"), None,
         _spans(TEXTS[2], "Goldman", "Nvidia", "Microsoft"), None]


async def test_entity_scores_agree_with_the_model_and_cost_no_second_pass(emodel, metrics
                                                                          ) -> None:
    with _Counting(emodel) as c:
        async with _worker(emodel, metrics) as w:
            res = await w.submit_many(TEXTS, SPANS)
            rows_with_spans = c.hidden
            plain = await w.submit_many(headlines(12, seed=3))  # no spans: no hidden states
    assert c.plain + c.hidden - 2 == len(TEXTS) + 12  # every row exactly once (+ warm-up)
    assert rows_with_spans >= 2 and c.hidden == rows_with_spans
    assert all(isinstance(r, Scored) and r.entities == () for r in plain)
    ref_docs, ref_ents = emodel.predict_entities(TEXTS, [s or [] for s in SPANS])
    for i, r in enumerate(res):
        assert isinstance(r, Scored)
        np.testing.assert_allclose(list(r.probabilities.values()), ref_docs[i], atol=1e-4)
        if SPANS[i] is None:
            assert r.entities == ()
            continue
        assert len(r.entities) == len(SPANS[i])
        for e, ref in zip(r.entities, ref_ents[i], strict=True):
            assert e.from_entity
            np.testing.assert_allclose(list(e.probabilities.values()), ref, atol=1e-4)
            assert e.label == emodel.labels[int(np.argmax(ref))]


async def test_without_an_entity_head_nothing_extra_runs(model, metrics) -> None:
    assert model.entity_head is None
    with _Counting(model) as c:
        async with _worker(model, metrics) as w:
            res = await w.submit_many(TEXTS, SPANS)
    assert c.hidden == 0
    assert all(isinstance(r, Scored) and r.entities == () for r in res)


async def test_mentions_past_truncation_fall_back_to_the_document(emodel, metrics) -> None:
    text = "word " * 200 + "Tesla recalls cars"
    spans = _spans(text, "word", "Tesla")
    async with _worker(emodel, metrics) as w:
        (r,) = await w.submit_many([text], [spans])
    assert isinstance(r, Scored) and r.truncated
    assert [e.from_entity for e in r.entities] == [True, False]
    assert r.entities[1].probabilities == pytest.approx(r.probabilities, abs=1e-4)


@pytest.mark.parametrize("threshold", [0.05, 0.95])  # pair passes run / the bound skips them
async def test_an_entity_pair_model_decides_in_the_worker_as_in_predict_entities(
        metrics, threshold) -> None:
    """With a pair model (a random low-rank update and head here) the worker's entity labels are
    the model's own ``predict_entities`` ones, and a mention past truncation that the pair
    model read counts as read."""
    from models.sentiment.entity_pair import EntityPairScorer, PairConfig, merge_lora

    m = SentimentModel.untrained_for_tests(device="cpu", seed=2)
    torch.manual_seed(3)
    head = EntityHead(m.config.hidden_size, len(m.labels)).eval()
    torch.nn.init.normal_(head.head.weight, std=0.5)
    m.set_entity_head(head)
    h = m.config.hidden_size
    lora = {"encoder.layer.0.attention.self.query.lora_A": torch.randn(4, h) * 0.1,
            "encoder.layer.0.attention.self.query.lora_B": torch.randn(h, 4) * 0.1}
    cfg = PairConfig(rank=4, mix=0.0, threshold=threshold)  # mix 0: the pair decides
    m.entity_pair = EntityPairScorer(merge_lora(m.network.encoder, lora, 1.0),
                                     torch.randn(2, h) * 0.5, torch.zeros(2), cfg,
                                     tokenizer_file(m.config.base_model),
                                     m.text_encoder.normalize)
    long = "word " * 200 + "Tesla recalls cars"
    texts = [*TEXTS[:3], long]
    spans = [*SPANS[:3], _spans(long, "word", "Tesla")]
    async with _worker(m, metrics) as w:
        res = await w.submit_many(texts, spans)
    _, ref = m.predict_entities(texts, [s or [] for s in spans])
    for i, r in enumerate(res):
        assert isinstance(r, Scored) and len(r.entities) == len(spans[i] or [])
        if spans[i]:
            got = [list(e.probabilities.values()) for e in r.entities]
            np.testing.assert_allclose(got, ref[i], atol=1e-4)
    assert res[3].truncated
    assert res[3].entities[1].from_entity  # past truncation: decided by the pair rule
    if threshold > 0.9:  # nothing can pass: no entity is negative
        assert not any(e.label == "negative" for r in res for e in r.entities)


async def test_an_english_pair_model_labels_multi_entity_texts_in_one_call_per_batch(
        metrics) -> None:
    """The ``sentiment`` kind (English): entities of texts naming two or more get the pair
    model's mix, as in ``predict_entities``; all pair passes of a batch run as one call; a
    text naming one entity keeps the head's scores."""
    from models.sentiment.entity_pair import EntityPairScorer, PairConfig, merge_lora

    m = SentimentModel.untrained_for_tests(device="cpu", seed=2)
    torch.manual_seed(4)
    m.set_entity_head(EntityHead(m.config.hidden_size, len(m.labels)).eval())
    h = m.config.hidden_size
    lora = {"encoder.layer.1.output.dense.lora_A": torch.randn(4, 4 * h) * 0.05,
            "encoder.layer.1.output.dense.lora_B": torch.randn(h, 4) * 0.05}
    cfg = PairConfig(kind="sentiment", rank=4, mix=0.3, window=400, before=200, max_length=64)
    m.entity_pair = EntityPairScorer(merge_lora(m.network.encoder, lora, 1.0),
                                     torch.randn(3, h) * 0.5, torch.zeros(3), cfg,
                                     tokenizer_file(m.config.base_model),
                                     m.text_encoder.normalize)
    texts = ["Tesla sues Apple over patents", "Apple shares rise", "Nvidia beats Tesla on sales"]
    spans = [_spans(texts[0], "Tesla", "Apple"), _spans(texts[1], "Apple"),
             _spans(texts[2], "Nvidia", "Tesla")]
    _, ref = m.predict_entities(texts, spans)
    pair, plain = m.entity_pair, None
    m.entity_pair = None
    _, plain = m.predict_entities(texts, spans)
    m.entity_pair = pair
    calls = []
    real = pair.probs
    pair.probs = lambda p, **kw: calls.append(len(p)) or real(p, **kw)
    async with _worker(m, metrics, max_wait_ms=200) as w:
        res = await w.submit_many(texts, spans)
    assert calls == [4]  # one batch: the four entities of the two multi-entity texts
    for i, r in enumerate(res):
        got = [list(e.probabilities.values()) for e in r.entities]
        np.testing.assert_allclose(got, ref[i], atol=1e-4)
    np.testing.assert_allclose(ref[1], plain[1], atol=1e-6)  # one entity: the head's
    assert not np.allclose(ref[0], plain[0], atol=1e-3)  # two: revised by the pair model


async def test_a_poison_row_is_isolated_and_its_neighbours_keep_their_entities(
        emodel, metrics) -> None:
    texts = [*TEXTS, "kangaroo sues Tesla"]
    spans = [*SPANS, _spans("kangaroo sues Tesla", "Tesla")]
    poison = emodel.text_encoder.tokenizer.encode("kangaroo").ids[1]
    with _Counting(emodel, poison_id=poison):
        async with _worker(emodel, metrics, max_batch=32, max_tokens=4096, chunk_size=32,
                           max_wait_ms=50) as w:
            res = await w.submit_many(texts, spans)
    assert isinstance(res[4], ScoreError) and "poison" in res[4].message
    _, ref_ents = emodel.predict_entities(TEXTS, [s or [] for s in SPANS])
    for i in (0, 2):
        got = [list(e.probabilities.values()) for e in res[i].entities]
        np.testing.assert_allclose(got, ref_ents[i], atol=1e-4)


def _clean(**over) -> CleanDoc:
    values = dict(doc_id="news:w:1", kind="news", source="w", source_id="1",
                  text="JPMorgan sues Tesla", published_at=T, ingested_at=T,
                  entities=["GS", "JPM", "TSLA"],
                  mentions=[Mention(entity="JPM", spans=[(0, 8)]),
                            Mention(entity="TSLA", spans=[(14, 19)])])
    values.update(over)
    return CleanDoc(**values)


def test_every_entity_gets_its_own_or_the_documents_sentiment() -> None:
    doc = _clean()
    ents, spans = mention_spans(doc)
    assert ents == ["JPM", "TSLA"] and spans == [[(0, 8)], [(14, 19)]]
    neg = {"negative": 0.9, "neutral": 0.05, "positive": 0.05}
    neu = {"negative": 0.1, "neutral": 0.8, "positive": 0.1}
    scored = Scored("negative", neg, "v1", False,
                    (EntityScore("neutral", neu, True), EntityScore("negative", neg, True)))
    got = entity_sentiment(doc, scored, ents)
    assert [(e.entity, e.label, e.source) for e in got] == [
        ("GS", "negative", "document"),  # the producer named it; the text does not
        ("JPM", "neutral", "entity"), ("TSLA", "negative", "entity")]
    # a model without an entity head: every entity takes the document's sentiment
    plain = entity_sentiment(doc, Scored("negative", neg, "v1"), ents)
    assert [(e.label, e.source) for e in plain] == [("negative", "document")] * 3
    # an old message without mentions submits nothing
    assert mention_spans(_clean(mentions=[])) == ([], [])
