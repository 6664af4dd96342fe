"""Fine-tune the sentiment classifier (full or LoRA), nanoGPT-style: one function, top to bottom.

Recipe choices and why:

* Dynamic padding + length-grouped batches: a batch is padded to its own longest
  row, and rows of similar length are batched together (median tweet: 20 tokens,
  but 15% exceed 64), which roughly halves CPU time.
* Class weighting ``sqrt``: loss weights proportional to 1/sqrt(class frequency). Full
  inverse-frequency weighting over-predicts the minorities and costs accuracy;
  none under-calls negatives. sqrt is the usual compromise for macro-F1.
* Label smoothing 0.05 and dropout: cheap regularisation that improves ECE and
  transfer to other sources (news sentences vs tweets).
* Early stopping on dev macro-F1 (evaluated twice per epoch), keeping the best
  weights in memory: the number of epochs is an upper bound, not a guess.
* Full fine-tuning freezes the word-embedding matrix (11.7M of 22.7M params): with
  ~10k training rows, updating rare-token embeddings mostly memorises, and skipping
  their AdamW update makes each CPU step ~30% cheaper.
* LoRA targets every linear layer of the transformer blocks (not the unused pooler)
  and trains the head fully; the adapter is a few MB and merged at load time.
* Distillation (``soft`` targets from a teacher, :mod:`models.finetune.teacher`): loss =
  ``distill_alpha`` * KL(teacher || student at temperature T) * T^2 + (1 - alpha) * CE on
  the human label. The teacher's probabilities carry what a 3-way label cannot ("slightly
  positive", "ambiguous"), which is what a 6-layer student learns fastest from.
* Per-source weights (``source_weights``): sources whose labels are noisier (one annotator)
  count less per row, without dropping what they teach.
* Selection on real sets (``select_sets``): early stopping and the kept checkpoint follow
  the mean macro-F1 over real evaluation sets when given, not the dev split of the
  training pool, whose style the model has already seen.
* Everything is seeded (python, numpy, torch, batch order) so a rerun on the same
  hardware reproduces the same weights.
"""
from __future__ import annotations

import copy
import json
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from models.finetune.datasets import Example, balance_report
from models.finetune.metrics import classification_metrics, format_metrics
from models.normalizers import normalization_version
from models.sentiment.config import BASE_PACKAGE, ModelConfig
from models.sentiment.device import resolve_device
from models.sentiment.network import build_classifier, save_checkpoint, tokenizer_file
from models.sentiment.predictor import SentimentModel
from models.sentiment.tokenize import TextEncoder
from models.text import LABELS


@dataclass
class TrainConfig:
    base: str = BASE_PACKAGE  # package sentinel, HF folder or a yuqing checkpoint's encoder/
    language: str = "en"  # the normaliser (models.text.normalizer_for) and the model's language
    method: Literal["full", "lora"] = "full"
    max_length: int = 64
    epochs: float = 4.0
    batch_size: int = 32
    lr: float | None = None  # default: 8e-5 full, 1e-3 lora
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    label_smoothing: float = 0.05
    class_weighting: Literal["none", "sqrt", "balanced"] = "sqrt"
    dropout: float = 0.1
    freeze_embeddings: bool = True  # word-embedding matrix (half the params) stays pretrained
    evals_per_epoch: int = 2
    patience: int = 3  # evaluations without dev macro-F1 improvement before stopping
    max_steps: int | None = None  # cap (smoke tests)
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    seed: int = 42
    device: str = "auto"
    threads: int | None = None  # None: half the logical CPUs on CPU
    version: str = "dev"
    progress: bool = True
    distill_alpha: float = 0.0  # weight of the teacher's soft targets (0: none)
    distill_temperature: float = 2.0
    source_weights: dict[str, float] = field(default_factory=dict)  # Example.source -> w
    entity_weight: float = 0.0  # weight of the entity-level loss (needs entity_rows)
    entity_batch: int = 16
    # "rows": entity_batch (text, entity) rows per step; "texts": entity_batch texts per step
    # and every entity row of each (the forward pass is per text, so several entities of one
    # text cost nothing more)
    entity_sampling: Literal["rows", "texts"] = "rows"
    entity_all_mentions: bool = False  # pool every mention of a row (else its first span)
    data: dict = field(default_factory=dict)  # provenance, copied into the model config

    def resolved_lr(self) -> float:
        return self.lr if self.lr is not None else (8e-5 if self.method == "full" else 1e-3)


