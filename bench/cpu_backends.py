"""Throughput and agreement of the CPU backends (``models/sentiment/cpu_backends.py``).

The figures behind ``pick_cpu_backend`` (docs/model.md) come from this script; it lives
in ``bench/`` because it reads labelled data through ``models.finetune``, which the
serving package must not need::

    python -m bench.cpu_backends --model var/models/versions/<v> --data valid.csv --threads 1
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def main(argv: list[str] | None = None) -> None:
    """Throughput (texts/s) and agreement with fp32 for each backend on this machine."""
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--model", help="checkpoint folder (default: untrained test model)")
    ap.add_argument("--data", help="CSV/JSONL with text,label to measure accuracy too")
    ap.add_argument("--label-map", default=None)
    ap.add_argument("--n", type=int, default=512, help="texts to time")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--backends", default="fp32,int8,onnx")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    from models.sentiment.predictor import SentimentModel

    sm = (SentimentModel.from_checkpoint(a.model, device="cpu", backend="fp32") if a.model
          else SentimentModel.untrained_for_tests())
    texts, y = None, None
    if a.data:
        from models.finetune.datasets import read_examples
        from models.text import LABELS

        exs = read_examples(a.data, label_map=a.label_map)
        texts = [e.text for e in exs]
        y = np.array([LABELS.index(e.label) for e in exs])
    else:
        rng = np.random.default_rng(0)
        words = "shares stock profit loss guidance beats misses cut raise outlook $AAPL".split()
        texts = [" ".join(rng.choice(words, rng.integers(5, 40))) for _ in range(a.n)]
    timed = texts[: a.n]
    ref = None
    print(f"threads={torch.get_num_threads()} n={len(timed)} batch={a.batch_size}")
    for b in a.backends.split(","):
        if sm.set_backend(b) != b:
            print(f"{b:>5}: unavailable")
            continue
        sm.predict_proba(timed[: a.batch_size], a.batch_size)  # warm-up
        t0 = time.perf_counter()
        probs, _ = sm.predict_proba(timed, a.batch_size)
        dt = time.perf_counter() - t0
        ref = probs if ref is None else ref
        line = (f"{b:>5}: {len(timed) / dt:8.1f} texts/s  {1000 * dt / len(timed):6.2f} ms/text"
                f"  top-1 agreement with fp32 {np.mean(probs.argmax(1) == ref.argmax(1)):.4f}")
        if y is not None:
            from models.finetune.metrics import classification_metrics

            full, _ = sm.predict_proba(texts, a.batch_size)
            m = classification_metrics(y, full)
            line += f"  accuracy {m['accuracy']:.4f} macro-F1 {m['macro_f1']:.4f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
