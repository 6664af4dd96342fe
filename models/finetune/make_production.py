"""(Re)produce the production sentiment model with one command.

    python -m models.finetune.make_production --data-dir ../shared/data --registry var/models

Trains the chosen recipe (full fine-tuning of all-MiniLM-L6-v2, max_length 64, early
stopping), evaluates on the held-out sets, registers the checkpoint with its metrics and
model card, and promotes it through the registry gate.

Data (:mod:`models.finetune.sources`, each source with its role): the tweets
(``twitter-financial-news-sentiment/train.csv``, labels mapped by name), the real
``en-financial-sentiment/train/`` sets where present (SEntFiN polar rows only, FinEntity,
the two labelled tweet sets at half weight) and the project-written news sentences
(``--include-news``). With ``--teacher DIR`` (the output of ``python -m
models.finetune.teacher``) the student also learns the teacher's probabilities
(distillation). Checkpoint selection and the gate use real sets only: ``valid.csv`` (the
frozen primary set), SemEval-2017 headlines and FiQA (never trained on); the written
held-out is reported as a smoke check. Any text in an evaluation set is removed from
training.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import typer

from models.finetune.datasets import (
    DataError,
    Example,
    balance_report,
    dedupe,
    stratified_split,
)
from models.finetune.evaluate import evaluate_model, write_metrics
from models.finetune.sources import DEFAULT_SOURCES, load_evals, load_training
from models.finetune.train import TrainConfig, train
from models.gate import Gate
from models.registry import Registry
from models.sentiment.config import BASE_PACKAGE
from models.text import LABELS, normalize_text

REPO_ROOT = Path(__file__).resolve().parents[2]
TWEETS = "twitter-financial-news-sentiment"
PRIMARY_EVAL = f"{TWEETS}/valid.csv"
EVAL_KEYS = {"valid": PRIMARY_EVAL, "semeval_headlines": "semeval2017_headlines.csv",
             "semeval_microblogs": "semeval2017_microblogs.csv", "fiqa": "fiqa2018_task1.csv",
             "news_written_heldout": "yuqing_news_heldout.jsonl"}
SELECT_ON = ("valid", "semeval_headlines", "fiqa")  # real sets the checkpoint is chosen on
NEWS_TRAIN = REPO_ROOT / "models/finetune/data/yuqing_news.jsonl"
NEWS_HELDOUT = REPO_ROOT / "models/finetune/data/yuqing_news_heldout.jsonl"


@dataclass
class Recipe:
    method: Literal["full", "lora"] = "full"
    epochs: float = 4.0
    lr: float | None = None
    max_length: int = 64
    batch_size: int = 32
    dev_fraction: float = 0.1
    seed: int = 42
    include_news: Literal["auto", "yes", "no"] = "auto"
    news_repeat: int = 1  # the news set is small next to 11k tweets; >1 upweights it
    # Drop train.csv rows longer than this many tokens (None/0: keep all). ~15% of
    # train.csv (1,671 rows, all but 2 polar: ticker-list "Upgrades/Downgrades" posts and
    # FX news paragraphs) exceed 64 tokens; valid.csv has 1 such row in 2,388.
    max_tweet_tokens: int | None = None
    freeze_embeddings: bool = True  # full fine-tuning: keep the word-embedding matrix pretrained
    threads: int | None = None
    device: str = "auto"
    base: str = BASE_PACKAGE  # the encoder to fine-tune: the packaged MiniLM or any HF folder
    max_steps: int | None = None  # cap on optimiser steps (smoke runs, tests)
    extra: list[Example] = field(default_factory=list)  # e.g. feedback labels (retrain)
    # the real sources (models.finetune.sources); "news_written" follows include_news
    sources: tuple[str, ...] = DEFAULT_SOURCES
    source_weights: dict[str, float] = field(
        default_factory=lambda: {"wilksch": 0.5, "taborda": 0.5})
    teacher: str | None = None  # folder holding soft_targets.npz (models.finetune.teacher)
    distill_alpha: float = 0.5
    select_on_real: bool = True  # choose the checkpoint on SELECT_ON, not the dev split
    entity_weight: float = 0.5  # joint entity-level loss (0: no entity head)
    # each entity's own label for texts naming several (models.finetune.entity_pair_en),
    # trained on the new checkpoint before it is evaluated
    entity_pair: bool = True


def load_sources(data_dir: str | Path, recipe: Recipe) -> tuple[list[Example], dict, dict]:
    """(training pool, {eval name: examples}, provenance)."""
    names = [n for n in recipe.sources if n != "news_written"]
    if "tweets" not in names:
        names.insert(0, "tweets")
    if recipe.include_news == "yes" or (recipe.include_news == "auto" and NEWS_TRAIN.is_file()):
        if not NEWS_TRAIN.is_file():
            raise DataError(f"{NEWS_TRAIN} not found (--include-news yes)")
        names.append("news_written")
    by_source = load_training(data_dir, names)
    prov = {n: f"{len(rows)} rows" + (f", weight {recipe.source_weights[n]}"
                                      if n in recipe.source_weights else "")
            for n, rows in by_source.items()}
    if recipe.max_tweet_tokens:
        from models.sentiment.network import tokenizer_file
        from models.sentiment.tokenize import TextEncoder

        # Count up to 4x the cap so "longer than the cap" is exact (lengths are post-truncation).
        counter = TextEncoder(tokenizer_file(recipe.base), 4 * recipe.max_tweet_tokens)
        tweets = by_source["tweets"]
        lengths = counter.lengths([ex.text for ex in tweets])
        by_source["tweets"] = [ex for ex, n in zip(tweets, lengths, strict=True)
                               if n <= recipe.max_tweet_tokens]
        prov["tweets"] += (f", {len(tweets) - len(by_source['tweets'])} rows > "
                           f"{recipe.max_tweet_tokens} tokens dropped")
    pool = [ex for rows in by_source.values() for ex in rows]
    evals = {EVAL_KEYS[n]: exs for n, exs in load_evals(data_dir).items()}
    if recipe.extra:
        pool += recipe.extra
        prov["extra"] = f"{len(recipe.extra)} feedback rows"
    return pool, evals, prov


def soft_targets_for(teacher: str | Path, rows: list[Example], smoothing: float = 0.05
                     ) -> tuple[np.ndarray, int]:
    """Teacher probabilities for ``rows`` (by normalised text); rows the teacher never saw
    (feedback labels) get their own label, smoothed. Returns (probs, rows missing)."""
    path = Path(teacher) / "soft_targets.npz"
    if not path.is_file():
        raise DataError(f"{path} not found: run `python -m models.finetune.teacher --out "
                        f"{teacher}` first (or drop --teacher)")
    d = np.load(path, allow_pickle=False)
    if tuple(d["labels"]) != LABELS:
        raise DataError(f"{path}: label order {tuple(d['labels'])} is not {LABELS}")
    index = {t: i for i, t in enumerate(d["texts"].tolist())}
    probs = np.zeros((len(rows), len(LABELS)), np.float32)
    missing = 0
    for i, ex in enumerate(rows):
        j = index.get(normalize_text(ex.text))
        if j is None:
            missing += 1
            probs[i] = smoothing / len(LABELS)
            probs[i, LABELS.index(ex.label)] += 1 - smoothing
        else:
            probs[i] = d["probs"][j]
    return probs, missing


def run(
    data_dir: str | Path,
    registry_root: str | Path,
    recipe: Recipe,
    version: str | None = None,
    promote: bool = True,
    gate: Gate | None = None,
) -> dict:
    """Train + evaluate + register (+ promote). Returns a summary dict."""
    pool, evals, prov = load_sources(data_dir, recipe)
    eval_texts = [ex.text for exs in evals.values() for ex in exs]
    pool, rep = dedupe(pool, exclude_texts=eval_texts)
    print(f"training pool: {rep}")
    train_set, dev_set = stratified_split(pool, recipe.dev_fraction, recipe.seed)
    if recipe.news_repeat > 1:  # upweight in-domain news rows in train only (dev stays clean)
        news = [ex for ex in train_set if ex.source == "news_written"]
        train_set = train_set + news * (recipe.news_repeat - 1)
    sources = ("distilled" if recipe.teacher else "real") if len(prov) > 1 else "tweets"
    version = version or (
        f"minilm-{recipe.method}-{sources}-" + datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    )
    soft = None
    if recipe.teacher:
        soft, missing = soft_targets_for(recipe.teacher, train_set)
        prov["teacher"] = f"{recipe.teacher} (alpha {recipe.distill_alpha}; {missing} rows " \
                          "without teacher targets use their label)"
    select = {k: evals[k] for k in (EVAL_KEYS[n] for n in SELECT_ON) if k in evals} \
        if recipe.select_on_real else None
    work = Path(registry_root) / ".work" / version
    tcfg = TrainConfig(
        base=recipe.base,
        max_steps=recipe.max_steps,
        method=recipe.method,
        epochs=recipe.epochs,
        lr=recipe.lr,
        max_length=recipe.max_length,
        batch_size=recipe.batch_size,
        seed=recipe.seed,
        threads=recipe.threads,
        device=recipe.device,
        freeze_embeddings=recipe.freeze_embeddings,
        distill_alpha=recipe.distill_alpha if recipe.teacher else 0.0,
        source_weights=dict(recipe.source_weights),
        version=version,
        data={
            **prov,
            "dedupe": str(rep),
            "dev_fraction": recipe.dev_fraction,
            "train_balance": balance_report("train", train_set),
            "eval_sets": ", ".join(evals),
            "selected_on": ", ".join(select) if select else "dev split",
        },
    )
    ent_train, ent_test = [], []
    if recipe.entity_weight > 0:
        from models.finetune.entity_head import EntityHeadConfig, split_by_document
        from models.finetune.sources import load_entity_examples

        ent_rows = [r for r in load_entity_examples(data_dir) if r.label in LABELS]
        ent_train, ent_test = split_by_document(ent_rows, EntityHeadConfig(seed=recipe.seed))
        held = {r.text for r in ent_test}
        train_set = [ex for ex in train_set if ex.text not in held]
        tcfg.entity_weight = recipe.entity_weight if ent_train else 0.0
        prov["entities"] = f"{len(ent_train)} (text, entity) rows; {len(ent_test)} held out"
        tcfg.data["entities"] = prov["entities"]
    result = train(tcfg, train_set, dev_set, work, soft=soft, select_sets=select,
                   entity_rows=ent_train)

    if recipe.entity_pair and ent_test and tcfg.entity_weight > 0:
        from models.finetune.entity_pair import PairTrain
        from models.finetune.entity_pair_en import run as train_entity_pair

        # it splits by the student's seed (in its config), so ent_test stays held out
        train_entity_pair(result.path, Path(data_dir),
                          PairTrain(epochs=3.0, batch_size=32, threads=recipe.threads,
                                    length_grouped=True, max_steps=recipe.max_steps,
                                    max_docs=200 if recipe.max_steps else None))

    from models.sentiment.predictor import SentimentModel

    model = SentimentModel.from_checkpoint(result.path, device=recipe.device, backend="fp32")
    results = {}
    for name, exs in evals.items():
        results[name] = evaluate_model(model, exs, eval_set=name)
        write_metrics(results[name], result.path / f"eval-{Path(name).stem}.json", name)
    results["dev"] = {**result.dev_metrics, "eval_set": "dev split of training pool"}
    if ent_test:
        import json

        from models.finetune.entity_head import evaluate_entities

        results["entities"] = evaluate_entities(model, ent_test)
        (result.path / "eval-entities.json").write_text(
            json.dumps(results["entities"], indent=2) + "\n")
        print(f"entity level: {results['entities']}")
    metrics = {
        **results[PRIMARY_EVAL],
        "evals": results,
        "train_seconds": result.train_seconds,
        "steps": result.steps,
    }
    reg = Registry(registry_root)
    version = reg.register(result.path, metrics, version=version)
    shutil.rmtree(work, ignore_errors=True)
    promoted = reg.promote(version, gate=gate or Gate()) if promote else False
    last = reg.decisions()[-1] if promote else {}
    print(
        f"registered {version} in {registry_root}; promoted: {promoted} "
        f"{'; '.join(last.get('reasons', []))}"
    )
    return {
        "version": version,
        "promoted": promoted,
        "metrics": metrics,
        "decision": last,
        "path": str(Path(registry_root) / "versions" / version),
    }


def main() -> None:

    def cli(
        data_dir: Annotated[Path, typer.Option(help="shared data folder")] = Path("../shared/data"),
        registry: Annotated[Path, typer.Option(help="model registry root")] = Path("var/models"),
        method: Annotated[str, typer.Option(help="full | lora")] = "full",
        epochs: Annotated[
            float, typer.Option(help="upper bound; early stopping on dev macro-F1")
        ] = 4.0,
        lr: Annotated[float | None, typer.Option(help="default 8e-5 (full) / 1e-3 (lora)")] = None,
        include_news: Annotated[
            str, typer.Option(help="auto | yes | no: yuqing_news.jsonl")
        ] = "auto",
        news_repeat: Annotated[int, typer.Option(help="repeat news rows N times (upweight)")] = 1,
        max_tweet_tokens: Annotated[
            int, typer.Option(help="drop train.csv rows longer than N tokens (0: keep all)")
        ] = 0,
        freeze_embeddings: Annotated[
            bool, typer.Option(help="full: keep the word-embedding matrix frozen")
        ] = True,
        teacher: Annotated[
            Path | None, typer.Option(help="teacher folder with soft_targets.npz (distil)")
        ] = None,
        distill_alpha: Annotated[float, typer.Option(help="weight of the teacher targets")] = 0.5,
        sources: Annotated[
            str, typer.Option(help="comma-separated training sources (models.finetune.sources)")
        ] = ",".join(DEFAULT_SOURCES),
        seed: Annotated[int, typer.Option()] = 42,
        threads: Annotated[
            int | None, typer.Option(help="torch CPU threads (default: half the logical CPUs)")
        ] = None,
        version: Annotated[
            str | None, typer.Option(help="version name (default: derived + timestamp)")
        ] = None,
        promote: Annotated[
            bool, typer.Option(help="promote through the gate after registering")
        ] = True,
        force: Annotated[
            bool, typer.Option(help="train even if a production model exists")
        ] = False,
    ) -> None:
        """Train, evaluate, register and promote the production sentiment model."""
        if method not in ("full", "lora"):
            raise typer.BadParameter("method must be full or lora")
        from models.registry import production

        if promote and not force and (ref := production(registry)) is not None:
            typer.echo(
                f"production model {ref.version} already in {registry}; nothing to do "
                "(--force to train a new candidate anyway)"
            )
            return
        try:
            run(
                data_dir,
                registry,
                Recipe(
                    method=method,
                    epochs=epochs,
                    lr=lr,
                    include_news=include_news,
                    news_repeat=news_repeat,
                    max_tweet_tokens=max_tweet_tokens or None,
                    freeze_embeddings=freeze_embeddings,
                    seed=seed,
                    threads=threads,
                    teacher=str(teacher) if teacher else None,
                    distill_alpha=distill_alpha,
                    sources=tuple(x.strip() for x in sources.split(",") if x.strip()),
                ),
                version=version,
                promote=promote,
            )
        except DataError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from e

    typer.run(cli)


if __name__ == "__main__":
    main()
