"""Labelled datasets: loading (CSV/JSONL), label mapping by name, cleaning, splits.

Every row error names the file and line, because these files are edited by hand
(feedback labels, project-owned news sets) and "KeyError: 7" after ten minutes
of training is useless. Labels are always mapped BY NAME onto ``models.text.LABELS``
so a dataset whose integer order differs (the tweets: 0=bearish, 1=bullish,
2=neutral) cannot silently swap positive and neutral.
"""
from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.text import LABELS, normalize_text

LABEL_ALIASES = {"bearish": "negative", "bullish": "positive", "neg": "negative",
                 "pos": "positive", "neu": "neutral"}

TWEETS_LABEL_MAP = "0=negative,1=positive,2=neutral"
"""twitter-financial-news-sentiment: 0=bearish, 1=bullish, 2=neutral."""


class DataError(ValueError):
    """A dataset row or file is unusable; the message names file and line."""


@dataclass(frozen=True)
class Example:
    text: str
    label: str  # one of LABELS
    source: str = ""  # file name or "feedback"; used for per-source reports
    line: int = 0


def parse_label_map(spec: str | dict | None) -> dict[str, str] | None:
    """``"0=negative,1=positive,2=neutral"`` -> {"0": "negative", ...}; names validated."""
    if spec is None or spec == "":
        return None
    if isinstance(spec, dict):
        items = [(str(k), str(v)) for k, v in spec.items()]
    else:
        items = []
        for part in spec.split(","):
            if "=" not in part:
                raise DataError(f"label map entry {part!r} is not RAW=NAME (e.g. 0=negative)")
            k, v = part.split("=", 1)
            items.append((k.strip(), v.strip()))
    out = {}
    for k, v in items:
        name = LABEL_ALIASES.get(v.lower(), v.lower())
        if name not in LABELS:
            raise DataError(f"label map {k}={v}: {v!r} is not one of {', '.join(LABELS)}")
        out[k] = name
    return out


def _map_label(raw, label_map: dict[str, str] | None, where: str) -> str:
    if raw is None or str(raw).strip() == "":
        raise DataError(f"{where}: empty label")
    key = str(raw).strip()
    if label_map is not None:
        if key not in label_map and key.lower() in LABELS:
            return key.lower()  # canonical names always pass, so one map fits mixed sources
        if key not in label_map:
            raise DataError(
                f"{where}: unknown label {key!r}; the label map knows {sorted(label_map)} "
                "(pass --label-map RAW=NAME,...)"
            )
        return label_map[key]
    name = LABEL_ALIASES.get(key.lower(), key.lower())
    if name not in LABELS:
        raise DataError(
            f"{where}: unknown label {key!r}; expected one of {', '.join(LABELS)} "
            "or pass --label-map (e.g. 0=negative,1=positive,2=neutral)"
        )
    return name