@dataclass
class TrainResult:
    path: Path
    dev_metrics: dict
    history: list[dict]
    train_seconds: float
    steps: int


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def class_weights(y: np.ndarray, mode: str, k: int) -> torch.Tensor | None:
    if mode == "none":
        return None
    counts = np.bincount(y, minlength=k).astype(np.float64).clip(min=1)
    w = 1.0 / counts if mode == "balanced" else 1.0 / np.sqrt(counts)
    w = w / (w * counts).sum() * counts.sum()  # mean weight per example = 1
    return torch.tensor(w, dtype=torch.float32)


def length_grouped_batches(lengths: np.ndarray, batch_size: int, gen: np.random.Generator,
                           group: int = 50) -> list[np.ndarray]:
    """Shuffled batches of similar-length rows (HF's ``group_by_length``).

    Tweets are mostly ~20 tokens but 15% hit the 64-token cap, so a random batch is
    nearly always padded to 64; sorting within shuffled mega-chunks of
    ``group * batch_size`` rows cuts the padded tokens (and CPU time) ~2x while
    keeping batch composition random. Batch order is shuffled too.
    """
    perm = gen.permutation(len(lengths))
    mega = batch_size * group
    batches = []
    for s in range(0, len(perm), mega):
        chunk = perm[s : s + mega]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    order = gen.permutation(len(batches))
    return [batches[i] for i in order]


def apply_lora(model, cfg: TrainConfig) -> dict:
    from peft import LoraConfig, get_peft_model

    lora = {"r": cfg.lora_r, "alpha": cfg.lora_alpha, "dropout": cfg.lora_dropout,
            "target_modules": r".*layer\.\d+\..*(query|key|value|dense)"}
    pc = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                    target_modules=lora["target_modules"], bias="none")
    model.encoder = get_peft_model(model.encoder, pc)
    return lora


def evaluate_network(scorer: SentimentModel, examples: list[Example],
                     batch_size: int = 128) -> dict:
    """Dev-set metrics through the serving code path (same normalisation + tokeniser)."""
    scorer.network.eval()
    probs, _ = scorer.predict_proba([ex.text for ex in examples], batch_size)
    y = np.array([LABELS.index(ex.label) for ex in examples])
    return classification_metrics(y, probs, scorer.labels)


