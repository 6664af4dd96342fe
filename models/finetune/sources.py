"""The real labelled sources a model may learn from, and the real sets it is judged on.

Why a registry of sources instead of "every CSV in a folder": the sources disagree on
what a label means. SEntFiN (Indian headlines) calls a reported loss *neutral* for the
company; the press-release benchmark we are judged on calls it *negative*, and "profit
rose" *positive*. Mixing them as they are cost the benchmark 8 macro-F1 points (the data
README's measurement). So every source carries a ``role``:

* ``train``   labels used as they are (the tweets, FinEntity, the two labelled tweet sets);
* ``polar``   only its polar rows teach (SEntFiN: its negatives and positives agree with the
  benchmark's convention; its neutrals include the reported-loss/profit rows that disagree);
* ``eval``    evaluation and model selection only, never trained on (SemEval-2017, FiQA);
* ``smoke``   project-written sentences: a smoke check, never the gate.

Paths are relative to the shared data folder (``--data-dir``); a missing optional source is
skipped with a note, a missing required one is a :class:`DataError` naming the folder.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from models.finetune.datasets import TWEETS_LABEL_MAP, DataError, Example, read_examples

REPO_ROOT = Path(__file__).resolve().parents[2]
EN = "en-financial-sentiment"
TWEETS = "twitter-financial-news-sentiment"

Role = Literal["train", "polar", "eval", "smoke"]


@dataclass(frozen=True)
class Source:
    name: str  # short name used in reports and recipe weights
    path: str  # relative to the data dir (or absolute for project files)
    role: Role
    label_map: str | None = None
    required: bool = False


SOURCES: tuple[Source, ...] = (
    Source("tweets", f"{TWEETS}/train.csv", "train", TWEETS_LABEL_MAP, required=True),
    Source("sentfin", f"{EN}/train/sentfin.csv", "polar"),
    Source("finentity", f"{EN}/train/finentity.csv", "train"),
    Source("wilksch", f"{EN}/train/wilksch_fin_tweets.csv", "train"),
    Source("taborda", f"{EN}/train/taborda_stock_tweets.csv", "train"),
    Source("valid", f"{TWEETS}/valid.csv", "eval", TWEETS_LABEL_MAP, required=True),
    Source("semeval_headlines", f"{EN}/eval/semeval2017_headlines.csv", "eval"),
    Source("semeval_microblogs", f"{EN}/eval/semeval2017_microblogs.csv", "eval"),
    Source("fiqa", f"{EN}/eval/fiqa2018_task1.csv", "eval"),
    Source("news_written", str(REPO_ROOT / "models/finetune/data/yuqing_news.jsonl"), "smoke"),
    Source("news_written_heldout",
           str(REPO_ROOT / "models/finetune/data/yuqing_news_heldout.jsonl"), "smoke"),
)
BY_NAME = {s.name: s for s in SOURCES}
DEFAULT_SOURCES = ("tweets", "sentfin", "finentity", "wilksch", "taborda", "news_written")


def load_source(data_dir: str | Path, name: str) -> list[Example] | None:
    """A source's rows (``Example.source`` = its short name), or None when the file is absent
    and the source is optional."""
    src = BY_NAME[name]
    path = Path(src.path) if Path(src.path).is_absolute() else Path(data_dir) / src.path
    if not path.is_file():
        if src.required:
            raise DataError(
                f"{path} not found: pass --data-dir pointing at the shared data folder "
                f"(the one holding {TWEETS}/; with make: DATA_DIR=/path/to/data)")
        print(f"note: source {name} skipped: {path} not found")
        return None
    rows = read_examples(path, label_map=src.label_map)
    rows = [Example(ex.text, ex.label, name, ex.line) for ex in rows]
    if src.role == "polar":
        rows = [ex for ex in rows if ex.label != "neutral"]
    return rows


def load_training(data_dir: str | Path, names: list[str]) -> dict[str, list[Example]]:
    out = {}
    for n in names:
        if n not in BY_NAME:
            raise DataError(f"unknown source {n!r}; known: {', '.join(BY_NAME)}")
        if BY_NAME[n].role == "eval":
            raise DataError(f"source {n!r} is evaluation-only and can never be trained on")
        rows = load_source(data_dir, n)
        if rows:
            out[n] = rows
    return out


def load_evals(data_dir: str | Path, smoke: bool = True) -> dict[str, list[Example]]:
    """Every evaluation set present: the real ``eval`` sets (the gate) and, with ``smoke``,
    the written held-out (reported, never gated on)."""
    out = {}
    for s in SOURCES:
        if s.role == "eval" or (smoke and s.name == "news_written_heldout"):
            rows = load_source(data_dir, s.name)
            if rows:
                out[s.name] = rows
    return out


@dataclass(frozen=True)
class EntityExample:
    """One (text, entity) pair with the entity's own label and its character span(s)."""

    text: str
    entity: str
    start: int
    end: int
    label: str
    source: str
    doc: int  # index of the document in its source (splits are by document)
    more_spans: tuple[tuple[int, int], ...] = ()  # later mentions, pooled with the first

    @property
    def spans(self) -> list[tuple[int, int]]:
        return [(self.start, self.end), *self.more_spans]


def _find_span(text: str, entity: str) -> tuple[int, int] | None:
    i = text.find(entity)
    if i < 0:
        i = text.casefold().find(entity.casefold())
    return (i, i + len(entity)) if i >= 0 else None


def load_entity_examples(data_dir: str | Path) -> list[EntityExample]:
    """SEntFiN's per-entity rows (span found in the headline) and FinEntity's spans.

    Rows whose entity string is not in the text are skipped (counted in the note)."""
    out: list[EntityExample] = []
    base = Path(data_dir) / EN / "train"
    sf = base / "sentfin_entities.csv"
    missing = 0
    if sf.is_file():
        docs: dict[str, int] = {}
        with sf.open(encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                text, ent, lab = row["text"], row["entity"], row["label"].strip().lower()
                span = _find_span(text, ent)
                if span is None:
                    missing += 1
                    continue
                d = docs.setdefault(text, len(docs))
                out.append(EntityExample(text, ent, *span, lab, "sentfin", d))
    fe = base / "finentity_entities.jsonl"
    if fe.is_file():
        with fe.open(encoding="utf-8") as f:
            for d, line in enumerate(f):
                if not line.strip():
                    continue
                row = json.loads(line)
                for e in row["entities"]:
                    out.append(EntityExample(row["text"], e["entity"], int(e["start"]),
                                             int(e["end"]), e["label"].strip().lower(),
                                             "finentity", d))
    if missing:
        print(f"note: {missing} SEntFiN entity rows skipped (entity not found in the text)")
    return out
