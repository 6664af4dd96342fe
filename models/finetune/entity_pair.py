"""Train the entity pair model of a Chinese checkpoint (``models.sentiment.entity_pair``).

    python -m models.finetune.entity_pair --checkpoint var/models/versions/<zh version>

Why a second pass exists at all is in :mod:`models.sentiment.entity_pair`. Training data:
finnsp's train split, every listed entity of every *negative* item (the pair model answers
"is this entity the subject of the negative?"; the document model already says whether
there is one), ``(entity, window around its first uncovered mention)`` → key or not. A copy
of the document model's encoder (word embeddings frozen) and a two-way head train on the
pairs; the update is stored as rank-64 factors (:func:`compress`: on dev, rank 64 scored as
the uncompressed model did, rank 32 0.2 points lower). The mix weight and threshold of the
decision are chosen on the dev split (entity-level negative F1 through the serving path);
the result is measured on the test split, never trained or selected on, beside the entity
head alone, and the three files (``entity_pair.json``, ``entity_pair.safetensors``,
``eval-entity-pair.json``) are written into the checkpoint folder (and, with ``--shipped``,
into the shipped folder with its manifest refreshed).
"""
from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import typer
from safetensors.torch import save_file

from models.finetune.datasets import DataError
from models.finetune.evaluate_news_zh import evaluate_news, linked_spans
from models.finetune.sources_zh import NewsDoc, load_splits, uncovered_spans
from models.sentiment.entity_pair import (
    PAIR_CONFIG_FILE,
    PAIR_WEIGHTS_FILE,
    EntityPairScorer,
    PairConfig,
    merge_lora,
    mixed_negative,
    pair_window,
)
from models.text import LABELS

RESULT_FILE = "eval-entity-pair.json"


@dataclass
class PairTrain:
    epochs: float = 2.0
    lr: float = 4e-5
    batch_size: int = 16
    seed: int = 0
    threads: int | None = None
    label_smoothing: float = 0.05
    max_docs: int | None = None  # cap items per source before splitting (smoke runs)
    length_grouped: bool = False  # batches of similar lengths (English: mostly headlines)
    max_steps: int | None = None  # cap on optimiser steps (smoke runs)


@dataclass(frozen=True)
class Pair:
    doc: int  # index into the split's documents
    entity: str
    window: str
    key: int  # 1: the negative is about this entity


def build_pairs(docs: list[NewsDoc], cfg: PairConfig, normalize, negative_only: bool
                ) -> list[Pair]:
    """One pair per listed entity with an uncovered mention (as the linker passes it), its
    window built as serving builds it (``EntityPairScorer.pairs_of``)."""
    out = []
    for i, d in enumerate(docs):
        if negative_only and not d.negative:
            continue
        spans = {ent: uncovered_spans(d.text, ent, d.entities) for ent in d.entities}
        for ent in d.entities:
            if spans[ent]:
                others = [x for o in d.entities if o != ent for x in spans[o]]
                out.append(Pair(i, ent, pair_window(d.text, spans[ent][0][0], cfg, normalize,
                                                    (spans[ent], others)),
                                int(d.negative and ent in d.key_entities)))
    return out


def epoch_batches(n: int, batch_size: int, rng: random.Random,
                  lengths: list[int] | None = None) -> list[list[int]]:
    """One epoch's batches, popped from the end. With ``lengths``: shuffled, then sorted by
    length within chunks of 50 batches, the batches shuffled again (similar lengths share a
    batch, so little padding; the order stays random). Without: plain shuffled batches."""
    order = rng.sample(range(n), n)
    if lengths is None:  # taken from the end, a short tail dropped (the shipped zh recipe)
        rev = order[::-1]
        full = [rev[s : s + batch_size] for s in range(0, n - batch_size + 1, batch_size)]
        return (full or [rev])[::-1]
    chunk = 50 * batch_size
    order = [i for s in range(0, n, chunk)
             for i in sorted(order[s : s + chunk], key=lambda i: lengths[i])]
    out = [order[s : s + batch_size] for s in range(0, n, batch_size)]
    rng.shuffle(out)
    return out


def compress(trained: torch.nn.Module, doc_encoder: torch.nn.Module, rank: int
             ) -> dict[str, torch.Tensor]:
    """The update training made, stored small: each linear layer's weight difference as its
    best rank-``rank`` factors (``<module>.lora_A/B``, SVD), every other changed parameter
    (biases, LayerNorms, position embeddings) whole (``<parameter>.delta``), fp16."""
    base = dict(doc_encoder.named_parameters())
    linear = {n for n, m in trained.named_modules() if isinstance(m, torch.nn.Linear)}
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name, p in trained.named_parameters():
            diff = p.detach().float().cpu() - base[name].detach().float().cpu()
            if not diff.abs().max() > 0:
                continue
            module = name.rsplit(".", 1)[0]
            if name.endswith(".weight") and module in linear and rank < min(diff.shape):
                u, sv, vh = torch.linalg.svd(diff, full_matrices=False)
                out[f"{module}.lora_A"] = (sv[:rank, None] * vh[:rank]).half().contiguous()
                out[f"{module}.lora_B"] = u[:, :rank].half().contiguous()
            else:
                out[f"{name}.delta"] = diff.half().contiguous()
    return out