def train(cfg: TrainConfig, train_set: list[Example], dev_set: list[Example],
          out_dir: str | Path, soft: np.ndarray | None = None,
          select_sets: dict[str, list[Example]] | None = None,
          entity_rows: list | None = None) -> TrainResult:
    """``soft``: teacher probabilities aligned with ``train_set`` (needs distill_alpha > 0);
    ``select_sets``: real sets whose mean macro-F1 selects the checkpoint (default: dev)."""
    if cfg.distill_alpha > 0 and (soft is None or len(soft) != len(train_set)):
        raise ValueError("distill_alpha > 0 needs soft targets aligned with train_set")
    seed_everything(cfg.seed)
    device = torch.device(resolve_device(cfg.device))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    elif device.type == "cpu":
        # Half the logical CPUs: on a 2-core box shared with Kafka/ES (or other jobs), one
        # thread trained 2-4x faster than two (OpenMP barriers stall when a core is taken).
        torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
    use_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    print(balance_report("train", train_set))
    print(balance_report("dev", dev_set))

    # ---- model ---------------------------------------------------------------------------
    mcfg = ModelConfig(max_length=cfg.max_length, version=cfg.version, base_model=cfg.base,
                       method=cfg.method, classifier_dropout=cfg.dropout, language=cfg.language,
                       normalization_version=normalization_version(cfg.language))
    model = build_classifier(mcfg, seed=cfg.seed)
    if cfg.method == "lora":
        mcfg.lora = apply_lora(model, cfg)
    elif cfg.freeze_embeddings:
        model.encoder.embeddings.word_embeddings.weight.requires_grad_(False)
    model.to(device)
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_total = sum(p.numel() for p in model.parameters())
    print(f"model: {cfg.method}, {n_trainable:,} trainable / {n_total:,} params, device {device}"
          + (" (bf16 autocast)" if use_bf16 else ""))

    # ---- data: tokenise once, batches are slices re-trimmed to their longest row --------
    tok = TextEncoder(tokenizer_file(cfg.base), cfg.max_length, cfg.language)
    scorer = SentimentModel(model, mcfg, tokenizer_file(cfg.base))  # wraps the live network
    enc = tok.encode([ex.text for ex in train_set])
    y = np.array([LABELS.index(ex.label) for ex in train_set], dtype=np.int64)
    n = len(y)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total_steps = max(1, int(round(cfg.epochs * steps_per_epoch)))
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    eval_every = max(1, steps_per_epoch // max(cfg.evals_per_epoch, 1))

    # ---- entity head (joint): pooled mention tokens + document -> the entity's label ------
    ent_head, ent = None, None
    if entity_rows and cfg.entity_weight > 0:
        from models.sentiment.entities import EntityHead

        ent_head = EntityHead(mcfg.hidden_size, len(LABELS)).to(device)
        ent = _entity_batches(scorer, entity_rows, cfg.entity_all_mentions)
        print(f"entity loss: {len(entity_rows)} (text, entity) rows over {len(ent['texts'])} "
              f"texts, weight {cfg.entity_weight}")

    # ---- optimiser: AdamW, no decay on biases/LayerNorm, linear warmup + decay -----------
    decay, no_decay = [], []
    named = list(model.named_parameters()) + (
        [(f"entity.{k}", v) for k, v in ent_head.named_parameters()] if ent_head else [])
    for name, p in named:
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "LayerNorm" in name else decay).append(p)
    lr = cfg.resolved_lr()
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    warmup = int(cfg.warmup_ratio * total_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / max(1, warmup) if s < warmup
        else max(0.0, (total_steps - s) / max(1, total_steps - warmup)))
    w = class_weights(y, cfg.class_weighting, len(LABELS))
    loss_fn = nn.CrossEntropyLoss(weight=None if w is None else w.to(device),
                                  label_smoothing=cfg.label_smoothing, reduction="none")
    row_w = np.array([cfg.source_weights.get(ex.source, 1.0) for ex in train_set], np.float32)
    soft_t = None if soft is None else torch.from_numpy(np.asarray(soft, np.float32))
    T, alpha = cfg.distill_temperature, cfg.distill_alpha

    def loss_of(logits: torch.Tensor, idx: np.ndarray) -> torch.Tensor:
        rw = torch.from_numpy(row_w[idx]).to(device)
        ce = loss_fn(logits, torch.from_numpy(y[idx]).to(device))
        if alpha <= 0:
            return (ce * rw).sum() / rw.sum()
        t = soft_t[idx].to(device).clamp_min(1e-6).log() / T  # teacher log-probs at T
        kl = nn.functional.kl_div(torch.log_softmax(logits / T, -1), torch.log_softmax(t, -1),
                                  log_target=True, reduction="none").sum(-1) * T * T
        return (((1 - alpha) * ce + alpha * kl) * rw).sum() / rw.sum()

    def select_metric() -> tuple[float, dict]:
        m = evaluate_network(scorer, dev_set)
        if not select_sets:
            return m["macro_f1"], m
        f1s = {n: evaluate_network(scorer, exs)["macro_f1"] for n, exs in select_sets.items()}
        return float(np.mean(list(f1s.values()))), {**m, "select": f1s}

    # ---- loop ----------------------------------------------------------------------------
    from tqdm.auto import tqdm

    gen = np.random.default_rng(cfg.seed)
    history: list[dict] = []
    best_f1, best_state, best_step, bad_evals = -1.0, None, 0, 0
    bar = tqdm(total=total_steps, disable=not cfg.progress, dynamic_ncols=True,
               mininterval=0.5 if sys.stderr.isatty() else 30.0, desc=f"train[{cfg.method}]")
    t0 = time.perf_counter()
    step, ema = 0, None
    stop = False
    while step < total_steps and not stop:
        for idx in length_grouped_batches(enc.lengths, cfg.batch_size, gen):
            if step >= total_steps:
                break
            model.train()
            b = enc.select(idx)
            ids = torch.from_numpy(b.input_ids).to(device)
            mask = torch.from_numpy(b.attention_mask).to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                logits = model(ids, mask)
            loss = loss_of(logits.float(), idx)
            if ent_head is not None:
                loss = loss + cfg.entity_weight * _entity_loss(
                    model, ent_head, ent, gen, cfg.entity_batch, device, cfg.entity_sampling)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
            bar.update(1)
            bar.set_postfix(loss=f"{ema:.4f}", lr=f"{sched.get_last_lr()[0]:.2e}",
                            best_f1=f"{max(best_f1, 0):.4f}")
            if step % eval_every == 0 or step == total_steps:
                score, m = select_metric()
                rec = {"step": step, "epoch": round(step / steps_per_epoch, 3),
                       "train_loss_ema": round(ema, 5), "dev_accuracy": m["accuracy"],
                       "dev_macro_f1": m["macro_f1"], "select": round(score, 4),
                       **({"select_sets": m["select"]} if "select" in m else {}),
                       "elapsed_s": round(time.perf_counter() - t0, 1)}
                history.append(rec)
                bar.write(json.dumps(rec))
                if score > best_f1:
                    best_f1, best_step, bad_evals = score, step, 0
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                    if ent_head is not None:
                        best_ent = {k: v.detach().clone() for k, v in ent_head.state_dict().items()}
                else:
                    bad_evals += 1
                    if bad_evals >= cfg.patience:
                        bar.write(f"early stop at step {step}: no dev macro-F1 gain in "
                                  f"{cfg.patience} evals (best {best_f1:.4f} @ step {best_step})")
                        stop = True
                        break
    bar.close()
    train_seconds = time.perf_counter() - t0
    if best_state is not None:
        model.load_state_dict(best_state)
        if ent_head is not None:
            ent_head.load_state_dict(best_ent)

    # ---- save + final dev metrics --------------------------------------------------------
    mcfg.training = {**{k: v for k, v in asdict(cfg).items() if k not in ("data", "progress")},
                     "lr": lr, "best_step": best_step, "steps": step,
                     "train_seconds": round(train_seconds, 1), "train_rows": n,
                     "dev_rows": len(dev_set), "data": cfg.data}
    model.eval()
    dev_metrics = evaluate_network(scorer, dev_set)
    out = save_checkpoint(model.cpu(), out_dir, copy.deepcopy(mcfg))
    if ent_head is not None:
        ent_head.cpu().eval().save(out)
    (out / "train_history.json").write_text(json.dumps(history, indent=2) + "\n")
    print(format_metrics("dev (best checkpoint)", dev_metrics))
    print(f"saved {out} after {step} steps in {train_seconds:.0f}s (best step {best_step})")
    return TrainResult(out, dev_metrics, history, train_seconds, step)


