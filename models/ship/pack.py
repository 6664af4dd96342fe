"""Checkpoint -> shipped folder, refused unless the rebuilt model predicts what the source does.

The pack rebuilds its own output exactly as ``install`` will (hashes, base check, base +
delta) and compares the rebuilt model's labels with the source's on the probe texts and on
any text files given (``--agreement-data``, e.g. the eval set: only its name and the
figures are recorded, never its text). The probe probabilities written to the manifest are
the *rebuilt* model's, so ``install`` can hold every machine to a tight tolerance.
"""
from __future__ import annotations

import csv
import json
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from safetensors.torch import load_file, save_file

from models.model_card import model_card
from models.registry import RegistryError, validate_checkpoint
from models.ship import manifest as mf
from models.ship.delta import make_delta
from models.ship.probes import compare, probe_texts
from models.ship.rebuild import check_probes, rebuild_checkpoint

MAX_BYTES = 30_000_000  # the repository budget for one shipped model


def read_texts(path: Path) -> list[str]:
    """Texts of a CSV (``text`` column), JSONL (``text`` key) or plain file (one per line)."""
    if not path.is_file():
        raise mf.ShipError(f"{path} not found (--agreement-data): pass a CSV/JSONL/text file")
    if path.suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
        if rows and "text" not in rows[0]:
            raise mf.ShipError(f"{path} has no 'text' column")
        return [r["text"] or "" for r in rows]
    if path.suffix == ".jsonl":
        return [json.loads(x).get("text") or "" for x in path.read_text(encoding="utf-8").splitlines()
                if x.strip()]
    return path.read_text(encoding="utf-8").splitlines()


CHECKPOINT_PARTS = {mf.MODEL_CONFIG, mf.TOKENIZER, mf.HEAD, mf.METRICS, mf.MODEL_CARD,
                    "encoder", "adapter"}  # what the pack rebuilds or writes itself
DATA_SUFFIXES = {".csv", ".tsv", ".jsonl", ".txt", ".parquet", ".npz", ".npy"}


def extra_files(checkpoint: Path) -> list[str]:
    """Top-level files the pack ships as they are (entity head, eval results, history)."""
    extras = []
    for p in sorted(checkpoint.iterdir()):
        if p.name in CHECKPOINT_PARTS or p.name.startswith("."):
            continue
        if not p.is_file():
            raise mf.ShipError(f"{p} is a folder the pack does not know how to ship (only "
                               "encoder/ or adapter/ and top-level files): move its files to "
                               "the top level or teach models.ship about it")
        if p.suffix.lower() in DATA_SUFFIXES:  # the shipped folder is committed: no data text
            raise mf.ShipError(f"{p} looks like data, which must never be committed: remove it "
                               "from the checkpoint (or move it elsewhere) and pack again")
        if p.name in (mf.MANIFEST, mf.DELTA, mf.ENCODER_CONFIG):
            raise mf.ShipError(f"{p} would overwrite the shipped {p.name}: rename it")
        extras.append(p.name)
    return extras


def _probs(model, texts: list[str]) -> np.ndarray:
    return model.predict_proba(texts, batch_size=64)[0]


