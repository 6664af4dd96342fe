"""Train the English entity pair model: each entity's own label where a text names several.

    python -m models.finetune.entity_pair_en --checkpoint var/models/versions/<en version>

The one-pass entity head (``models.sentiment.entities``) reads every entity of a headline
from the same contextual states, so "Bank A sues Company B" gives A and B much the same
vector; on the held-out mixed SEntFiN headlines (entities that differ in sentiment) it
scores 0.752. A pair input, ``[CLS] entity [SEP] text around its first mention [SEP]``,
lets attention condition on the entity (the standard aspect-sentiment input); it costs a
pass per entity, so it runs only for texts naming two or more linked entities
(``PairConfig.min_entities``), the passes of a whole micro-batch in one call.

Data: SEntFiN's per-entity labels and FinEntity's spans (``load_entity_examples``). The test
split is the entity head's (``entity_head.split_by_document`` with the student's training
seed: 30% of the mixed headlines, by headline, never trained on here either); a further
``dev_fraction`` of the remaining mixed headlines is held out of pair training and chooses
the mix with the head. The head itself was trained jointly with the student on those dev
headlines, so dev flatters it: the mix chosen there leans toward the head, never toward the
pair model. Texts whose entities
differ in label (SEntFiN's mixed headlines, a few FinEntity sentences) weigh ``mixed_weight``
in the loss (they teach what a document label cannot).

What ships is the update over the document model's encoder as low-rank factors
(``models.finetune.entity_pair.compress``), fp16, beside ``entity_pair.json``; the rank is
chosen on dev among those that keep the shipped English model within 30 MB (``RANKS``), and
the uncompressed model's test figure is reported beside it (never shipped or selected on).
"""
from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from models.finetune.datasets import DataError
from models.finetune.entity_head import EntityHeadConfig, evaluate_entities, split_by_document
from models.finetune.entity_pair import (
    PairTrain,
    check_shipped,
    compressed_weights,
    fit_pair,
    record_shipped,
    save,
)
from models.finetune.sources import EntityExample, load_entity_examples
from models.sentiment.entity_pair import (
    EntityPairScorer,
    PairConfig,
    merge_lora,
    mix_probs,
    pair_window,
)
from models.text import LABELS


@dataclass
class PairSplit:
    dev_fraction: float = 0.2  # of the mixed SEntFiN headlines outside the test split
    mixed_weight: float = 2.0
    seed: int = 7


def english_pair_config() -> PairConfig:
    """English texts are headlines and news sentences: the window holds the whole sentence."""
    return PairConfig(kind="sentiment", max_length=128, window=400, before=200, rank=64,
                      mix=0.0, threshold=0.5, min_entities=2)


def _by_text(rows: list[EntityExample]) -> dict[str, list[EntityExample]]:
    out: dict[str, list[EntityExample]] = defaultdict(list)
    for r in rows:
        out[r.text].append(r)
    return out


def split_dev(train: list[EntityExample], sp: PairSplit
              ) -> tuple[list[EntityExample], list[EntityExample]]:
    """(pair training rows, dev rows): dev = ``dev_fraction`` of the mixed SEntFiN headlines
    of the training split, whole headlines."""
    by_text = _by_text(train)
    mixed = sorted(t for t, rs in by_text.items()
                   if rs[0].source == "sentfin" and len({r.label for r in rs}) > 1)
    rng = np.random.default_rng(sp.seed)
    dev = set(rng.permutation(np.array(mixed, dtype=object))
              [: int(round(len(mixed) * sp.dev_fraction))].tolist())
    return [r for r in train if r.text not in dev], [r for r in train if r.text in dev]


def pair_rows(rows: list[EntityExample], cfg: PairConfig, normalize
              ) -> list[tuple[str, str]]:
    """What serving passes: the entity as written at its mention and the window there."""
    return [(r.text[r.start:r.end], pair_window(r.text, r.start, cfg, normalize)) for r in rows]


def _multi(rows: list[EntityExample], cfg: PairConfig) -> list[EntityExample]:
    """The rows of texts with ``min_entities`` or more (the ones the pair model decides),
    grouped by text in first-seen order."""
    by_text = _by_text(rows)
    return [r for t, rs in by_text.items() if len(rs) >= cfg.min_entities for r in rs]