def _entity_batches(scorer: SentimentModel, rows: list, all_mentions: bool = False) -> dict:
    """Encode each entity text once; per row: its text index, token set and label."""
    texts = list(dict.fromkeys(r.text for r in rows))
    pos = {t: i for i, t in enumerate(texts)}
    sets = [scorer.entity_token_sets(r.text, [r.spans if all_mentions else [(r.start, r.end)]])[0]
            for r in rows]
    keep = [i for i, st in enumerate(sets) if len(st)]
    text_of = np.array([pos[rows[i].text] for i in keep], dtype=np.int64)
    return {"texts": texts, "enc": scorer.encode(texts), "text_of": text_of,
            "sets": [sets[i] for i in keep],
            "y": np.array([LABELS.index(rows[i].label) for i in keep], dtype=np.int64),
            "texts_with_rows": np.unique(text_of)}



def _entity_loss(model, head, ent: dict, gen: np.random.Generator, k: int,
                 device: torch.device, sampling: str = "rows") -> torch.Tensor:
    if sampling == "texts":
        pool = ent["texts_with_rows"]
        tix = np.sort(gen.choice(pool, size=min(k, len(pool)), replace=False))
        idx = np.flatnonzero(np.isin(ent["text_of"], tix))
    else:
        idx = gen.choice(len(ent["y"]), size=min(k, len(ent["y"])), replace=False)
        tix = np.unique(ent["text_of"][idx])
    b = ent["enc"].select(tix)
    _, hidden = model.forward_with_hidden(torch.from_numpy(b.input_ids).to(device),
                                          torch.from_numpy(b.attention_mask).to(device))
    row_of = {int(t): j for j, t in enumerate(tix)}
    ents, docs = [], []
    for i in idx:
        j = row_of[int(ent["text_of"][i])]
        h = hidden[j, : int(b.lengths[j])]
        ents.append(h[torch.from_numpy(ent["sets"][i]).to(device)].mean(0))
        docs.append(h.mean(0))
    logits = head(torch.stack(ents), torch.stack(docs))
    return nn.functional.cross_entropy(logits.float(), torch.from_numpy(ent["y"][idx]).to(device),
                                       label_smoothing=0.05)

