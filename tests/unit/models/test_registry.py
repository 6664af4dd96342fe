import json

import pytest

from models.gate import Gate
from models.registry import Registry, RegistryError, production
from models.sentiment.config import ModelConfig


def fake_checkpoint(path, version="dev"):
    """Structurally valid checkpoint folder (the registry never loads weights)."""
    (path / "encoder").mkdir(parents=True)
    (path / "encoder" / "model.safetensors").write_bytes(b"x" * 16)
    (path / "head.safetensors").write_bytes(b"x" * 16)
    (path / "tokenizer.json").write_text("{}")
    ModelConfig(version=version).save(path)
    return path


def metrics(f1, neg_recall, eval_set="valid.csv"):
    return {"accuracy": f1, "macro_f1": f1, "eval_set": eval_set, "n": 10,
            "per_class": {"negative": {"precision": 1, "recall": neg_recall, "f1": 1,
                                       "support": 3}}}


@pytest.fixture
def reg(tmp_path):
    return Registry(tmp_path / "reg")


def register(reg, tmp_path, name, f1, rec):
    return reg.register(fake_checkpoint(tmp_path / f"ck-{name}"), metrics(f1, rec), version=name)


def test_no_production_says_what_to_do(reg):
    with pytest.raises(RegistryError, match="no production model in .*make model"):
        reg.production()
    assert production(reg.root) is None


def test_register_list_card_and_first_promotion(reg, tmp_path):
    v = register(reg, tmp_path, "v1", 0.85, 0.8)
    assert v == "v1" and [m.version for m in reg.list()] == ["v1"]
    card = (reg.versions_dir / "v1" / "MODEL_CARD.md").read_text()
    assert "macro-F1 0.8500" in card
    assert ModelConfig.load(reg.versions_dir / "v1").version == "v1"
    assert reg.promote("v1")
    path, version = reg.production()
    assert version == "v1" and path == reg.versions_dir / "v1"
    assert production(reg.root).version == "v1"
    with pytest.raises(RegistryError, match="already exists"):
        register(reg, tmp_path / "again", "v1", 0.9, 0.9)


def test_gate_rejects_f1_drop_and_negative_recall_drop(reg, tmp_path):
    register(reg, tmp_path, "v1", 0.85, 0.80)
    reg.promote("v1")
    register(reg, tmp_path, "worse_f1", 0.83, 0.90)
    register(reg, tmp_path, "worse_rec", 0.86, 0.79)
    register(reg, tmp_path, "within_tol", 0.848, 0.80)
    assert not reg.promote("worse_f1")
    assert not reg.promote("worse_rec")
    assert reg.production()[1] == "v1"
    assert reg.promote("within_tol", gate=Gate(f1_tolerance=0.005))
    assert reg.production()[1] == "within_tol"
    decisions = reg.decisions()
    assert [d["accepted"] for d in decisions] == [True, False, False, True]
    assert "macro_f1" in decisions[1]["reasons"][0]
    assert "negative recall" in decisions[2]["reasons"][1]


def test_gate_refuses_different_eval_sets():
    ok, reasons = Gate().check(metrics(0.9, 0.9, "a.csv"), metrics(0.8, 0.8, "b.csv"))
    assert not ok and "eval sets differ" in reasons[0]


def test_rollback_restores_previous(reg, tmp_path):
    register(reg, tmp_path, "v1", 0.85, 0.8)
    register(reg, tmp_path, "v2", 0.86, 0.8)
    reg.promote("v1")
    reg.promote("v2")
    assert reg.rollback() == "v1" and reg.production()[1] == "v1"
    with pytest.raises(RegistryError, match="nothing to roll back"):
        reg.rollback()


def test_corrupt_or_missing_folder_leaves_pointer_untouched(reg, tmp_path):
    register(reg, tmp_path, "v1", 0.85, 0.8)
    reg.promote("v1")
    pointer = (reg.root / "production.json").read_text()
    register(reg, tmp_path, "v2", 0.9, 0.9)
    (reg.versions_dir / "v2" / "head.safetensors").unlink()
    with pytest.raises(RegistryError, match="corrupt: missing head.safetensors"):
        reg.promote("v2")
    with pytest.raises(RegistryError, match="missing"):
        reg.promote("nope")
    (reg.versions_dir / "v1" / "yuqing_model.json").write_text("{broken")
    with pytest.raises(RegistryError, match="corrupt"):
        reg.production()
    assert (reg.root / "production.json").read_text() == pointer
    with pytest.raises(RegistryError, match="corrupt"):
        reg.register(tmp_path / "missing-dir", {})


def test_pointer_is_valid_json_with_history(reg, tmp_path):
    register(reg, tmp_path, "v1", 0.85, 0.8)
    register(reg, tmp_path, "v2", 0.86, 0.8)
    reg.promote("v1")
    reg.promote("v2")
    ptr = json.loads((reg.root / "production.json").read_text())
    assert ptr["version"] == "v2" and ptr["history"] == ["v1"] and ptr["path"] == "versions/v2"
    assert not [p for p in reg.root.iterdir() if p.name.endswith(".tmp")]


def test_gate_guard_set_blocks_news_regression():
    prod = {**metrics(0.82, 0.76), "evals": {"semeval2017_headlines.csv": {"macro_f1": 0.84}}}
    cand = {**metrics(0.83, 0.79), "evals": {"semeval2017_headlines.csv": {"macro_f1": 0.66}}}
    ok, reasons = Gate().check(cand, prod)
    assert not ok and "semeval2017_headlines.csv macro_f1 0.6600 < production" in reasons[-1]
    cand["evals"]["semeval2017_headlines.csv"]["macro_f1"] = 0.83
    assert Gate().check(cand, prod)[0]
    del cand["evals"]  # not measured on both: primary checks only
    assert Gate().check(cand, prod)[0]