def train_pair(doc_encoder: torch.nn.Module, pairs: list[tuple[str, str]], targets: list[int],
               cfg: PairConfig, tr: PairTrain, tokenizer_path: Path, normalize,
               weights_of: list[float] | None = None
               ) -> tuple[dict[str, torch.Tensor], dict]:
    """:func:`fit_pair`, then the weights file's tensors (:func:`compress` at ``cfg.rank``,
    plus ``head.weight``/``head.bias``) and how closely the compressed model follows the
    trained one."""
    trained = fit_pair(doc_encoder, pairs, targets, cfg, tr, tokenizer_path, normalize,
                       weights_of)
    weights = compressed_weights(trained, doc_encoder, cfg.rank)
    return weights, _compression(trained, doc_encoder, weights, cfg, pairs[:256])


def compressed_weights(trained: EntityPairScorer, doc_encoder: torch.nn.Module, rank: int
                       ) -> dict[str, torch.Tensor]:
    weights = compress(trained.encoder, doc_encoder, rank)
    weights["head.weight"] = trained.head_w.detach().cpu().contiguous()
    weights["head.bias"] = trained.head_b.detach().cpu().contiguous()
    return weights


def fit_pair(doc_encoder: torch.nn.Module, pairs: list[tuple[str, str]], targets: list[int],
             cfg: PairConfig, tr: PairTrain, tokenizer_path: Path, normalize,
             weights_of: list[float] | None = None) -> EntityPairScorer:
    """Fine-tune a copy of the document encoder (word embeddings frozen, as the document
    model's are) with a head of the config kind's classes on the (entity, window) pairs
    (``weights_of``: per-pair loss weights); returns the trained (uncompressed) scorer."""
    import copy

    from models.sentiment.entity_pair import PAIR_KINDS

    if tr.threads:
        torch.set_num_threads(tr.threads)
    torch.manual_seed(tr.seed)
    rng = random.Random(tr.seed)
    enc = copy.deepcopy(doc_encoder).float()
    enc.embeddings.word_embeddings.weight.requires_grad_(False)
    head = torch.nn.Linear(enc.config.hidden_size, PAIR_KINDS[cfg.kind])
    params = [p for p in enc.parameters() if p.requires_grad] + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=tr.lr, weight_decay=0.01)
    n = len(pairs)
    w_all = torch.tensor(weights_of if weights_of is not None else [1.0] * n)
    steps = max(1, int(tr.epochs * n / tr.batch_size))
    if tr.max_steps:
        steps = min(steps, tr.max_steps)
    warm = max(1, int(steps * 0.06))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * max(0.0, (steps - s) / steps))
    scorer = EntityPairScorer(enc, head.weight, head.bias, cfg, tokenizer_path, normalize)
    enc.train()  # the scorer (used here for its tokenisation) put it in eval mode
    lengths = ([len(e) for e in scorer.tokenizer.encode_batch(list(pairs))]
               if tr.length_grouped else None)
    batches: list[list[int]] = []
    t0 = time.time()
    for step in range(1, steps + 1):
        if not batches:
            batches = epoch_batches(n, tr.batch_size, rng, lengths)
        b = batches.pop()
        ids, types, mask = scorer.tensors([pairs[i] for i in b])
        h = enc(input_ids=ids, token_type_ids=types, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).float()
        logits = head((h * m).sum(1) / m.sum(1).clamp(min=1.0))
        w = w_all[b]
        loss = (torch.nn.functional.cross_entropy(
            logits, torch.tensor([targets[i] for i in b]), reduction="none",
            label_smoothing=tr.label_smoothing) * w).sum() / w.sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        if step % 50 == 0 or step == steps:
            print(json.dumps({"step": step, "of": steps, "loss": round(loss.item(), 4),
                              "s": round(time.time() - t0)}), flush=True)
    enc.eval()
    return EntityPairScorer(enc, head.weight.detach(), head.bias.detach(), cfg, tokenizer_path,
                            normalize)


