"""Fine-tune a large teacher (all-mpnet-base-v2) on CPU by training only its top layers.

    python -m models.finetune.teacher --data-dir ../shared/data --out var/teacher

A full mpnet epoch on 2 CPU cores takes hours; the same model with its lower
``cfg.train_top`` layers frozen needs their output only once. So, top to bottom:

1. run every text (training pool, dev split, evaluation sets) through the frozen lower
   layers once and keep those hidden states (fp16, ragged, ~1.5 GB for 35k texts);
2. train the top layers + a mean-pooled linear head on the cached states (each step costs
   ``train_top / 12`` of a full forward+backward), early-stopping on the *real* sets;
3. save a normal yuqing checkpoint (``encoder/`` + head: the serving code loads it like any
   other) and the teacher's probabilities for every training text (``soft_targets.npz``,
   keyed by normalised text), which :mod:`models.finetune.distill` turns into the student.

Model selection is on real text only: the mean macro-F1 of ``valid.csv``, SemEval-2017
headlines and FiQA (evaluation sets are never trained on; the written sentences are
reported as a smoke check, never selected on). On a CUDA device the same code runs the
whole thing in minutes (``--device cuda --train-top 12``).
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import typer
from torch import nn

from models.finetune.datasets import Example, balance_report, dedupe, stratified_split
from models.finetune.metrics import classification_metrics, format_metrics
from models.finetune.sources import DEFAULT_SOURCES, load_evals, load_training
from models.finetune.train import class_weights, length_grouped_batches, seed_everything
from models.sentiment.config import ModelConfig
from models.sentiment.device import resolve_device
from models.sentiment.network import SentimentClassifier, build_classifier, save_checkpoint
from models.sentiment.tokenize import TextEncoder
from models.text import LABELS, normalize_text

SELECT_ON = ("valid", "semeval_headlines", "fiqa")


@dataclass
class TeacherConfig:
    base: str = "var/encoders/all-mpnet-base-v2"  # HF folder (models.encoders fetches it)
    sources: tuple[str, ...] = DEFAULT_SOURCES
    source_weights: dict[str, float] = field(
        default_factory=lambda: {"wilksch": 0.5, "taborda": 0.5})  # one-annotator tweets
    train_top: int = 2  # transformer layers trained (the rest frozen and cached)
    max_length: int = 64
    epochs: float = 2.0
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    label_smoothing: float = 0.05
    class_weighting: str = "sqrt"
    dropout: float = 0.1
    dev_fraction: float = 0.1
    evals_per_epoch: int = 4
    patience: int = 4
    seed: int = 42
    device: str = "auto"
    threads: int | None = None
    version: str = "teacher-mpnet"


# ---- split forward: frozen lower layers once, trainable upper layers per step -------------
def _layers(encoder: nn.Module) -> nn.ModuleList:
    return encoder.encoder.layer


def lower_forward(encoder: nn.Module, k: int, ids: torch.Tensor, mask: torch.Tensor):
    """Hidden states after the first ``k`` layers (embeddings included)."""
    full = _layers(encoder)
    encoder.encoder.layer = full[:k]
    try:
        return encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    finally:
        encoder.encoder.layer = full


def upper_forward(encoder: nn.Module, k: int, hidden: torch.Tensor, mask: torch.Tensor):
    """The remaining layers on cached states (MPNet recomputes its relative position bias
    from the length inside ``encoder.encoder``; BERT needs nothing else)."""
    from transformers.masking_utils import create_bidirectional_mask

    full = _layers(encoder)
    mask4 = create_bidirectional_mask(config=encoder.config, inputs_embeds=hidden,
                                      attention_mask=mask)
    encoder.encoder.layer = full[k:]
    try:
        out = encoder.encoder(hidden, attention_mask=mask4)
        return out[0] if isinstance(out, tuple) else out.last_hidden_state
    finally:
        encoder.encoder.layer = full


def pooled_logits(model: SentimentClassifier, hidden: torch.Tensor, mask: torch.Tensor):
    m = mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
    return model.head(model.dropout(pooled))


@torch.inference_mode()
def cache_lower(model: SentimentClassifier, k: int, tok: TextEncoder, texts: list[str],
                device: torch.device, batch: int = 64, desc: str = "cache") -> list[torch.Tensor]:
    """fp16 hidden states after layer ``k`` for each text (ragged: its own length)."""
    from tqdm.auto import tqdm

    enc = tok.encode(texts)
    order = np.argsort(enc.lengths, kind="stable")
    out: list[torch.Tensor | None] = [None] * len(texts)
    bar = tqdm(total=len(texts), desc=desc, mininterval=0.5 if sys.stderr.isatty() else 30.0)
    model.eval()
    for s in range(0, len(order), batch):
        idx = order[s : s + batch]
        b = enc.select(idx)
        h = lower_forward(model.encoder, k, torch.from_numpy(b.input_ids).to(device),
                          torch.from_numpy(b.attention_mask).to(device))
        for j, i in enumerate(idx):
            out[i] = h[j, : b.lengths[j]].to(torch.float16).cpu().clone()
        bar.update(len(idx))
    bar.close()
    return out  # type: ignore[return-value]


def _pad(states: list[torch.Tensor], idx, device) -> tuple[torch.Tensor, torch.Tensor]:
    L = max(states[i].shape[0] for i in idx)
    d = states[idx[0]].shape[1]
    h = torch.zeros(len(idx), L, d, dtype=torch.float32)
    mask = torch.zeros(len(idx), L, dtype=torch.long)
    for j, i in enumerate(idx):
        n = states[i].shape[0]
        h[j, :n] = states[i].float()
        mask[j, :n] = 1
    return h.to(device), mask.to(device)


@torch.inference_mode()
def predict_cached(model: SentimentClassifier, k: int, states: list[torch.Tensor],
                   device: torch.device, batch: int = 128) -> np.ndarray:
    model.eval()
    lengths = np.array([s.shape[0] for s in states])
    order = np.argsort(lengths, kind="stable")
    probs = np.zeros((len(states), len(LABELS)), dtype=np.float32)
    for s in range(0, len(order), batch):
        idx = order[s : s + batch]
        h, mask = _pad(states, idx, device)
        logits = pooled_logits(model, upper_forward(model.encoder, k, h, mask), mask)
        probs[idx] = torch.softmax(logits.float(), -1).cpu().numpy()
    return probs


def _metrics(probs: np.ndarray, exs: list[Example]) -> dict:
    y = np.array([LABELS.index(ex.label) for ex in exs])
    return classification_metrics(y, probs, LABELS)


# ---- the run ---------------------------------------------------------------------------
def train_teacher(cfg: TeacherConfig, data_dir: str | Path, out_dir: str | Path) -> dict:
    seed_everything(cfg.seed)
    device = torch.device(resolve_device(cfg.device))
    if device.type == "cpu":
        import os

        torch.set_num_threads(cfg.threads or max(1, (os.cpu_count() or 2)))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    # data: real sources, eval texts removed from training, dev split for early stopping
    by_source = load_training(data_dir, list(cfg.sources))
    evals = load_evals(data_dir)
    pool = [ex for rows in by_source.values() for ex in rows]
    pool, rep = dedupe(pool, exclude_texts=[ex.text for exs in evals.values() for ex in exs])
    print(f"teacher pool: {rep}")
    train_set, dev_set = stratified_split(pool, cfg.dev_fraction, cfg.seed)
    print(balance_report("train", train_set))

    mcfg = ModelConfig(max_length=cfg.max_length, version=cfg.version, base_model=cfg.base,
                       classifier_dropout=cfg.dropout)
    model = build_classifier(mcfg, seed=cfg.seed).to(device)
    n_layers = len(_layers(model.encoder))
    k = n_layers - cfg.train_top
    tok = TextEncoder(Path(cfg.base) / "tokenizer.json", cfg.max_length)

    # 1. cache the frozen lower layers once
    t0 = time.perf_counter()
    sets = {"train": train_set, "dev": dev_set, **evals}
    states = {name: cache_lower(model, k, tok, [ex.text for ex in exs], device, desc=name)
              for name, exs in sets.items()}
    cache_s = time.perf_counter() - t0
    print(f"cached layer-{k} states for {sum(len(v) for v in states.values())} texts "
          f"in {cache_s:.0f}s")

    # 2. train the top layers + head
    for p in model.parameters():
        p.requires_grad_(False)
    trainable = [*_layers(model.encoder)[k:].parameters(), *model.head.parameters()]
    for p in trainable:
        p.requires_grad_(True)
    y = np.array([LABELS.index(ex.label) for ex in train_set], dtype=np.int64)
    sw = np.array([cfg.source_weights.get(ex.source, 1.0) for ex in train_set], np.float32)
    cw = class_weights(y, cfg.class_weighting, len(LABELS))
    loss_fn = nn.CrossEntropyLoss(weight=None if cw is None else cw.to(device),
                                  label_smoothing=cfg.label_smoothing, reduction="none")
    decay = [p for p in trainable if p.ndim >= 2]
    no_decay = [p for p in trainable if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    steps_per_epoch = math.ceil(len(y) / cfg.batch_size)
    total = max(1, int(round(cfg.epochs * steps_per_epoch)))
    warmup = int(cfg.warmup_ratio * total)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / max(1, warmup) if s < warmup
        else max(0.0, (total - s) / max(1, total - warmup)))
    eval_every = max(1, steps_per_epoch // cfg.evals_per_epoch)
    lengths = np.array([s.shape[0] for s in states["train"]])
    gen = np.random.default_rng(cfg.seed)

    def evaluate() -> dict:
        res = {name: _metrics(predict_cached(model, k, states[name], device), sets[name])
               for name in sets if name != "train"}
        sel = [res[n]["macro_f1"] for n in SELECT_ON if n in res]
        return {"select": float(np.mean(sel)) if sel else res["dev"]["macro_f1"], **res}

    from tqdm.auto import tqdm

    history, best, best_state, bad, step, ema = [], -1.0, None, 0, 0, None
    bar = tqdm(total=total, desc="teacher", mininterval=0.5 if sys.stderr.isatty() else 30.0)
    t1 = time.perf_counter()
    while step < total and bad < cfg.patience:
        for idx in length_grouped_batches(lengths, cfg.batch_size, gen):
            if step >= total or bad >= cfg.patience:
                break
            model.train()
            h, mask = _pad(states["train"], idx, device)
            logits = pooled_logits(model, upper_forward(model.encoder, k, h, mask), mask)
            w = torch.from_numpy(sw[idx]).to(device)
            loss = (loss_fn(logits.float(), torch.from_numpy(y[idx]).to(device)) * w).sum() \
                / w.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            opt.step()
            sched.step()
            step += 1
            ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
            bar.update(1)
            if step % eval_every == 0 or step == total:
                r = evaluate()
                rec = {"step": step, "epoch": round(step / steps_per_epoch, 3),
                       "loss_ema": round(ema, 4), "select": round(r["select"], 4),
                       **{n: round(m["macro_f1"], 4) for n, m in r.items() if n != "select"},
                       "elapsed_s": round(time.perf_counter() - t1)}
                history.append(rec)
                bar.write(json.dumps(rec))
                if r["select"] > best:
                    best, bad = r["select"], 0
                    best_state = {k_: v.detach().clone()
                                  for k_, v in model.state_dict().items()}
                else:
                    bad += 1
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    train_s = time.perf_counter() - t1

    # 3. save the checkpoint, the metrics, and the soft targets for distillation
    final = evaluate()
    for name, m in final.items():
        if name != "select":
            print(format_metrics(f"teacher on {name}", m))
    mcfg.training = {**asdict(cfg), "cache_seconds": round(cache_s), "train_seconds":
                     round(train_s), "steps": step, "pool": str(rep)}
    ckpt = save_checkpoint(model.cpu().eval(), out_dir / "checkpoint", mcfg)
    model.to(device)
    pool_states = states["train"] + states["dev"]
    pool_exs = train_set + dev_set
    probs = predict_cached(model, k, pool_states, device)
    np.savez_compressed(out_dir / "soft_targets.npz",
                        texts=np.array([normalize_text(ex.text) for ex in pool_exs]),
                        probs=probs, labels=np.array(LABELS))
    summary = {"version": cfg.version, "selected_on": list(SELECT_ON), "select": final["select"],
               "evals": {n: {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}
                         for n, m in final.items() if n != "select"},
               "history": history, "cache_seconds": round(cache_s),
               "train_seconds": round(train_s), "checkpoint": str(ckpt)}
    (out_dir / "teacher_metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"teacher saved to {ckpt}; soft targets for {len(pool_exs)} texts")
    return summary


def main() -> None:
    def cli(
        data_dir: Annotated[Path, typer.Option(help="shared data folder")] = Path(
            "../shared/data"),
        out: Annotated[Path, typer.Option(help="output folder")] = Path("var/teacher"),
        base: Annotated[str, typer.Option(help="teacher encoder (HF folder)")] = "",
        train_top: Annotated[int, typer.Option(help="top layers trained")] = 2,
        epochs: Annotated[float, typer.Option()] = 2.0,
        lr: Annotated[float, typer.Option()] = 1e-4,
        device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    ) -> None:
        """Fine-tune the teacher's top layers on the real sources; write soft targets."""
        from models.encoders import EncoderError, ensure_encoder

        try:
            path = base or str(ensure_encoder("all-mpnet-base-v2"))
        except EncoderError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from e
        train_teacher(TeacherConfig(base=path, train_top=train_top, epochs=epochs, lr=lr,
                                    device=device), data_dir, out)

    typer.run(cli)


if __name__ == "__main__":
    main()
