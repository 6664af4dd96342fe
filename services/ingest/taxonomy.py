"""Topic tagging from a configurable taxonomy (keyword/phrase lists per topic).

A keyword tagger rather than a model: topics must be explainable to analysts ("why is this
legal?"), editable without retraining, and identical in every replica. The producer's own
category wins when present, because the producer knows its feed better than keyword rules do;
it is mapped through ``category_aliases`` so "M&A" and "mergers" are one topic.

Taxonomy file (YAML)::

    topics:
      earnings:
        keywords: [earnings, profit warning]   # matched case-insensitively
        cased: [EPS]                           # matched exactly (acronyms that are words)
        zh: [业绩预告, 净利润]                  # Chinese phrases (no word boundaries)
        not: [重组蛋白]                        # look like the topic, are not: they win as
                                               # the longer match and count for nothing
    category_aliases: {"m&a": mergers, 并购: mergers}

One taxonomy for both languages: a Chinese phrase goes under the same topic id as its
English meaning (业绩预告 and "profit warning" are both ``earnings``), so trends and alerts
per topic count English and Chinese documents together. Chinese text is matched after the
traditional->simplified fold (業績預告 is 业绩预告); see ``data/taxonomy.yaml`` for the
topics and the README for what each covers.
"""
from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from services.core.errors import ConfigError
from services.core.yaml_files import load_yaml
from services.ingest.matching import PhraseMatcher, fold_zh

_SLUG_RE = re.compile(r"[^\w&/]+")


def default_taxonomy_path() -> Path:
    """The taxonomy shipped with the package."""
    return Path(str(resources.files("services.ingest.data").joinpath("taxonomy.yaml")))


def slug(category: str) -> str:
    """'Legal / Regulatory ' -> 'legal/regulatory'; 'Capital Markets' -> 'capital_markets'."""
    s = category.strip().lower()
    s = re.sub(r"\s*/\s*", "/", s)
    return _SLUG_RE.sub("_", s).strip("_")


def _category_key(category: str) -> str:
    """A producer category as looked up: NFKC, traditional->simplified, slugged."""
    return slug(fold_zh(unicodedata.normalize("NFKC", category)))


@dataclass
class TopicTagger:
    """Tags text with topic ids; build once (``from_file``), share it, it is read-only."""

    topics: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]]  # id -> (keywords, cased)
    category_aliases: Mapping[str, str] = field(default_factory=dict)
    max_topics: int = 3
    excludes: Sequence[str] = ()  # phrases that block shorter topic phrases inside them
    _matcher: PhraseMatcher[str | None] = field(init=False, repr=False)
    _order: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        phrases: list[tuple[str, str | None, bool]] = []
        for topic, (keywords, cased) in self.topics.items():
            phrases.extend((k, topic, False) for k in keywords)
            phrases.extend((k, topic, True) for k in cased)
        phrases.extend((k, None, False) for k in self.excludes)
        self._matcher = PhraseMatcher(phrases)
        self._order = {t: i for i, t in enumerate(self.topics)}
        self.category_aliases = {_category_key(k): v for k, v in self.category_aliases.items()}

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], **kwargs: Any) -> TopicTagger:
        raw = data.get("topics") if isinstance(data, Mapping) else None
        if not isinstance(raw, Mapping) or not raw:
            raise ConfigError("taxonomy: expected a non-empty top-level 'topics' mapping")
        topics: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        excludes: list[str] = []
        for name, spec in raw.items():
            spec = spec or {}
            if isinstance(spec, list):
                spec = {"keywords": spec}
            if not isinstance(spec, Mapping):
                raise ConfigError(f"taxonomy: topic {name!r} must map to keywords/cased/zh "
                                  "lists")
            unknown = set(spec) - {"keywords", "cased", "zh", "not"}
            if unknown:
                raise ConfigError(f"taxonomy: topics.{name} has unknown keys "
                                  f"{sorted(unknown)}; use keywords, cased, zh, not")
            lists = {}
            for key in ("keywords", "cased", "zh", "not"):
                v = spec.get(key) or []
                if not isinstance(v, list):
                    raise ConfigError(f"taxonomy: topics.{name}.{key} must be a list")
                lists[key] = tuple(str(x) for x in v)
            topics[slug(str(name))] = (lists["keywords"] + lists["zh"], lists["cased"])
            excludes.extend(lists["not"])
        aliases = data.get("category_aliases") or {}
        if not isinstance(aliases, Mapping):
            raise ConfigError("taxonomy: category_aliases must be a mapping")
        return cls(topics, {str(k): slug(str(v)) for k, v in aliases.items()},
                   excludes=tuple(excludes), **kwargs)

    @classmethod
    def from_file(cls, path: str | Path | None = None, **kwargs: Any) -> TopicTagger:
        """Load a taxonomy YAML file (``None``: the shipped taxonomy)."""
        p = Path(path) if path is not None else default_taxonomy_path()
        data = load_yaml(p, "taxonomy", "YUQING_TAXONOMY")
        return cls.from_mapping(data or {}, **kwargs)

    @property
    def topic_ids(self) -> list[str]:
        return list(self.topics)

    def map_category(self, category: str) -> str | None:
        """A producer's category as a topic id (through the aliases); ``None`` if blank."""
        s = _category_key(category)
        if not s:
            return None
        return self.category_aliases.get(s, s)

    def tag(self, text: str, category: str | None = None) -> list[str]:
        """Topic ids, most-mentioned first (ties: taxonomy order); the producer's category wins."""
        if category:
            mapped = self.map_category(category)
            if mapped:
                return [mapped]
        hits = Counter(m.value for m in self._matcher.find(text) if m.value is not None)
        ranked = sorted(hits, key=lambda t: (-hits[t], self._order.get(t, 0)))
        return ranked[: self.max_topics]