def _compression(trained: EntityPairScorer, doc_encoder, weights, cfg: PairConfig,
                 pairs: list[tuple[str, str]]) -> dict:
    """How closely the compressed model (what ships) follows the trained one."""
    merged = EntityPairScorer(merge_lora(doc_encoder, weights, 1.0), weights["head.weight"],
                              weights["head.bias"], cfg, trained.tokenizer_path,
                              trained.normalize)
    want, got = trained.probs(pairs), merged.probs(pairs)
    return {"pairs": len(pairs), "largest_difference": round(float(np.abs(want - got).max()), 4),
            "same_top_class": round(float(np.mean(want.argmax(1) == got.argmax(1))), 4)}


def entity_rows(model, docs: list[NewsDoc], scorer: EntityPairScorer
                ) -> tuple[np.ndarray, int]:
    """Per listed entity with a mention: [head_neg, doc_neg, key, truth]; and the key
    entities with no mention (always missed: the linker never links them)."""
    neg = LABELS.index("negative")
    spans, where = linked_spans(docs)
    pair_model, model.entity_pair = model.entity_pair, None
    try:
        doc_p, ent_p = model.predict_entities([d.text for d in docs], spans)
    finally:
        model.entity_pair = pair_model
    key = scorer.key_probs([scorer.pairs_of(docs[i].text, spans[i], [j])[0]
                            for i, _, j, _ in where])
    rows = np.array([[ent_p[i][j][neg], doc_p[i][neg], key[n],
                      float(docs[i].negative and ent in docs[i].key_entities)]
                     for n, (i, ent, j, _) in enumerate(where)], dtype=np.float64)
    missing = sum(1 for d in docs for e in d.entities if d.negative and e in d.key_entities
                  and not uncovered_spans(d.text, e, d.entities))
    return rows.reshape(-1, 4), missing


def f1_at(rows: np.ndarray, missing: int, mix: float, threshold: float) -> float:
    pred = mixed_negative(rows[:, 0], rows[:, 1], rows[:, 2], mix) > threshold
    truth = rows[:, 3] == 1
    tp = int((pred & truth).sum())
    fp = int((pred & ~truth).sum())
    fn = int((~pred & truth).sum()) + missing
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def select(rows: np.ndarray, missing: int) -> tuple[float, float, float]:
    """(mix, threshold, dev F1): the best on the grid; ties go to the earlier point."""
    best = (0.0, 0.5, -1.0)
    for mix in np.round(np.arange(0.0, 1.001, 0.1), 2):
        for th in np.round(np.arange(0.2, 0.801, 0.05), 2):
            f = f1_at(rows, missing, float(mix), float(th))
            if f > best[2] + 1e-9:
                best = (float(mix), float(th), f)
    return best


def run(checkpoint: Path, data_dir: Path, tr: PairTrain, cfg: PairConfig | None = None) -> dict:
    from models.sentiment.predictor import SentimentModel

    # On CPU the model's own backend (its cpu_backend): the decision is tuned on the
    # probabilities it is combined with when served.
    model = SentimentModel.from_checkpoint(checkpoint, device="cpu", backend="auto")
    if model.config.language != "zh" or model.entity_head is None:
        raise DataError(f"{checkpoint} is not a Chinese model with an entity head: "
                        "the pair model is trained for one (make model-train-zh)")
    model.entity_pair = None
    d = load_splits(data_dir, include_written=False, max_rows=tr.max_docs)
    train_docs = d["finnsp"]["train"]
    cfg = cfg or PairConfig()
    cfg.base_version = model.version
    normalize = model.text_encoder.normalize
    rows = build_pairs(train_docs, cfg, normalize, negative_only=True)
    if not rows:
        raise DataError("no training pairs: finnsp's train split has no negative item "
                        "with a listed entity")
    print(f"entity pair model: {len(rows)} pairs from {len(train_docs)} finnsp train items "
          f"({sum(r.key for r in rows)} key)", flush=True)
    tok = checkpoint / "tokenizer.json"
    t0 = time.time()
    weights, fidelity = train_pair(model.network.encoder, [(r.entity, r.window) for r in rows],
                                   [r.key for r in rows], cfg, tr, tok, normalize)
    print(f"compressed to rank {cfg.rank}: {json.dumps(fidelity)}", flush=True)
    scorer = EntityPairScorer(merge_lora(model.network.encoder, weights, 1.0),
                              weights["head.weight"], weights["head.bias"], cfg, tok, normalize)
    dev_rows, dev_missing = entity_rows(model, d["finnsp"]["dev"], scorer)
    mix, th, dev_f1 = select(dev_rows, dev_missing)
    cfg.mix, cfg.threshold = mix, th
    cfg.training = {**asdict(tr), "pairs": len(rows), "train_seconds": round(time.time() - t0),
                    "compressed_vs_trained": fidelity,
                    "selected_on": "finnsp dev: entity-level negative F1",
                    "dev_entity_f1": round(dev_f1, 4)}
    head_only = evaluate_news(model, d["finnsp"]["test"])
    model.entity_pair = scorer
    with_pair = evaluate_news(model, d["finnsp"]["test"])
    result = {"model_version": model.version, "mix": mix, "threshold": th,
              "dev_entity_f1": round(dev_f1, 4), "test": with_pair["test"],
              "entity_negative": {"entity_head": head_only["entity_negative"],
                                  "entity_head_and_pair": with_pair["entity_negative"]},
              "document_negative": with_pair["document_negative"]}
    save(checkpoint, weights, cfg, result)
    return result


