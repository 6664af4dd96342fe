"""A faster backend becomes a model's ``auto`` choice only when its measured figures hold."""
import json
import shutil
from pathlib import Path

import pytest

from models.finetune.datasets import DataError
from models.finetune.quant_check import RESULT_FILE, record_shipped, worst_drop
from models.sentiment.config import ModelConfig
from models.ship import manifest as mf

SHIPPED_ZH = Path(__file__).resolve().parents[3] / "models/shipped/zh"


def result(fp32: float, int8: float, ent: tuple[float, float] = (0.88, 0.88)) -> dict:
    return {"backend": "onnx-int8", "model_version": "v", "sets": {
        "posts": {"fp32": {"macro_f1": fp32}, "onnx-int8": {"macro_f1": int8}},
        "news": {"fp32": {"entity_negative_f1": ent[0]},
                 "onnx-int8": {"entity_negative_f1": ent[1]}}}}


def test_worst_drop_is_the_largest_fall_of_any_headline_figure():
    assert worst_drop(result(0.70, 0.71)) == (0.0, "")  # a gain is no drop
    assert worst_drop(result(0.70, 0.69, (0.88, 0.85))) == (0.03, "news entity_negative_f1")


@pytest.mark.skipif(not (SHIPPED_ZH / "manifest.json").is_file(), reason="no shipped zh model")
def test_recording_in_a_shipped_folder_keeps_its_manifest_valid(tmp_path):
    folder = tmp_path / "zh"
    shutil.copytree(SHIPPED_ZH, folder, ignore=shutil.ignore_patterns("delta.safetensors"))
    m = mf.read_manifest(folder)
    r = {**result(0.70, 0.70), "model_version": m["version"]}
    record_shipped(folder, "onnx-int8", r)
    m2 = mf.read_manifest(folder)
    assert ModelConfig.load(folder).cpu_backend == "onnx-int8"
    assert json.loads((folder / RESULT_FILE).read_text())["model_version"] == m["version"]
    assert RESULT_FILE in m2["extra_files"]
    for name in (mf.MODEL_CONFIG, RESULT_FILE):
        assert m2["files"][name] == mf.file_entry(folder / name)
    assert m2["files"]["delta.safetensors"] == m["files"]["delta.safetensors"]  # untouched
    with pytest.raises(DataError, match="measure the checkpoint"):
        record_shipped(folder, None, {**r, "model_version": "another"})


def test_nothing_measured_is_an_error_not_a_pass(tmp_path):
    from models.finetune.quant_check import measure
    from models.sentiment.config import ModelConfig

    ModelConfig(language="zh", version="v").save(tmp_path)
    with pytest.raises(DataError, match="no held-out set|not found"):
        measure(tmp_path, "onnx-int8", tmp_path / "no-data")