def read_examples(
    path: str | Path,
    text_col: str = "text",
    label_col: str = "label",
    label_map: str | dict | None = None,
    on_error: str = "raise",
) -> list[Example]:
    """Read a CSV (header row) or JSONL file into Examples. ``on_error``: raise|skip."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    lmap = parse_label_map(label_map)
    out: list[Example] = []
    errors: list[str] = []
    no_content: list[int] = []

    def add(text, raw_label, line: int) -> None:
        where = f"{path}:{line}"
        try:
            if text is None or not str(text).strip():
                raise DataError(f"{where}: empty text")
            label = _map_label(raw_label, lmap, where)
        except DataError as e:
            if on_error == "raise":
                raise
            errors.append(str(e))
            return
        if not normalize_text(str(text)):
            # e.g. a tweet that is only a URL: a valid row with nothing to learn from.
            no_content.append(line)
            return
        out.append(Example(str(text), label, path.name, line))

    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        with path.open(encoding="utf-8") as f:
            for i, raw in enumerate(f, 1):
                if not raw.strip():
                    continue
                try:
                    row = json.loads(raw)
                    if not isinstance(row, dict):
                        raise ValueError("not a JSON object")
                except ValueError as e:
                    err = DataError(f"{path}:{i}: malformed JSON line ({e})")
                    if on_error == "raise":
                        raise err from e
                    errors.append(str(err))
                    continue
                add(row.get(text_col), row.get(label_col), i)
    else:
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            missing = {text_col, label_col} - set(reader.fieldnames or [])
            if missing:
                raise DataError(
                    f"{path}:1: header {reader.fieldnames} lacks column(s) {sorted(missing)} "
                    "(use --text-col/--label-col)"
                )
            for row in reader:
                line = reader.line_num
                if None in row or any(row.get(c) is None for c in (text_col, label_col)):
                    err = DataError(f"{path}:{line}: malformed row (wrong number of fields)")
                    if on_error == "raise":
                        raise err
                    errors.append(str(err))
                    continue
                add(row[text_col], row[label_col], line)
    if no_content:
        print(f"note: {path}: dropped {len(no_content)} rows with no text after normalisation "
              f"(URL-only etc.), lines {no_content[:5]}{'...' if len(no_content) > 5 else ''}")
    if errors:
        print(f"warning: skipped {len(errors)} bad rows in {path}; first: {errors[0]}")
    if not out:
        raise DataError(f"{path}: no usable rows")
    return out


@dataclass
class CleanReport:
    kept: int = 0
    exact_duplicates: int = 0
    conflicting_texts: int = 0  # normalised text seen with different labels: all dropped
    excluded_overlap: int = 0  # removed because the text is in an evaluation set
    examples: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (f"kept {self.kept} rows; removed {self.exact_duplicates} duplicates, "
                f"{self.conflicting_texts} texts with conflicting labels, "
                f"{self.excluded_overlap} rows overlapping evaluation data")


def dedupe(
    examples: Sequence[Example], exclude_texts: Iterable[str] = ()
) -> tuple[list[Example], CleanReport]:
    """Drop duplicate texts (after normalisation, case-folded), conflicting labels, and
    any text in ``exclude_texts`` (evaluation sets), keeping first occurrences in order."""
    key = lambda t: normalize_text(t).casefold()  # noqa: E731
    excluded = {key(t) for t in exclude_texts}
    labels_by_key: dict[str, set[str]] = {}
    for ex in examples:
        labels_by_key.setdefault(key(ex.text), set()).add(ex.label)
    rep = CleanReport()
    seen: set[str] = set()
    out = []
    for ex in examples:
        k = key(ex.text)
        if k in excluded:
            rep.excluded_overlap += 1
            continue
        if len(labels_by_key[k]) > 1:
            rep.conflicting_texts += 1
            if len(rep.examples) < 5:
                rep.examples.append(f"{ex.source}:{ex.line} conflicting labels")
            continue
        if k in seen:
            rep.exact_duplicates += 1
            continue
        seen.add(k)
        out.append(ex)
    rep.kept = len(out)
    return out, rep


def stratified_split(
    examples: Sequence[Example], dev_fraction: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """Deterministic stratified split: same input order + seed -> same split.

    Per class, indices are shuffled with a seeded generator and the first
    ``round(n_c * dev_fraction)`` (at least 1 when the class has >= 2 rows) go to dev.
    """
    if not 0.0 < dev_fraction < 1.0:
        raise ValueError("dev_fraction must be in (0, 1)")
    rng = np.random.default_rng(seed)
    dev_idx: list[int] = []
    for label in LABELS:
        idx = np.array([i for i, ex in enumerate(examples) if ex.label == label])
        if len(idx) == 0:
            continue
        rng.shuffle(idx)
        k = int(round(len(idx) * dev_fraction))
        if len(idx) >= 2:
            k = min(max(k, 1), len(idx) - 1)
        dev_idx.extend(idx[:k].tolist())
    dev_set = set(dev_idx)
    train = [ex for i, ex in enumerate(examples) if i not in dev_set]
    dev = [examples[i] for i in sorted(dev_set)]
    return train, dev


def class_balance(examples: Sequence[Example]) -> dict[str, int]:
    c = Counter(ex.label for ex in examples)
    return {label: c.get(label, 0) for label in LABELS}


def balance_report(name: str, examples: Sequence[Example]) -> str:
    counts = class_balance(examples)
    n = max(len(examples), 1)
    parts = " · ".join(f"{k} {v} ({100 * v / n:.1f}%)" for k, v in counts.items())
    return f"{name}: {len(examples)} rows — {parts}"