def save(folder: Path, weights: dict[str, torch.Tensor], cfg: PairConfig, result: dict) -> None:
    """The three files, each replaced atomically (a worker may be loading this version)."""
    tmp = folder / f".{PAIR_WEIGHTS_FILE}.tmp"
    save_file(weights, str(tmp))
    tmp.chmod(0o644)
    tmp.replace(folder / PAIR_WEIGHTS_FILE)
    cfg.save(folder)
    tmp = folder / f".{RESULT_FILE}.tmp"
    tmp.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    tmp.replace(folder / RESULT_FILE)


def check_shipped(checkpoint: Path, shipped: Path) -> dict:
    """The shipped folder's manifest, refused unless it ships the checkpoint's version (run
    before training, so a wrong folder costs nothing)."""
    from models.sentiment.config import ModelConfig
    from models.ship import manifest as mf

    version = ModelConfig.load(checkpoint).version
    m = mf.read_manifest(shipped)
    if m.get("version") != version:
        raise DataError(f"{shipped} ships {m.get('version')}, not {version}: pass the "
                        "checkpoint that folder was packed from")
    return m


def record_shipped(checkpoint: Path, shipped: Path, card: bool = False) -> None:
    """Copy the three files (and, with ``card``, the checkpoint's model card, which the pair
    step updated) into the shipped folder and refresh its manifest."""
    import shutil

    from models.ship import manifest as mf

    m = check_shipped(checkpoint, shipped)
    names = (PAIR_CONFIG_FILE, PAIR_WEIGHTS_FILE, RESULT_FILE) + ((mf.MODEL_CARD,) if card else ())
    for name in names:
        tmp = shipped / f".{name}.tmp"
        shutil.copyfile(checkpoint / name, tmp)
        tmp.replace(shipped / name)
        m["files"][name] = mf.file_entry(shipped / name)
        if name not in mf.FILES and name not in m.setdefault("extra_files", []):
            m["extra_files"].append(name)
    m["total_bytes"] = sum(e["bytes"] for e in m["files"].values())
    mf.write_manifest(shipped, m)


def main() -> None:
    def cli(
        checkpoint: Annotated[Path, typer.Option(help="the zh checkpoint folder (e.g. a "
                                                      "registry version); the files go there")],
        data_dir: Annotated[Path, typer.Option(help="shared data folder")] = Path("../shared/data"),
        epochs: Annotated[float, typer.Option()] = 2.0,
        lr: Annotated[float, typer.Option()] = 4e-5,
        rank: Annotated[int, typer.Option(help="rank of each stored weight difference")] = 64,
        markers: Annotated[bool, typer.Option(help="mark the entity's and the other linked "
                                                   "entities' mentions in the window")] = False,
        seed: Annotated[int, typer.Option()] = 0,
        threads: Annotated[int | None, typer.Option(help="torch CPU threads")] = None,
        max_docs: Annotated[int | None, typer.Option(help="cap items per source (smoke)")] = None,
        shipped: Annotated[Path | None, typer.Option(help="also write the files into this "
                                                         "shipped folder")] = None,
    ) -> None:
        """Train the (entity, text window) pair model; choose its decision on dev; measure
        it on test beside the entity head alone."""
        from models.ship.manifest import ShipError

        try:
            if shipped is not None:
                check_shipped(checkpoint, shipped)
            result = run(checkpoint, data_dir, PairTrain(epochs=epochs, lr=lr, threads=threads,
                                                         max_docs=max_docs, seed=seed),
                         PairConfig(rank=rank, markers=markers))
            if shipped is not None:
                record_shipped(checkpoint, shipped)
        except (DataError, FileNotFoundError, ValueError, ShipError) as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from e
        e = result["entity_negative"]
        typer.echo(f"mix {result['mix']} threshold {result['threshold']} (dev F1 "
                   f"{result['dev_entity_f1']}); test entity negative F1: head "
                   f"{e['entity_head']['f1']}, head + pair {e['entity_head_and_pair']['f1']}")

    typer.run(cli)


if __name__ == "__main__":
    main()
