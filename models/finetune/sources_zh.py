"""The real Chinese sources, what each teaches, and the held-out splits the model is judged on.

``../shared/data/zh-financial-sentiment/`` (its README) holds three real sets, none of them
Chinese 3-class *news*:

* ``finfe`` (9,989 股吧 forum posts, 3-class, investor stance): the posts target is measured
  on its held-out split; it teaches forum language, not news.
* ``finnsp`` (3,998 news and Weibo items, mostly lending/P2P platforms): ``negative`` = the
  text is negative about one of its listed ``entity`` values, ``key_entity`` names which.
  Label 0 is "not negative about a listed entity", not "neutral". It teaches news-style
  negatives (documents) and *which* entity a negative is about (the entity head). For the
  document head its 0 rows count as neutral at a lower weight (most are neutral reports; a
  few are positive, which the lower weight tolerates).
* ``bank`` (7,518 bank and credit-card customer comments, 86% neutral): complaint language;
  a small weight, it is neither news nor investor stance.

Plus the project-written news and broker-report sentences (``news_zh_written``): the only
3-class news-style source; written by the project, so its own held-out is a smoke check,
never the gate.

Splits are by a hash of the normalised text (documents, for finnsp), so they are stable
when rows are added and reproducible without a saved index: 15% test, 10% dev, 75% train.
"""
from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from models.finetune.datasets import DataError, Example
from models.finetune.sources import EntityExample
from models.text_zh import normalize_zh

REPO_ROOT = Path(__file__).resolve().parents[2]
ZH = "zh-financial-sentiment"
NEWS_ZH = REPO_ROOT / "models/finetune/data/yuqing_news_zh.jsonl"
NEWS_ZH_HELDOUT = REPO_ROOT / "models/finetune/data/yuqing_news_zh_heldout.jsonl"
Split = Literal["train", "dev", "test"]
TEST_PCT, DEV_PCT = 15, 10


def split_of(key: str) -> Split:
    h = int(hashlib.sha1(normalize_zh(key).encode("utf-8")).hexdigest()[:8], 16) % 100
    return "test" if h < TEST_PCT else "dev" if h < TEST_PCT + DEV_PCT else "train"


def _csv(path: Path) -> list[dict]:
    if not path.is_file():
        raise DataError(f"{path} not found: point --data-dir at the shared data folder "
                        f"(it holds {ZH}/)")
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def load_labelled(data_dir: str | Path, name: Literal["finfe", "bank"]) -> list[Example]:
    file = {"finfe": "finfe_train.csv", "bank": "bank_comments.csv"}[name]
    rows = _csv(Path(data_dir) / ZH / file)
    out = []
    for i, r in enumerate(rows, start=2):
        text, label = (r.get("text") or "").strip(), (r.get("label") or "").strip().lower()
        if text and label in ("negative", "neutral", "positive"):
            out.append(Example(text, label, name, i))
    return out


@dataclass(frozen=True)
class NewsDoc:
    """One finnsp item: its text (title joined when the text does not hold it), the listed
    entities and the ones the negative is about."""

    text: str
    entities: tuple[str, ...]
    key_entities: frozenset[str]
    negative: bool
    index: int


def _entities(field: str) -> tuple[str, ...]:
    seen = dict.fromkeys(e.strip() for e in (field or "").split(";"))
    return tuple(e for e in seen if e)


def load_finnsp(data_dir: str | Path) -> list[NewsDoc]:
    out = []
    for i, r in enumerate(_csv(Path(data_dir) / ZH / "finnsp_train.csv")):
        text, title = (r.get("text") or "").strip(), (r.get("title") or "").strip()
        if title and title not in text:
            text = f"{title}。{text}"
        if not text:
            continue
        out.append(NewsDoc(text, _entities(r.get("entity", "")),
                           frozenset(_entities(r.get("key_entity", ""))),
                           (r.get("negative") or "0").strip() == "1", i))
    return out


def uncovered_spans(text: str, entity: str, others: tuple[str, ...]) -> list[tuple[int, int]]:
    """Every occurrence of ``entity`` in ``text`` that is not inside an occurrence of a
    longer listed entity (众车 inside 众车在线 is the longer name's mention: the linker's
    longest-match rule), in text order; the linker hands all of them to the entity head."""
    longer = [o for o in others if o != entity and entity in o]
    covered: list[tuple[int, int]] = []
    for o in longer:
        s = text.find(o)
        while s >= 0:
            covered.append((s, s + len(o)))
            s = text.find(o, s + 1)
    out = []
    s = text.find(entity)
    while s >= 0:
        e = s + len(entity)
        if not any(a <= s and e <= b for a, b in covered):
            out.append((s, e))
        s = text.find(entity, s + 1)
    return out


def news_examples(docs: list[NewsDoc]) -> list[Example]:
    """Document rows: negative items as ``negative``, the others as ``neutral`` (source
    ``finnsp_other``, weighted down in the recipe: "not negative" is not always neutral)."""
    return [Example(d.text, "negative" if d.negative else "neutral",
                    "finnsp" if d.negative else "finnsp_other", d.index) for d in docs]


def entity_examples(docs: list[NewsDoc]) -> tuple[list[EntityExample], int]:
    """(entity rows, listed entities with no uncovered mention in the text). An entity is
    ``negative`` when the item names it as the negative's subject, else ``neutral``."""
    rows, missing = [], 0
    for d in docs:
        for ent in d.entities:
            spans = uncovered_spans(d.text, ent, d.entities)
            if not spans:
                missing += 1
                continue
            label = "negative" if d.negative and ent in d.key_entities else "neutral"
            rows.append(EntityExample(d.text, ent, *spans[0], label, "finnsp", d.index,
                                      more_spans=tuple(spans[1:])))
    return rows, missing


def load_written(path: Path = NEWS_ZH) -> list[Example]:
    if not path.is_file():
        return []
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            r = json.loads(line)
            out.append(Example(r["text"], r["label"], "news_zh_written", i))
    return out


def load_splits(data_dir: str | Path, bank_neutral_keep: float = 0.25,
                max_rows: int | None = None, include_written: bool = True) -> dict:
    """Every source split train/dev/test (``split_of``): {source: {split: rows}}, plus the
    written sentences and their held-out."""
    finfe = load_labelled(data_dir, "finfe")
    bank = load_labelled(data_dir, "bank")
    # 86% of the comments are neutral: keep every polar one and one neutral in
    # ``bank_neutral_keep`` (by the split hash, so it is the same rows every run).
    keep = max(1, round(1 / bank_neutral_keep))
    bank = [ex for ex in bank if ex.label != "neutral"
            or int(hashlib.sha1(ex.text.encode()).hexdigest()[8:16], 16) % keep == 0]
    news = load_finnsp(data_dir)
    if max_rows:
        finfe, bank, news = (x[: max_rows] for x in (finfe, bank, news))
    by = lambda rows, key: {s: [r for r in rows if split_of(key(r)) == s]  # noqa: E731
                            for s in ("train", "dev", "test")}
    return {"finfe": by(finfe, lambda r: r.text), "bank": by(bank, lambda r: r.text),
            "finnsp": by(news, lambda d: d.text),
            "written": load_written() if include_written else [],
            "written_heldout": load_written(NEWS_ZH_HELDOUT)}
