"""Topic tagging from a configurable taxonomy (keyword/phrase lists per topic).

A keyword tagger rather than a model: topics must be explainable to analysts ("why is this
legal?"), editable without retraining, and identical in every replica. The producer's own
category wins when present, because the producer knows its feed better than keyword rules do;
it is mapped through ``category_aliases`` so "M&A" and "mergers" are one topic.

Taxonomy file (YAML)::

    topics:
      earnings: {keywords: [earnings, profit warning, 财报], cased: [EPS]}
    category_aliases: {"m&a": mergers}
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from services.core.errors import ConfigError
from services.ingest.matching import PhraseMatcher
from services.ingest.yaml_files import load_yaml

_SLUG_RE = re.compile(r"[^\w&/]+")


def default_taxonomy_path() -> Path:
    """The taxonomy shipped with the package."""
    return Path(str(resources.files("services.ingest.data").joinpath("taxonomy.yaml")))


def slug(category: str) -> str:
    """'Legal / Regulatory ' -> 'legal/regulatory'; 'Capital Markets' -> 'capital_markets'."""
    s = category.strip().lower()
    s = re.sub(r"\s*/\s*", "/", s)
    return _SLUG_RE.sub("_", s).strip("_")


@dataclass
class TopicTagger:
    """Tags text with topic ids; build once (``from_file``), share it, it is read-only."""

    topics: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]]  # id -> (keywords, cased)
    category_aliases: Mapping[str, str] = field(default_factory=dict)
    max_topics: int = 3
    _matcher: PhraseMatcher[str] = field(init=False, repr=False)
    _order: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        phrases: list[tuple[str, str, bool]] = []
        for topic, (keywords, cased) in self.topics.items():
            phrases.extend((k, topic, False) for k in keywords)
            phrases.extend((k, topic, True) for k in cased)
        self._matcher = PhraseMatcher(phrases)
        self._order = {t: i for i, t in enumerate(self.topics)}
        self.category_aliases = {slug(k): v for k, v in self.category_aliases.items()}

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], **kwargs: Any) -> TopicTagger:
        raw = data.get("topics") if isinstance(data, Mapping) else None
        if not isinstance(raw, Mapping) or not raw:
            raise ConfigError("taxonomy: expected a non-empty top-level 'topics' mapping")
        topics: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        for name, spec in raw.items():
            spec = spec or {}
            if isinstance(spec, list):
                spec = {"keywords": spec}
            if not isinstance(spec, Mapping):
                raise ConfigError(f"taxonomy: topic {name!r} must map to keywords/cased lists")
            lists = []
            for key in ("keywords", "cased"):
                v = spec.get(key) or []
                if not isinstance(v, list):
                    raise ConfigError(f"taxonomy: topics.{name}.{key} must be a list")
                lists.append(tuple(str(x) for x in v))
            topics[slug(str(name))] = (lists[0], lists[1])
        aliases = data.get("category_aliases") or {}
        if not isinstance(aliases, Mapping):
            raise ConfigError("taxonomy: category_aliases must be a mapping")
        return cls(topics, {str(k): slug(str(v)) for k, v in aliases.items()}, **kwargs)

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
        s = slug(category)
        if not s:
            return None
        return self.category_aliases.get(s, s)

    def tag(self, text: str, category: str | None = None) -> list[str]:
        """Topic ids, most-mentioned first (ties: taxonomy order); the producer's category wins."""
        if category:
            mapped = self.map_category(category)
            if mapped:
                return [mapped]
        hits = Counter(m.value for m in self._matcher.find(text))
        ranked = sorted(hits, key=lambda t: (-hits[t], self._order.get(t, 0)))
        return ranked[: self.max_topics]
