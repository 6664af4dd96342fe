"""One production pointer per language: English keeps production.json, zh has its own."""
import json

from models.gate import ZH_GATE, gate_for
from models.registry import Registry, production
from models.sentiment.config import ModelConfig


def ckpt(path, language):
    (path / "encoder").mkdir(parents=True)
    (path / "encoder" / "model.safetensors").write_bytes(b"x" * 16)
    (path / "head.safetensors").write_bytes(b"x" * 16)
    (path / "tokenizer.json").write_text("{}")
    ModelConfig(language=language).save(path)
    return path


def m(f1, rec=0.5, eval_set="s"):
    return {"macro_f1": f1, "eval_set": eval_set,
            "per_class": {"negative": {"recall": rec}}}


def test_each_language_promotes_and_rolls_back_on_its_own_pointer(tmp_path):
    reg = Registry(tmp_path / "reg")
    en1 = reg.register(ckpt(tmp_path / "a", "en"), m(0.8), version="en1")
    zh1 = reg.register(ckpt(tmp_path / "b", "zh"), m(0.7, eval_set="z"), version="zh1")
    zh2 = reg.register(ckpt(tmp_path / "c", "zh"), m(0.71, eval_set="z"), version="zh2")
    assert reg.promote(en1) and reg.promote(zh1)
    assert production(reg.root).version == "en1"
    assert production(reg.root, "zh").version == "zh1"
    assert json.loads((reg.root / "production.json").read_text())["version"] == "en1"
    # zh2 is judged against zh1, not against the English production
    assert reg.promote(zh2)
    assert production(reg.root, "zh").version == "zh2"
    assert production(reg.root).version == "en1"
    assert reg.rollback("zh") == "zh1"
    assert production(reg.root).version == "en1"
    assert reg.languages() == ["en", "zh"]
    assert {v.version for v in reg.list() if v.production} == {"en1", "zh1"}
    assert production(reg.root, "ja") is None


def test_the_chinese_gate_guards_on_real_chinese_news():
    assert gate_for("zh") is ZH_GATE
    assert any("finnsp" in g for g in ZH_GATE.guard_sets)
    assert gate_for("xx") is gate_for("en")
