"""Classification metrics in plain numpy (no sklearn needed at serving time).

Macro-F1 is the model-selection metric: the tweet corpus is 55% neutral, so
accuracy rewards a model that under-calls the minority classes, while the alerting
stage cares most about negatives. ECE (15 equal-width bins over the top
probability) tells whether ``probabilities`` can be thresholded directly.
"""
from __future__ import annotations

import numpy as np

from models.text import LABELS


def classification_metrics(
    y_true: np.ndarray, probs: np.ndarray, labels: tuple[str, ...] = LABELS, n_bins: int = 15
) -> dict:
    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    y_pred = probs.argmax(1) if len(probs) else np.zeros(0, dtype=np.int64)
    k = len(labels)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    per_class = {}
    f1s = []
    for i, name in enumerate(labels):
        tp = cm[i, i]
        p = tp / cm[:, i].sum() if cm[:, i].sum() else 0.0
        r = tp / cm[i, :].sum() if cm[i, :].sum() else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        per_class[name] = {"precision": float(p), "recall": float(r), "f1": float(f),
                           "support": int(cm[i, :].sum())}
        f1s.append(f)
    n = len(y_true)
    conf = probs.max(1) if n else np.zeros(0)
    correct = (y_pred == y_true)
    ece = 0.0
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return {
        "n": int(n),
        "accuracy": float(correct.mean()) if n else 0.0,
        "macro_f1": float(np.mean(f1s)),
        "per_class": per_class,
        "confusion_matrix": {"labels": list(labels), "rows_true_cols_pred": cm.tolist()},
        "ece": float(ece),
    }


def format_metrics(name: str, m: dict) -> str:
    """A fixed-width table for terminals and logs."""
    lines = [f"== {name}: n={m['n']}  accuracy={m['accuracy']:.4f}  macro-F1={m['macro_f1']:.4f}"
             f"  ECE={m['ece']:.4f}"
             + (f"  latency={m['latency_ms_per_item']:.2f} ms/item" if "latency_ms_per_item" in m
                else "")]
    lines.append(f"{'class':<10}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}")
    for c, v in m["per_class"].items():
        lines.append(f"{c:<10}{v['precision']:>10.4f}{v['recall']:>10.4f}{v['f1']:>10.4f}"
                     f"{v['support']:>9d}")
    labels = m["confusion_matrix"]["labels"]
    lines.append("confusion (rows=true, cols=pred): " + " ".join(f"{x[:3]:>6}" for x in labels))
    for lab, row in zip(labels, m["confusion_matrix"]["rows_true_cols_pred"], strict=True):
        lines.append(f"  {lab:<10}" + " ".join(f"{v:>6d}" for v in row))
    return "\n".join(lines)
