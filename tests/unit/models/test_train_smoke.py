"""2-step full and LoRA training on ~40 synthetic rows with a tiny random BERT base:
checks the training loop, the checkpoint format and reload, not model quality."""
import json

import numpy as np
import pytest

from models.finetune.datasets import Example, stratified_split
from models.finetune.train import TrainConfig, class_weights, length_grouped_batches, train
from models.sentiment import ModelConfig, SentimentModel
from models.sentiment.network import load_classifier

from .conftest import synthetic_rows


@pytest.fixture(scope="module")
def splits():
    exs = [Example(t, lab, "synthetic", i) for i, (t, lab) in enumerate(synthetic_rows(42))]
    return stratified_split(exs, 0.25, seed=0)


@pytest.mark.parametrize("method", ["full", "lora"])
def test_two_step_training_writes_loadable_checkpoint(method, splits, tiny_base, tmp_path):
    tr, dev = splits
    cfg = TrainConfig(base=str(tiny_base), method=method, max_steps=2, batch_size=8,
                      max_length=32, evals_per_epoch=4, progress=False, version=f"t-{method}")
    res = train(cfg, tr, dev, tmp_path / method)
    assert res.steps == 2 and 0.0 <= res.dev_metrics["macro_f1"] <= 1.0
    folder = res.path
    mcfg = ModelConfig.load(folder)
    assert mcfg.method == method and mcfg.base_model == str(tiny_base) and mcfg.max_length == 32
    assert (folder / ("adapter" if method == "lora" else "encoder")).is_dir()
    assert json.loads((folder / "train_history.json").read_text())
    sm = SentimentModel.from_checkpoint(folder, device="cpu", backend="fp32")
    assert sm.version == f"t-{method}" and sm.max_length == 32
    preds = sm.predict_batch(["$AAPL soars", "", "x" * 10_000])
    assert [p.truncated for p in preds] == [False, False, True]
    net, _ = load_classifier(folder, device="cpu")
    assert not any(hasattr(m, "lora_A") for m in net.modules())  # LoRA merged at load
    if method == "lora":
        size = sum(f.stat().st_size for f in (folder / "adapter").rglob("*") if f.is_file())
        assert size < 1_000_000


def test_training_is_seeded(splits, tiny_base, tmp_path):
    tr, dev = splits
    outs = []
    for run in ("a", "b"):
        cfg = TrainConfig(base=str(tiny_base), max_steps=2, batch_size=8, max_length=32,
                          progress=False)
        train(cfg, tr, dev, tmp_path / run)
        sm = SentimentModel.from_checkpoint(tmp_path / run, device="cpu", backend="fp32")
        outs.append(sm.forward(sm.encode(["stock soars", "stock plunges"])))
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-6)


def test_class_weights_and_length_grouping():
    y = np.array([0] * 10 + [1] * 40 + [2] * 50)
    w = class_weights(y, "sqrt", 3).numpy()
    assert w[0] > w[1] > w[2] and abs((w[y]).mean() - 1) < 1e-5
    assert class_weights(y, "none", 3) is None
    lengths = np.random.default_rng(0).integers(3, 64, 101)
    batches = length_grouped_batches(lengths, 8, np.random.default_rng(1), group=4)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(101))