def pack(checkpoint: Path, out: Path, *, metrics_path: Path | None = None,
         version: str | None = None, agreement_data: list[Path] | tuple = (),
         min_agreement: float = 0.995, tolerance: float = 1e-3,
         max_bytes: int = MAX_BYTES) -> dict:
    """Write the shipped form of ``checkpoint`` to ``out`` (replaced only on success)."""
    from models.sentiment.network import load_classifier
    from models.sentiment.predictor import SentimentModel

    try:
        cfg = validate_checkpoint(checkpoint)
    except RegistryError as e:
        raise mf.ShipError(f"{e}: pass --checkpoint a checkpoint folder "
                           "(e.g. var/models/versions/<version>)") from e
    metrics_path = metrics_path or checkpoint / mf.METRICS
    if not metrics_path.is_file():
        raise mf.ShipError(f"{metrics_path} not found: pack a registry version folder (it has "
                           "metrics.json) or pass --metrics FILE (the registry gate needs them)")
    metrics = json.loads(metrics_path.read_text())
    texts_sets = {p.name: read_texts(p) for p in agreement_data}
    cfg.version = version or cfg.version
    network, _ = load_classifier(checkpoint, device="cpu")
    source = SentimentModel(network, cfg, checkpoint / mf.TOKENIZER, backend="fp32")
    if cfg.method == "lora":  # shipped merged: the rebuilt folder is a plain full checkpoint
        cfg.training = {**cfg.training, "packed_from": f"LoRA {cfg.lora}"}
        cfg.method, cfg.lora = "full", None
    base = mf.base_identity(cfg.base_model)
    base_state = load_file(str(mf.base_folder(cfg.base_model) / mf.BASE_WEIGHTS))
    enc_state = {k: v.detach().cpu() for k, v in network.encoder.state_dict().items()}
    stored, summary = make_delta(enc_state, base_state)

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.incoming"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        save_file(stored, str(staging / mf.DELTA), metadata={"format": mf.FORMAT})
        save_file({k: v.detach().cpu().contiguous() for k, v in network.head.state_dict().items()},
                  str(staging / mf.HEAD))
        network.encoder.config.to_json_file(str(staging / mf.ENCODER_CONFIG))
        shutil.copyfile(checkpoint / mf.TOKENIZER, staging / mf.TOKENIZER)
        extras = extra_files(checkpoint)
        for name in extras:
            shutil.copyfile(checkpoint / name, staging / name)
        cfg.save(staging)
        (staging / mf.METRICS).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        card = checkpoint / mf.MODEL_CARD
        (staging / mf.MODEL_CARD).write_text(
            card.read_text() if card.is_file() else model_card(cfg.version, cfg, metrics, checkpoint))
        for f in staging.iterdir():
            f.chmod(0o644)
        files = {name: mf.file_entry(staging / name) for name in (*mf.FILES, *extras)}
        total = sum(e["bytes"] for e in files.values())
        if total > max_bytes:
            raise mf.ShipError(
                f"the shipped form is {total / 1e6:.1f} MB, over the {max_bytes / 1e6:.0f} MB budget "
                f"({summary['delta']} changed tensors, {summary['stored_params']:,} params in fp16): "
                "was the word-embedding matrix trained (--no-freeze-embeddings)? retrain with it "
                "frozen, or ship a low-rank/int8 delta instead")
        m = {"format": mf.FORMAT, "version": cfg.version, "labels": list(cfg.labels),
             "language": getattr(cfg, "language", "en"),
             "packed_at": datetime.now(UTC).isoformat(timespec="seconds"),
             "source": {"checkpoint": str(checkpoint), "metrics": str(metrics_path)},
             "base": base.as_dict(), "encoder": summary, "files": files, "extra_files": extras,
             "total_bytes": total, "probes": []}
        with tempfile.TemporaryDirectory(prefix="yuqing-pack-") as tmp:
            rebuilt_dir = Path(tmp) / "rebuilt"
            rebuild_checkpoint(staging, rebuilt_dir, m)
            rebuilt = SentimentModel.from_checkpoint(rebuilt_dir, device="cpu", backend="fp32")
            agreement = {}
            probes = list(probe_texts(getattr(cfg, "language", "en")))
            for name, texts in {"probes": probes, **texts_sets}.items():
                a = compare(_probs(source, texts), _probs(rebuilt, texts))
                agreement[name] = a
                if a["agreement"] < min_agreement:
                    raise mf.ShipError(
                        f"the rebuilt model agrees with {checkpoint} on only {a['agreement']:.2%} "
                        f"of {name} ({a['label_changes']} labels differ, min {min_agreement:.1%}): "
                        "the fp16 delta is too coarse for this checkpoint; ship a full-precision "
                        "or low-rank alternative")
            expected = _probs(rebuilt, probes)
            m["agreement"] = agreement
            m["probes"] = [{"text": t, "probabilities": [round(float(x), 7) for x in p]}
                           for t, p in zip(probes, expected, strict=True)]
            check_probes(rebuilt_dir, m, tolerance, staging)  # what install will check
        mf.write_manifest(staging, m)
        old = out.parent / f".{out.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        if out.exists():
            out.rename(old)
        staging.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return m
