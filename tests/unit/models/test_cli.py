"""The typer commands: classify / eval / models, on a tiny trained checkpoint."""
import json

import pytest
import typer
from typer.testing import CliRunner

from models.finetune.cli import register
from models.finetune.datasets import Example
from models.finetune.retrain import read_feedback, retrain_if_enough
from models.finetune.train import TrainConfig, train
from models.registry import Registry

from .conftest import synthetic_rows

runner = CliRunner()


@pytest.fixture(scope="module")
def app():
    a = typer.Typer()
    register(a)
    return a


@pytest.fixture(scope="module")
def tiny_ckpt(tiny_base, tmp_path_factory):
    exs = [Example(t, lab) for t, lab in synthetic_rows(24)]
    out = tmp_path_factory.mktemp("ck") / "m"
    train(TrainConfig(base=str(tiny_base), max_steps=1, batch_size=8, max_length=32,
                      progress=False, version="tiny-1"), exs[:18], exs[18:], out)
    return out


def test_classify_writes_jsonl(app, tiny_ckpt, tmp_path):
    inp = tmp_path / "texts.txt"
    inp.write_text("$AAPL soars on record quarter\n\nshares plunge 股票 🚀\n")
    out = tmp_path / "preds.jsonl"
    r = runner.invoke(app, ["classify", "--input", str(inp), "--output", str(out),
                            "--model", str(tiny_ckpt), "--backend", "fp32"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [row["text"] for row in rows] == ["$AAPL soars on record quarter", "",
                                             "shares plunge 股票 🚀"]
    for row in rows:
        assert row["version"] == "tiny-1" and row["label"] in row["probabilities"]


def test_classify_without_production_says_what_to_do(app, tmp_path):
    inp = tmp_path / "t.txt"
    inp.write_text("x\n")
    r = runner.invoke(app, ["classify", "--input", str(inp), "--output", str(tmp_path / "o"),
                            "--registry", str(tmp_path / "empty")])
    assert r.exit_code == 2 and "no production model" in r.output and "make model" in r.output


def test_eval_and_models_commands(app, tiny_ckpt, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n"
                            for t, lab in synthetic_rows(9, seed=3)))
    out = tmp_path / "m.json"
    r = runner.invoke(app, ["eval", "--data", str(data), "--model", str(tiny_ckpt),
                            "--output", str(out)])
    assert r.exit_code == 0, r.output
    m = json.loads(out.read_text())
    assert m["n"] == 9 and "latency_ms_per_item" in m and "confusion_matrix" in m
    reg_root = tmp_path / "reg"
    reg = Registry(reg_root)
    reg.register(tiny_ckpt, m, version="a")
    reg.register(tiny_ckpt, m, version="b")
    for v in ("a", "b"):
        r = runner.invoke(app, ["models", "promote", v, "--registry", str(reg_root)])
        assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["models", "list", "--registry", str(reg_root)])
    assert "* b" in r.output
    r = runner.invoke(app, ["models", "rollback", "--registry", str(reg_root)])
    assert r.exit_code == 0 and "production is now a" in r.output
    r = runner.invoke(app, ["classify", "--input", str(data), "--output", str(tmp_path / "p"),
                            "--registry", str(reg_root), "--backend", "fp32"])
    assert r.exit_code == 0 and '"version": "a"' in (tmp_path / "p").read_text()


def test_feedback_parsing_and_min_new(tmp_path):
    fb = tmp_path / "fb.jsonl"
    fb.write_text("\n".join(json.dumps(r) for r in [
        {"doc_id": "1", "text": "a", "label": "negative", "ts": "2026-01-01"},
        {"doc_id": "1", "text": "a", "label": "positive", "ts": "2026-01-02"},
        {"doc_id": "2", "text": "b", "label": "neutral", "ts": "2026-01-01"}]) + "\n")
    rows = read_feedback(fb)
    assert sorted((r["doc_id"], r["label"]) for r in rows) == [("1", "positive"), ("2", "neutral")]
    out = retrain_if_enough(fb, tmp_path / "reg", min_new=5)
    assert out["trained"] is False and "2 new feedback labels" in out["reason"]
    fb.write_text('{"doc_id": "3", "text": "c", "label": "meh"}\n')
    with pytest.raises(ValueError, match=r"fb\.jsonl:1: unknown label"):
        read_feedback(fb)


def test_train_command_with_label_map(app, tiny_base, tmp_path):
    csv = tmp_path / "t.csv"
    names = {"negative": 0, "positive": 1, "neutral": 2}
    csv.write_text("text,label\n" + "".join(f'"{t}",{names[lab]}\n' for t, lab in
                                            synthetic_rows(30)))
    held = tmp_path / "h.jsonl"
    held.write_text("".join(json.dumps({"text": t + " held", "label": lab}) + "\n"
                            for t, lab in synthetic_rows(6, seed=5)))
    out = tmp_path / "ck"
    r = runner.invoke(app, ["train", "--train", str(csv), "--label-map", "0=negative,1=positive,"
                            "2=neutral", "--valid", str(held), "--out", str(out), "--base",
                            str(tiny_base), "--epochs", "0.1", "--max-length", "32"])
    assert r.exit_code == 0, r.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["n"] == 6 and "dev" in m["evals"]
    r = runner.invoke(app, ["train", "--train", str(csv), "--out", str(out)])
    assert r.exit_code == 2 and "t.csv:2: unknown label '0'" in r.output
