"""`yuqing classify` routes each line to its language's model (JSONL ``lang``, else script)
and stamps what the stream stamps: lang, model_language, version, fallback."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from models.registry import Registry
from tests.model_helpers import make_tiny_base, make_tiny_checkpoint

runner = CliRunner()


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Path:
    base = make_tiny_base(tmp_path_factory.mktemp("tiny-base"))
    ck = tmp_path_factory.mktemp("ck")
    root = tmp_path_factory.mktemp("registry")
    reg = Registry(root)
    for lang, seed in (("en", 1), ("zh", 2)):
        reg.register(make_tiny_checkpoint(ck / lang, base, lang, seed=seed, entity_head=False),
                     metrics={}, version=f"{lang}-1")
        assert reg.promote(f"{lang}-1", gate=None)
    return root


def _app(defaults=None) -> typer.Typer:
    from models.finetune.cli import register

    app = typer.Typer()
    register(app, defaults)
    return app


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def test_text_lines_are_routed_by_script(registry: Path, tmp_path: Path) -> None:
    inp = tmp_path / "texts.txt"
    inp.write_text("Acme beats estimates\n贵州茅台业绩大增\nトヨタの株価が上昇\n", encoding="utf-8")
    out = tmp_path / "preds.jsonl"
    r = runner.invoke(_app(), ["classify", "--input", str(inp), "--output", str(out),
                               "--registry", str(registry), "--backend", "fp32"])
    assert r.exit_code == 0, r.output
    rows = _rows(out)
    assert [(x["lang"], x["model_language"], x["version"], x["fallback"]) for x in rows] == [
        ("en", "en", "en-1", None), ("zh", "zh", "zh-1", None),
        ("ja", "en", "en-1", "no model for language ja: scored by the en model")]
    assert all(x["label"] in x["probabilities"] for x in rows)


def test_jsonl_lines_are_routed_by_their_lang_and_none_gives_error_rows(
        registry: Path, tmp_path: Path) -> None:
    inp = tmp_path / "docs.jsonl"
    lines = [{"text": "Acme beats", "lang": "zh-CN"}, {"text": "贵州茅台业绩大增"},
             {"text": "トヨタの株価が上昇", "lang": "ja"}]
    inp.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines),
                   encoding="utf-8")
    out = tmp_path / "preds.jsonl"
    r = runner.invoke(_app(), ["classify", "--input", str(inp), "--output", str(out),
                               "--registry", str(registry), "--backend", "fp32",
                               "--fallback", "none"])
    assert r.exit_code == 0, r.output
    rows = _rows(out)
    assert [x["text"] for x in rows] == [x["text"] for x in lines]
    assert [(x["lang"], x.get("model_language")) for x in rows] == [
        ("zh", "zh"), ("zh", "zh"), ("ja", None)]
    assert rows[2]["label"] is None and "no model for language ja" in rows[2]["error"]
    assert "1 with no model" in r.output


def test_settings_give_the_defaults_and_a_missing_language_is_noted(
        registry: Path, tmp_path: Path) -> None:
    only_en = tmp_path / "reg-en"
    (only_en / "versions").mkdir(parents=True)
    Registry(only_en).register(registry / "versions" / "en-1", metrics={}, version="en-1")
    Registry(only_en).promote("en-1", gate=None)
    inp = tmp_path / "t.txt"
    inp.write_text("贵州茅台业绩大增\n", encoding="utf-8")
    out = tmp_path / "o.jsonl"
    app = _app(lambda: (("en", "zh"), None))  # as YUQING_LANGUAGE_FALLBACK=none gives it
    r = runner.invoke(app, ["classify", "--input", str(inp), "--output", str(out),
                            "--registry", str(only_en), "--backend", "fp32"])
    assert r.exit_code == 0, r.output
    assert "no production model for zh" in r.output and "make model" in r.output
    (row,) = _rows(out)
    assert row["lang"] == "zh" and "no model for language zh" in row["error"]


def test_bad_options_and_input_say_what_to_do(registry: Path, tmp_path: Path) -> None:
    inp = tmp_path / "bad.jsonl"
    inp.write_text('{"text": "ok"}\nnot json\n')
    args = ["classify", "--input", str(inp), "--output", str(tmp_path / "o"),
            "--registry", str(registry)]
    r = runner.invoke(_app(), args)
    assert r.exit_code == 2 and "line 2 is not JSON" in r.output
    r = runner.invoke(_app(), [*args, "--fallback", "ja"])
    assert r.exit_code == 2 and "--fallback ja is not one of --languages" in r.output
    r = runner.invoke(_app(), [*args[:-2], "--registry", str(tmp_path / "empty")])
    assert r.exit_code == 2 and "no production model" in r.output and "make model" in r.output


def test_the_yuqing_cli_takes_the_defaults_from_the_settings(monkeypatch) -> None:
    from services import cli_models
    from services.core.config import get_settings

    monkeypatch.setenv("YUQING_LANGUAGES", "zh,en")
    monkeypatch.setenv("YUQING_LANGUAGE_FALLBACK", "none")
    get_settings.cache_clear()
    try:
        assert cli_models._language_defaults() == (("zh", "en"), None)
    finally:
        get_settings.cache_clear()
