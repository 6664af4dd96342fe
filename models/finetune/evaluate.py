"""Evaluate a SentimentModel on labelled examples: metrics + latency per item."""
from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from models.finetune.datasets import Example
from models.finetune.metrics import classification_metrics, format_metrics
from models.sentiment.predictor import SentimentModel


def evaluate_model(model: SentimentModel, examples: Sequence[Example], eval_set: str = "",
                   batch_size: int = 64) -> dict:
    """Accuracy, macro-F1, per-class P/R/F1, confusion, ECE and ms/item (end to end:
    normalise + tokenise + forward, length-sorted batches of ``batch_size``)."""
    texts = [ex.text for ex in examples]
    y = np.array([model.labels.index(ex.label) for ex in examples])
    t0 = time.perf_counter()
    probs, truncated = model.predict_proba(texts, batch_size)
    dt = time.perf_counter() - t0
    m = classification_metrics(y, probs, model.labels)
    m.update({"eval_set": eval_set, "model_version": model.version, "backend": model.backend,
              "latency_ms_per_item": 1000 * dt / max(len(texts), 1), "batch_size": batch_size,
              "truncated_fraction": float(np.mean(truncated)) if len(texts) else 0.0})
    return m


def write_metrics(metrics: dict, path: str | Path, name: str = "") -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    if name:
        print(format_metrics(name, metrics))
