"""The entity pair model: its decision rule (and the exact bound that skips pair passes), the
compressed update and its merge, loading and refusing broken files, and the serving path."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from models.finetune.datasets import DataError
from models.finetune.entity_pair import (
    Pair,
    PairTrain,
    build_pairs,
    epoch_batches,
    f1_at,
    record_shipped,
    save,
    select,
    train_pair,
)
from models.finetune.sources_zh import NewsDoc
from models.sentiment.entity_pair import (
    PAIR_CONFIG_FILE,
    PAIR_WEIGHTS_FILE,
    EntityPairScorer,
    PairConfig,
    apply_pair,
    could_pass,
    mix_probs,
    mixed_negative,
    pair_window,
)
from models.ship import manifest as mf
from models.text import LABELS
from tests.model_helpers import make_tiny_checkpoint

NEG = LABELS.index("negative")
SHIPPED_ZH = Path(__file__).resolve().parents[3] / "models/shipped/zh"


def test_the_label_is_negative_exactly_when_the_mixed_score_passes_the_threshold():
    rng = np.random.default_rng(0)
    cfg = PairConfig(mix=0.4, threshold=0.35)
    ent = rng.dirichlet([1, 1, 1], size=200).astype(np.float32)
    key = rng.random(200).astype(np.float32)
    for doc_neg in (0.05, 0.5, 0.95):
        out = apply_pair(ent, doc_neg, key, np.arange(200), cfg, LABELS)
        score = mixed_negative(ent[:, NEG], np.float32(doc_neg), key, cfg.mix)
        assert np.allclose(out.sum(1), 1.0, atol=1e-5)
        assert ((out.argmax(1) == NEG) == (score > cfg.threshold)).all()
        # the two other labels keep the head's order
        other = [i for i in range(3) if i != NEG]
        assert (out[:, other].argmax(1) == ent[:, other].argmax(1)).all()


def test_the_rule_holds_at_the_threshold_and_for_a_one_hot_head():
    cfg = PairConfig(mix=0.0, threshold=0.35)
    ent = np.array([[1.0, 0.0, 0.0], [0.2, 0.5, 0.3]], np.float32)
    key = np.array([0.1, np.float32(0.35) / np.float32(0.9)], np.float32)
    out = apply_pair(ent, 0.9, key, np.arange(2), cfg, LABELS)
    assert (out >= 0).all() and np.allclose(out.sum(1), 1.0, atol=1e-5)
    score = mixed_negative(ent[:, NEG], np.float32(0.9), key, cfg.mix)
    assert ((out.argmax(1) == NEG) == (score > cfg.threshold)).all()


def test_rows_left_out_keep_their_probabilities():
    ent = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]], np.float32)
    out = apply_pair(ent, 0.9, np.array([0.0], np.float32), np.array([0]), PairConfig(), LABELS)
    assert out[0].argmax() != NEG and np.array_equal(out[1], ent[1])


def test_skipping_the_pair_pass_changes_no_label():
    """Where even key = 1 cannot pass the threshold, no key can."""
    rng = np.random.default_rng(1)
    cfg = PairConfig(mix=0.3, threshold=0.4)
    head, key = rng.random(500), rng.random(500)
    for doc_neg in rng.random(20):
        skipped = ~could_pass(head, doc_neg, cfg)
        assert not (mixed_negative(head, doc_neg, key, cfg.mix)[skipped] > cfg.threshold).any()


def test_the_window_starts_before_the_mention_and_is_normalised():
    cfg = PairConfig(window=10, before=3)
    text = "ＡＢＣ公告称，某某银行被立案调查，股价大跌"
    start = text.find("某某银行")
    w = pair_window(text, start, cfg, lambda s: s.replace("，", ","))
    assert w.startswith("告称,某某银行") and len(w) == 10


def test_markers_wrap_the_entity_and_the_others_inside_the_window_only():
    cfg = PairConfig(window=14, before=2, markers=True)
    text = "公告：甲银行称乙平台逾期，乙平台回应，丙公司"
    a, b, c = text.find("甲银行"), text.find("乙平台"), text.find("丙公司")
    target = [(b, b + 3), (text.find("乙平台", b + 1), text.find("乙平台", b + 1) + 3)]
    w = pair_window(text, b, cfg, lambda s: s, (target, [(a, a + 3), (c, c + 3)]))
    # 甲银行 starts before the window, 丙公司 lies past it: neither is marked
    assert w == "行称«乙平台»逾期，«乙平台»回应，"
    assert pair_window(text, b, PairConfig(window=14, before=2), lambda s: s,
                       (target, [(a, a + 3)])) == text[b - 2 : b + 12]  # off: plain window


def test_markers_skip_a_mention_overlapping_one_already_marked():
    cfg = PairConfig(window=20, before=0, markers=True)
    text = "中国平安银行公告"
    w = pair_window(text, 0, cfg, lambda s: s, ([(2, 6)], [(0, 4)]))
    assert w == "〈中国平安〉银行公告"


def test_training_pairs_are_built_as_serving_builds_them(tmp_path, tiny_base):
    """Same window for the same entity, from build_pairs (training) and pairs_of (serving)."""
    from models.finetune.sources_zh import uncovered_spans

    cfg = PairConfig(markers=True)
    doc = NewsDoc("众车在线逾期，托管银行甲银行回应，众车在线称", ("众车在线", "甲银行"),
                  frozenset({"众车在线"}), True, 0)
    rows = build_pairs([doc], cfg, lambda s: s, negative_only=True)
    scorer = EntityPairScorer.__new__(EntityPairScorer)
    scorer.cfg, scorer.normalize = cfg, lambda s: s
    spans = [uncovered_spans(doc.text, e, doc.entities) for e in doc.entities]
    assert [(r.entity, r.window) for r in rows] == scorer.pairs_of(doc.text, spans, [0, 1])
    assert rows[0].window.count("«众车在线»") == 2 and "〈甲银行〉" in rows[0].window


def test_pairs_come_from_negative_items_and_skip_covered_mentions():
    docs = [NewsDoc("众车在线逾期，众车在线的托管银行甲银行回应", ("众车", "众车在线", "甲银行"),
                    frozenset({"众车在线"}), True, 0),
            NewsDoc("乙公司发布年报", ("乙公司",), frozenset(), False, 1)]
    rows = build_pairs(docs, PairConfig(), lambda s: s, negative_only=True)
    assert [(r.entity, r.key) for r in rows] == [("众车在线", 1), ("甲银行", 0)]


def test_select_and_f1_count_missed_entities():
    rows = np.array([[0.9, 0.9, 0.9, 1], [0.9, 0.9, 0.1, 0], [0.1, 0.2, 0.9, 0]])
    assert f1_at(rows, 0, 0.0, 0.5) == 1.0
    assert f1_at(rows, 1, 0.0, 0.5) == pytest.approx(2 / 3)  # one key entity never linked
    mix, th, f = select(rows, 0)
    assert f == 1.0 and 0.0 <= mix <= 1.0


@pytest.fixture(scope="module")
def zh_checkpoint(tmp_path_factory, tiny_base) -> Path:
    folder = tmp_path_factory.mktemp("zh") / "ck"
    return make_tiny_checkpoint(folder, tiny_base, language="zh", version="zh-tiny")


@pytest.fixture(scope="module")
def trained(zh_checkpoint) -> tuple[Path, dict]:
    """A pair model trained a few steps on toy pairs; its files saved in the checkpoint."""
    from models.sentiment import SentimentModel

    model = SentimentModel.from_checkpoint(zh_checkpoint, device="cpu", backend="fp32")
    cfg = PairConfig(rank=32, base_version=model.version)  # the tiny base is 32 wide: whole
    rows = [Pair(0, e, f"{e} 逾期 被起诉" if k else f"{e} 托管 回应", k)
            for k in (0, 1) for e in ("甲公司", "乙银行", "丙平台")]
    weights, fidelity = train_pair(model.network.encoder, [(r.entity, r.window) for r in rows],
                                   [r.key for r in rows], cfg,
                                   PairTrain(epochs=4, batch_size=3, lr=1e-2, threads=1),
                                   zh_checkpoint / "tokenizer.json", model.text_encoder.normalize)
    assert fidelity["largest_difference"] < 1e-3 and fidelity["same_top_class"] == 1.0
    save(zh_checkpoint, weights, cfg, {"model_version": model.version})
    return zh_checkpoint, weights


def test_compress_keeps_a_low_rank_update_exactly_and_small_tensors_whole():
    from torch import nn

    from models.finetune.entity_pair import compress
    from models.sentiment.entity_pair import merge_lora

    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(16, 12), nn.LayerNorm(12))
    tuned = __import__("copy").deepcopy(base)
    with torch.no_grad():
        tuned[0].weight += torch.randn(12, 2) @ torch.randn(2, 16)  # a rank-2 update
        tuned[1].bias += 0.5
    w = compress(tuned, base, rank=2)
    assert set(w) == {"0.lora_A", "0.lora_B", "1.bias.delta"}  # unchanged tensors not stored
    assert all(t.dtype == torch.float16 for t in w.values())
    merged = merge_lora(base, w, 1.0)
    x = torch.randn(5, 16)
    assert torch.allclose(merged(x), tuned(x), atol=2e-2)
    with pytest.raises(ValueError, match="not a parameter"):
        merge_lora(base, {"1.weight.delta": torch.zeros(3)}, 1.0)


def test_training_yields_a_merge_equal_to_the_adapter_and_serving_loads_it(trained):
    """The saved files load back into the served model, which changes only what the rule
    allows."""
    from models.sentiment import SentimentModel

    folder, weights = trained
    assert any(k.endswith(".delta") and weights[k].abs().sum() > 0 for k in weights)
    assert not any("pooler" in k or "word_embeddings" in k for k in weights)  # never trained
    model = SentimentModel.from_checkpoint(folder, device="cpu", backend="fp32")
    assert isinstance(model.entity_pair, EntityPairScorer)
    texts = ["甲公司逾期，乙银行回应", "丙平台发布公告"]
    spans = [[[(0, 3)], [(6, 9)]], [[(0, 3)]]]
    doc_p, ents = model.predict_entities(texts, spans)
    assert [e.shape for e in ents] == [(2, 3), (1, 3)]
    assert np.allclose(ents[0].sum(1), 1.0, atol=1e-5)
    cfg = model.entity_pair.cfg
    for i in range(2):
        pair, model.entity_pair = model.entity_pair, None
        _, plain = model.predict_entities(texts, spans)
        model.entity_pair = pair
        bound = could_pass(plain[i][:, NEG], doc_p[i][NEG], cfg)
        # an entity that cannot pass is not negative, whatever the pair model says
        assert not (ents[i].argmax(1) == NEG)[~bound].any()


def test_the_pair_pass_runs_only_where_it_can_change_a_label(trained):
    from models.sentiment import SentimentModel

    model = SentimentModel.from_checkpoint(trained[0], device="cpu", backend="fp32")
    pair = model.entity_pair
    calls = []
    real = pair.probs
    pair.probs = lambda pairs, **kw: calls.append(len(pairs)) or real(pairs, **kw)
    ent = np.array([[0.6, 0.3, 0.1], [0.01, 0.9, 0.09]], np.float32)
    spans = [[(0, 3)], [(6, 9)]]
    pair.cfg.mix, pair.cfg.threshold = 0.5, 0.35
    out, read = pair.score_document("甲公司逾期，乙银行回应", spans,
                                    np.array([0.9, 0.05, 0.05], np.float32), ent, LABELS)
    assert calls == [1] and read.tolist() == [0, 1]  # one pass: the bystander's bound < 0.35
    assert out[1].argmax() != NEG
    calls.clear()
    pair.score_document("甲公司逾期，乙银行回应", spans, np.array([0.01, 0.9, 0.09], np.float32),
                        ent, LABELS)
    assert calls == []  # a text that is not negative costs no pair pass


def test_broken_pair_files_are_refused_with_what_to_run(trained, tmp_path):
    from models.sentiment import SentimentModel

    folder = tmp_path / "ck"
    shutil.copytree(trained[0], folder)
    (folder / PAIR_WEIGHTS_FILE).write_bytes((folder / PAIR_WEIGHTS_FILE).read_bytes()[:100])
    with pytest.raises(ValueError, match="make model-pair-zh"):
        SentimentModel.from_checkpoint(folder, device="cpu", backend="fp32")
    (folder / PAIR_WEIGHTS_FILE).unlink()  # one half alone is refused too
    with pytest.raises(ValueError, match="entity pair model is unusable"):
        SentimentModel.from_checkpoint(folder, device="cpu", backend="fp32")
    (folder / PAIR_CONFIG_FILE).unlink()  # neither: no pair model, the head alone serves
    assert SentimentModel.from_checkpoint(folder, device="cpu", backend="fp32").entity_pair is None


@pytest.mark.skipif(not (SHIPPED_ZH / "manifest.json").is_file(), reason="no shipped zh model")
def test_recording_in_a_shipped_folder_keeps_its_manifest_valid(trained, tmp_path):
    folder = tmp_path / "zh"
    shutil.copytree(SHIPPED_ZH, folder, ignore=shutil.ignore_patterns("delta.safetensors"))
    with pytest.raises(DataError, match="ships"):
        record_shipped(trained[0], folder)  # the tiny checkpoint is another version
    ck = tmp_path / "ck"
    shutil.copytree(trained[0], ck)
    cfg = json.loads((ck / "yuqing_model.json").read_text())
    cfg["version"] = mf.read_manifest(folder)["version"]
    (ck / "yuqing_model.json").write_text(json.dumps(cfg))
    record_shipped(ck, folder)
    m = mf.read_manifest(folder)
    for name in (PAIR_CONFIG_FILE, PAIR_WEIGHTS_FILE, "eval-entity-pair.json"):
        assert name in m["extra_files"] and m["files"][name] == mf.file_entry(folder / name)
    assert m["total_bytes"] == sum(e["bytes"] for e in m["files"].values())
    (ck / mf.MODEL_CARD).write_text("# card with the entity section\n")
    record_shipped(ck, folder, card=True)  # the English step also ships the updated card
    m = mf.read_manifest(folder)
    assert (folder / mf.MODEL_CARD).read_text() == "# card with the entity section\n"
    assert m["files"][mf.MODEL_CARD] == mf.file_entry(folder / mf.MODEL_CARD)
    assert mf.MODEL_CARD not in m["extra_files"]
    assert m["total_bytes"] == sum(e["bytes"] for e in m["files"].values())
    torch.manual_seed(0)  # keep later tests' RNG independent of this one


# ---------------------------------------------------------------- English: the sentiment kind
def test_mix_probs_spans_head_to_pair_and_stays_a_distribution():
    head = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], np.float32)
    pair = np.array([[0.1, 0.2, 0.7], [0.6, 0.3, 0.1]], np.float32)
    assert np.allclose(mix_probs(head, pair, 1.0), head, atol=1e-5)
    assert np.allclose(mix_probs(head, pair, 0.0), pair, atol=1e-5)
    half = mix_probs(head, pair, 0.5)
    assert np.allclose(half.sum(1), 1.0, atol=1e-5)
    assert np.allclose(half[0], np.sqrt(head[0] * pair[0]) / np.sqrt(head[0] * pair[0]).sum())


def test_grouped_batches_cover_each_row_once_with_similar_lengths():
    import random

    lengths = [(i * 37) % 113 + 5 for i in range(1000)]
    batches = epoch_batches(1000, 16, random.Random(0), lengths)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    spread = np.mean([max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches])
    plain = epoch_batches(1000, 16, random.Random(0))
    spread_plain = np.mean([max(lengths[i] for i in b) - min(lengths[i] for i in b)
                            for b in plain])
    assert spread < spread_plain / 5


def test_plain_batches_are_the_shipped_zh_recipes_order():
    """Without lengths, the batches are those the zh pair model was trained with (drawn from
    the end of a fresh shuffle, a short tail dropped), so make model-pair-zh still rebuilds it."""
    import random

    def recipe(n, bs, steps):
        rng, order, out = random.Random(0), [], []
        for _ in range(steps):
            if len(order) < bs:
                order = rng.sample(range(n), n)
            out.append([order.pop() for _ in range(min(bs, len(order)))])
        return out

    def now(n, bs, steps):
        rng, batches, out = random.Random(0), [], []
        for _ in range(steps):
            if not batches:
                batches = epoch_batches(n, bs, rng)
            out.append(batches.pop())
        return out

    for n, bs in [(100, 16), (3, 16), (35, 5)]:
        assert recipe(n, bs, 40) == now(n, bs, 40)


@pytest.fixture(scope="module")
def en_trained(tmp_path_factory, tiny_base) -> Path:
    """An English checkpoint with a sentiment-kind pair model trained a few steps."""
    from models.sentiment import SentimentModel

    folder = make_tiny_checkpoint(tmp_path_factory.mktemp("en") / "ck", tiny_base,
                                  language="en", version="en-tiny")
    model = SentimentModel.from_checkpoint(folder, device="cpu", backend="fp32")
    cfg = PairConfig(kind="sentiment", rank=32, mix=0.0, base_version=model.version,
                     window=400, before=200, max_length=64)
    pairs = [("Acme", "Acme sues Beta"), ("Beta", "Acme sues Beta"),
             ("Gamma", "Gamma beats estimates"), ("Delta", "Delta misses")]
    weights, _ = train_pair(model.network.encoder, pairs, [1, 0, 2, 0], cfg,
                            PairTrain(epochs=2, batch_size=2, lr=1e-2, threads=1,
                                      length_grouped=True),
                            folder / "tokenizer.json", model.text_encoder.normalize,
                            [1.0, 2.0, 1.0, 1.0])
    assert tuple(weights["head.weight"].shape)[0] == 3
    save(folder, weights, cfg, {"model_version": model.version})
    return folder


def test_the_sentiment_kind_decides_texts_with_two_entities_only(en_trained):
    from models.sentiment import SentimentModel

    model = SentimentModel.from_checkpoint(en_trained, device="cpu", backend="fp32")
    pair = model.entity_pair
    assert pair is not None and pair.cfg.kind == "sentiment"
    text = "Acme sues Beta"
    ent = np.array([[0.2, 0.6, 0.2], [0.3, 0.4, 0.3]], np.float32)
    out, rows = pair.score_document(text, [[(0, 4)], [(10, 14)]], ent[0], ent, LABELS)
    want = pair.probs([("Acme", text), ("Beta", text)])
    assert rows.tolist() == [0, 1] and np.allclose(out, want, atol=1e-5)  # mix 0: the pair's
    pair.cfg.mix = 1.0
    out, _ = pair.score_document(text, [[(0, 4)], [(10, 14)]], ent[0], ent, LABELS)
    assert np.allclose(out, ent, atol=1e-5)  # mix 1: the head's
    calls = []
    real = pair.probs
    pair.probs = lambda p, **kw: calls.append(len(p)) or real(p, **kw)
    out, rows = pair.score_document(text, [[(0, 4)], []], ent[0], ent, LABELS)
    assert calls == [] and rows.tolist() == [] and np.array_equal(out, ent)  # one entity linked
    _, ents = model.predict_entities([text, "Acme rises"], [[[(0, 4)], [(10, 14)]], [[(0, 4)]]])
    assert calls == [2] and [e.shape for e in ents] == [(2, 3), (1, 3)]


def test_a_pair_file_of_the_wrong_kind_or_size_is_refused(en_trained, tmp_path):
    from models.sentiment import SentimentModel

    folder = tmp_path / "ck"
    shutil.copytree(en_trained, folder)
    raw = json.loads((folder / PAIR_CONFIG_FILE).read_text())
    (folder / PAIR_CONFIG_FILE).write_text(json.dumps({**raw, "kind": "subject"}))
    with pytest.raises(ValueError, match=r"make model-pair\)"):  # English: not the zh target
        SentimentModel.from_checkpoint(folder, device="cpu", backend="fp32")
    (folder / PAIR_CONFIG_FILE).write_text(json.dumps({**raw, "kind": "stance"}))
    with pytest.raises(ValueError, match="kind 'stance'"):
        SentimentModel.from_checkpoint(folder, device="cpu", backend="fp32")


def test_batched_documents_get_exactly_their_own_pairs_back(en_trained, trained):
    """Several documents of different lengths (one with nothing to pass between others) in
    one call: each gets what its own pairs give, computed here unsorted and by hand."""
    from models.sentiment import SentimentModel

    en = SentimentModel.from_checkpoint(en_trained, device="cpu", backend="fp32").entity_pair
    docs = [("Acme Corporation sues Beta over a very long patent dispute", [[(0, 16)], [(22, 26)]]),
            ("Gamma rises", [[(0, 5)]]),  # one entity: no pass
            ("Delta misses; Epsilon Holdings International gains", [[(0, 5)], [(14, 44)]])]
    rng = np.random.default_rng(5)
    ents = [rng.dirichlet([1, 1, 1], size=len(sp)).astype(np.float32) for _, sp in docs]
    doc_p = np.array([0.5, 0.3, 0.2], np.float32)
    got = en.score_documents([(t, sp, doc_p, e) for (t, sp), e in zip(docs, ents, strict=True)],
                             LABELS)
    for (text, sp), e, (probs, rows) in zip(docs, ents, got, strict=True):
        if len(sp) < 2:
            assert rows.tolist() == [] and np.array_equal(probs, e)
            continue
        want = mix_probs(e, en.probs(en.pairs_of(text, sp, range(len(sp)))), en.cfg.mix)
        assert rows.tolist() == list(range(len(sp)))
        np.testing.assert_allclose(probs, want, atol=1e-5)

    zh = SentimentModel.from_checkpoint(trained[0], device="cpu", backend="fp32").entity_pair
    zh.cfg.mix, zh.cfg.threshold = 0.5, 0.3
    zdocs = [("甲公司逾期，乙银行回应", [[(0, 3)], [(6, 9)]], np.array([0.9, 0.05, 0.05], np.float32)),
             ("丙平台发布公告", [[(0, 3)]], np.array([0.01, 0.9, 0.09], np.float32)),  # no pass
             ("丁集团被立案调查", [[(0, 3)]], np.array([0.8, 0.1, 0.1], np.float32))]
    heads = [np.tile(np.array([[0.6, 0.3, 0.1]], np.float32), (len(sp), 1)) for _, sp, _ in zdocs]
    got = zh.score_documents([(t, sp, d, h) for (t, sp, d), h in zip(zdocs, heads, strict=True)],
                             LABELS)
    for (text, sp, d), h, (probs, _) in zip(zdocs, heads, got, strict=True):
        rows = np.arange(len(sp))
        need = np.flatnonzero(could_pass(h[:, NEG], float(d[NEG]), zh.cfg))
        key = np.ones(len(sp), np.float32)
        if len(need):
            key[need] = zh.key_probs(zh.pairs_of(text, sp, need.tolist()))
        np.testing.assert_allclose(probs, apply_pair(h, float(d[NEG]), key, rows, zh.cfg, LABELS),
                                   atol=1e-5)


def test_the_merged_encoder_shares_only_what_the_update_leaves_alone(en_trained):
    from models.sentiment import SentimentModel

    model = SentimentModel.from_checkpoint(en_trained, device="cpu", backend="fp32")
    doc, pair = model.network.encoder, model.entity_pair.encoder
    assert pair.embeddings.word_embeddings.weight is doc.embeddings.word_embeddings.weight
    changed = [n for n, p in pair.named_parameters()
               if p is not dict(doc.named_parameters())[n]]
    assert changed and all("word_embeddings" not in n for n in changed)
    before = model.predict(["Acme sues Beta"])[0].probabilities
    _ = model.predict_entities(["Acme sues Beta"], [[[(0, 4)], [(10, 14)]]])  # pair passes
    assert model.predict(["Acme sues Beta"])[0].probabilities == before  # nothing wrote it