def dev_probs(model, scorer: EntityPairScorer, rows: list[EntityExample]
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(head probabilities, pair probabilities, truth) of the dev entities the pair model
    decides (:func:`_multi`)."""
    by_text = _by_text(_multi(rows, scorer.cfg))
    texts = list(by_text)
    pair_model, model.entity_pair = model.entity_pair, None
    try:
        _, ent_p = model.predict_entities(texts, [[[(r.start, r.end)] for r in by_text[t]]
                                                  for t in texts])
    finally:
        model.entity_pair = pair_model
    flat = [r for t in texts for r in by_text[t]]
    head = np.concatenate(ent_p) if texts else np.zeros((0, len(LABELS)), np.float32)
    pair = scorer.probs(pair_rows(flat, scorer.cfg, scorer.normalize))
    return head, pair, np.array([LABELS.index(r.label) for r in flat])


def select_mix(head: np.ndarray, pair: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(mix, dev accuracy): the best on a 0.1 grid; ties go to the smaller mix (the pair)."""
    best = (0.0, -1.0)
    for mix in np.round(np.arange(0.0, 1.001, 0.1), 2):
        acc = float((mix_probs(head, pair, float(mix)).argmax(1) == truth).mean())
        if acc > best[1] + 1e-9:
            best = (float(mix), acc)
    return best


# Ranks whose factors fit the shipped English model's 30 MB with the student's delta (22.2 MB):
# rank 64 is 5.8 MB, rank 80 7.1 MB.
RANKS = (64, 80)


def run(checkpoint: Path, data_dir: Path, tr: PairTrain, sp: PairSplit | None = None,
        cfg: PairConfig | None = None, ranks: tuple[int, ...] = RANKS) -> dict:
    from models.sentiment.predictor import SentimentModel

    sp = sp or PairSplit()
    model = SentimentModel.from_checkpoint(checkpoint, device="cpu", backend="auto")
    if model.config.language != "en" or model.entity_head is None:
        raise DataError(f"{checkpoint} is not an English model with an entity head: the "
                        "pair model is trained for one (make model-train)")
    model.entity_pair = None
    rows = [r for r in load_entity_examples(data_dir) if r.label in LABELS]
    if not rows:
        raise DataError(f"no entity rows under {data_dir}/en-financial-sentiment/train "
                        "(sentfin_entities.csv, finentity_entities.jsonl)")
    # the student's own entity split (its training seed): its held-out headlines stay out
    split_seed = int((model.config.training or {}).get("seed", EntityHeadConfig().seed))
    train, test = split_by_document(rows, EntityHeadConfig(seed=split_seed))
    fit, dev = split_dev(train, sp)
    if tr.max_docs:
        fit, dev, test = fit[: tr.max_docs], dev[: tr.max_docs], test[: tr.max_docs]
    cfg = cfg or english_pair_config()
    cfg.base_version = model.version
    normalize = model.text_encoder.normalize
    mixed_texts = {t for t, rs in _by_text(fit).items() if len({r.label for r in rs}) > 1}
    weights_of = [sp.mixed_weight if r.text in mixed_texts else 1.0 for r in fit]
    print(f"entity pair model (en): {len(fit)} pairs from {len(_by_text(fit))} texts "
          f"({len(mixed_texts)} mixed); dev {len(dev)}, test {len(test)} entities", flush=True)
    tok = checkpoint / "tokenizer.json"
    t0 = time.time()
    trained = fit_pair(model.network.encoder, pair_rows(fit, cfg, normalize),
                       [LABELS.index(r.label) for r in fit], cfg, tr, tok, normalize, weights_of)
    train_seconds = round(time.time() - t0)
    # the update is stored low-rank; the rank is chosen on dev among those that fit the size
    # budget (ties: the smaller), beside the uncompressed model for the record
    head, full, truth = dev_probs(model, trained, dev)
    candidates: dict[int, tuple[dict, EntityPairScorer, np.ndarray]] = {}
    for rank in ranks:
        w = compressed_weights(trained, model.network.encoder, rank)
        sc = EntityPairScorer(merge_lora(model.network.encoder, w, 1.0), w["head.weight"],
                              w["head.bias"], cfg, tok, normalize)
        candidates[rank] = (w, sc, sc.probs(pair_rows(_multi(dev, cfg), cfg, normalize)))
    choice = {r: select_mix(head, c[2], truth) for r, c in candidates.items()}
    rank = max(ranks, key=lambda r: (round(choice[r][1], 6), -r))
    weights, scorer, pair = candidates[rank]
    mix, dev_acc = choice[rank]
    cfg.mix, cfg.rank = mix, rank
    fidelity = {"dev_entities": int(len(truth)),
                "same_top_class_as_uncompressed": round(float(
                    (pair.argmax(1) == full.argmax(1)).mean()), 4),
                "largest_difference": round(float(np.abs(pair - full).max()), 4)}
    print(f"rank {rank} chosen on dev: {json.dumps(fidelity)}", flush=True)
    dev_report = {
        "entities": int(len(truth)), "selected_mix": mix, "selected_rank": rank,
        "accuracy": {"entity_head": round(float((head.argmax(1) == truth).mean()), 4),
                     "pair_uncompressed": round(float((full.argmax(1) == truth).mean()), 4),
                     **{f"pair_rank_{r}": round(float((c[2].argmax(1) == truth).mean()), 4)
                        for r, c in candidates.items()},
                     "selected": round(dev_acc, 4)}}
    cfg.training = {**asdict(tr), **asdict(sp), "pairs": len(fit), "split_seed": split_seed,
                    "train_seconds": train_seconds,
                    "compressed_vs_trained": fidelity,
                    "selected_on": "dev mixed SEntFiN headlines: per-entity accuracy",
                    "dev": dev_report}
    head_only = evaluate_entities(model, test)
    model.entity_pair = trained
    uncompressed = evaluate_entities(model, test)
    model.entity_pair = scorer
    with_pair = evaluate_entities(model, test)
    result = {"model_version": model.version, "mix": mix, "rank": rank, "dev": dev_report,
              "test": head_only["test"],
              "document_label": head_only["document_label"],
              "entity_head": head_only["entity_head"],
              "entity_head_and_pair": with_pair["entity_head"],
              "not_shipped_uncompressed_pair": uncompressed["entity_head"]}
    save(checkpoint, weights, cfg, result)
    write_card(checkpoint, result)
    return result


CARD_HEADING = "### Entity level: held-out mixed SEntFiN headlines"


def card_section(result: dict) -> str:
    """The model card's entity-level section, from the pair model's ``result``."""
    def row(name: str, key: str) -> str:
        return f"| {name} | {result[key]['accuracy']:.3f} | {result[key]['macro_f1']:.3f} |"

    return "\n".join([
        f"{CARD_HEADING} ({result['test'].split(' held-out')[0]} headlines, "
        f"{result['test'].split(', ')[1].split(' ')[0]} entities)", "",
        "Headlines whose entities differ in sentiment, split by headline, never trained on.", "",
        "| per entity | accuracy | macro-F1 |", "| --- | --- | --- |",
        row("each entity given its document's predicted label", "document_label"),
        row("entity head (one pass per document)", "entity_head"),
        row("entity head + entity pair model (shipped)", "entity_head_and_pair"), "",
        "The entity pair model (`entity_pair.json`, `entity_pair.safetensors`: a fine-tuned "
        "copy of\nthis encoder reading `entity [SEP] text`, stored as "
        f"rank-{result['rank']} fp16 factors of its weight\ndifferences) runs only for texts "
        "naming two or more linked entities; its probabilities are\nmixed with the head's "
        f"(head weight {result['mix']}, chosen on a dev split of the training headlines).\n"
        "Rebuild: `make model-pair` (~25 min on one core; `eval-entity-pair.json`).", "", ""])


def write_card(folder: Path, result: dict) -> None:
    """Put (or replace) the entity-level section in the folder's MODEL_CARD.md, before its
    Limitations (the pack ships a checkpoint's card as it is)."""
    card = folder / "MODEL_CARD.md"
    if not card.is_file():
        return
    text = card.read_text()
    if CARD_HEADING in text:  # drop the previous section, up to the next heading of any level
        start = text.index(CARD_HEADING)
        nxt = [i for i in (text.find("\n#", start + 1),) if i >= 0]
        text = text[:start] + (text[nxt[0] + 1:] if nxt else "")
    section = card_section(result)
    anchor = text.find("## Limitations")
    text = (text[:anchor] + section + text[anchor:]) if anchor >= 0 else \
        text.rstrip("\n") + "\n\n" + section
    tmp = card.with_name(f".{card.name}.tmp")
    tmp.write_text(text)
    tmp.replace(card)


def main() -> None:
    def cli(
        checkpoint: Annotated[Path, typer.Option(help="the English checkpoint folder (e.g. a "
                                                      "registry version); the files go there")],
        data_dir: Annotated[Path, typer.Option(help="shared data folder")] = Path("../shared/data"),
        epochs: Annotated[float, typer.Option()] = 3.0,
        lr: Annotated[float, typer.Option()] = 4e-5,
        batch_size: Annotated[int, typer.Option()] = 32,
        rank: Annotated[list[int] | None, typer.Option(
            help="candidate ranks of the stored weight differences (repeat; chosen on dev)")
        ] = None,
        threads: Annotated[int | None, typer.Option(help="torch CPU threads")] = None,
        max_docs: Annotated[int | None, typer.Option(help="cap rows per split (smoke)")] = None,
        shipped: Annotated[Path | None, typer.Option(help="also write the files into this "
                                                         "shipped folder")] = None,
    ) -> None:
        """Train the (entity, text) pair model; choose its mix with the entity head on dev;
        measure per-entity accuracy on the held-out mixed headlines beside the head alone."""
        from models.ship.manifest import ShipError

        cfg = english_pair_config()
        try:
            if shipped is not None:
                check_shipped(checkpoint, shipped)
            result = run(checkpoint, data_dir,
                         PairTrain(epochs=epochs, lr=lr, batch_size=batch_size, threads=threads,
                                   max_docs=max_docs, length_grouped=True), cfg=cfg,
                         ranks=tuple(rank) if rank else RANKS)
            if shipped is not None:
                record_shipped(checkpoint, shipped, card=True)
        except (DataError, FileNotFoundError, ValueError, ShipError) as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from e
        acc = {k: result[k]["accuracy"] for k in
               ("document_label", "entity_head", "entity_head_and_pair")}
        typer.echo(f"rank {result['rank']}, mix {result['mix']} (dev "
                   f"{json.dumps(result['dev']['accuracy'])}); test per-entity accuracy: "
                   f"{json.dumps(acc)}")

    typer.run(cli)


if __name__ == "__main__":
    main()
