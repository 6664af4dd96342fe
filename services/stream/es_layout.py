"""Index templates and document shapes for Elasticsearch.

Composable templates (component templates + an index template) rather than one legacy
template: settings and mappings can be changed and versioned separately, and the alerts index
reuses the settings component. Every field yuqing writes is mapped explicitly, with
``dynamic: false``: a field added later to the schemas (or by a producer) is kept in
``_source`` but creates no mapping, so there is no mapping explosion and no text-vs-keyword
guess, and yet indexing does not stop the day someone extends a schema (``strict`` would send
every document to the DLQ until the template is updated). A document whose mapped fields do
not fit (e.g. an index created by hand with other types) is rejected per item and goes to the
DLQ.

Daily indices ``<prefix>-YYYY.MM.DD`` (UTC date of ``published_at``) live behind the alias
``<prefix>``, which the template attaches to each new index. The date comes from the document,
not the clock, so a redelivered document lands in the same index under the same ``_id``
(= doc_id) and overwrites itself: re-indexing is idempotent. Retention is "delete indices whose
name date is older than N days" (no ILM in the test distribution, and deleting a whole index
is cheaper than delete-by-query).

Chinese (``docs/search.md``): ``title`` and ``text`` keep the standard analyzer (English as
before; CJK one character per token) and gain a ``zh`` subfield analysed by ``yuqing_zh``, whose
definition is the one thing :data:`ZH_ANALYSIS` modes change: ``bigram`` (the default, built
from the standard tokenizer, ``lowercase`` and ``shingle``, which every Elasticsearch has: the
test distribution lacks even the ``analysis-common`` module, so no ``cjk`` analyzer), or the
``smartcn`` / ``ik`` plugins' word segmenters on a cluster that has them. ``title_sc`` /
``text_sc`` hold the simplified-Chinese fold of a title/text that has traditional characters
(HK/TW news), only where it differs, so a simplified query finds 騰訊 as well as 腾讯.

Versions: ``TEMPLATE_VERSION`` is stamped on every template (``version``, ``_meta``); a template
change applies to the next daily index, and ``ensure_templates`` adds the new plain fields to
the existing ones (:data:`ADDED_FIELDS`). A subfield with a custom analyzer cannot be added to
an existing index without closing it, so indices made before version 2 have no ``*.zh``: the
API finds them (``field_caps``) and searches them on the per-character fields instead, until
retention deletes them.
"""
from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime
from typing import Any

from models.text_zh import has_han, to_simplified
from services.core.schemas import Alert, ScoredDoc

TEMPLATE_VERSION = 2
"""1: the first layout; 2: Chinese search (``title.zh``/``text.zh``, ``title_sc``/``text_sc``)."""

INDEX_DATE_FORMAT = "%Y.%m.%d"
_PREFIX_RE = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")


def check_prefix(prefix: str) -> str:
    if not _PREFIX_RE.match(prefix) or len(prefix) > 200:
        raise ValueError(f"index prefix {prefix!r}: use lower-case letters, digits, '-', '_', '.'")
    return prefix


def index_for(prefix: str, published_at: datetime) -> str:
    """``<prefix>-YYYY.MM.DD`` for the UTC date of ``published_at``."""
    ts = published_at if published_at.tzinfo else published_at.replace(tzinfo=UTC)
    return f"{prefix}-{ts.astimezone(UTC).strftime(INDEX_DATE_FORMAT)}"


def index_date(prefix: str, index: str) -> date | None:
    """The date in a daily index name of this prefix, or ``None`` if it is not one."""
    m = re.fullmatch(re.escape(prefix) + r"-(\d{4})\.(\d{2})\.(\d{2})", index)
    if not m:
        return None
    try:
        return date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        return None


_KEYWORD = {"type": "keyword", "ignore_above": 1024}
_DATE = {"type": "date"}

ZH_ANALYZER = "yuqing_zh"
ZH_SEARCH_ANALYZER = "yuqing_zh_search"
ZH_ANALYSIS = ("bigram", "smartcn", "ik")
"""How ``*.zh`` is analysed: ``bigram`` (built in; queried as phrases), ``smartcn`` or ``ik``
(plugins; queried as all-words matches). ``YUQING_ES_ZH_ANALYSIS``."""

# Only multi-fields: the same _source value, a second token stream. Same shape in every mode.
_ZH = {"type": "text", "analyzer": ZH_ANALYZER, "search_analyzer": ZH_SEARCH_ANALYZER}


def zh_analysis(mode: str = "bigram") -> dict[str, Any]:
    """The ``index.analysis`` settings that define ``yuqing_zh`` (index time) and
    ``yuqing_zh_search`` (query time) in ``mode``."""
    if mode == "bigram":
        # Overlapping character bigrams (平安银行 -> 平安 安银 银行), at consecutive positions,
        # so a phrase of bigrams is exactly a contiguous substring. Unlike analysis-common's
        # cjk_bigram, shingle also pairs Latin words and script boundaries (行apple): harmless
        # extra tokens, never queried alone. A one-character text keeps its unigram.
        return {"filter": {"yuqing_zh_bigram": {
                    "type": "shingle", "min_shingle_size": 2, "max_shingle_size": 2,
                    "output_unigrams": False, "output_unigrams_if_no_shingles": True,
                    "token_separator": ""}},
                "analyzer": {name: {"type": "custom", "tokenizer": "standard",
                                    "filter": ["lowercase", "yuqing_zh_bigram"]}
                             for name in (ZH_ANALYZER, ZH_SEARCH_ANALYZER)}}
    if mode == "smartcn":  # plugin analysis-smartcn
        return {"analyzer": {name: {"type": "custom", "tokenizer": "smartcn_tokenizer",
                                    "filter": ["lowercase"]}
                             for name in (ZH_ANALYZER, ZH_SEARCH_ANALYZER)}}
    if mode == "ik":  # plugin analysis-ik: finest segmentation indexed, coarsest queried
        return {"analyzer": {
            ZH_ANALYZER: {"type": "custom", "tokenizer": "ik_max_word", "filter": ["lowercase"]},
            ZH_SEARCH_ANALYZER: {"type": "custom", "tokenizer": "ik_smart",
                                 "filter": ["lowercase"]}}}
    raise ValueError(f"Chinese analysis {mode!r}: use one of {', '.join(ZH_ANALYSIS)}")


DOC_PROPERTIES: dict[str, Any] = {
    "doc_id": {"type": "keyword"},
    "kind": {"type": "keyword"},
    "source": {"type": "keyword"},
    "source_id": {"type": "keyword"},
    "url": {"type": "keyword", "ignore_above": 4096, "index": False, "doc_values": False},
    "title": {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 512},
                                         "zh": _ZH}},
    "text": {"type": "text", "fields": {"zh": _ZH}},
    # Simplified-Chinese folds of title/text, written only where they differ (see doc_to_source).
    "title_sc": {"type": "text", "fields": {"zh": _ZH}},
    "text_sc": {"type": "text", "fields": {"zh": _ZH}},
    "author": _KEYWORD,
    "parent_id": {"type": "keyword"},
    "lang": {"type": "keyword"},
    "published_at": _DATE,
    "ingested_at": _DATE,
    "classified_at": _DATE,
    "entities": {"type": "keyword"},
    "primary_entity": {"type": "keyword"},
    "mentions": {"type": "object", "enabled": False},  # spans: kept in _source, not indexed
    "topics": {"type": "keyword"},
    "duplicates": {"type": "integer"},
    "fingerprint": {"type": "keyword", "index": False},
    "origin": {"properties": {
        "topic": {"type": "keyword"},
        "partition": {"type": "integer"},
        "offset": {"type": "long"},
    }},
    "sentiment": {"properties": {
        "label": {"type": "keyword"},
        "negative": {"type": "float"},
        "neutral": {"type": "float"},
        "positive": {"type": "float"},
        "model_version": {"type": "keyword"},
        "model_language": {"type": "keyword"},  # whose model scored it (routing)
        "fallback": {"type": "keyword"},  # why another language's model scored it, if it did
        "truncated": {"type": "boolean"},
    }},
    # The document's sentiment towards each of its entities ("Bank A sues Company B": negative
    # for B). Nested, so "entity B with label negative" matches one entry, not B from one
    # and negative from another; ``negative_for`` (the entities whose label is negative) is
    # the same fact as a plain keyword for Kibana's KQL (negative_for:B) and aggregations.
    "entity_sentiment": {"type": "nested", "properties": {
        "entity": {"type": "keyword"},
        "label": {"type": "keyword"},
        "negative": {"type": "float"},
        "neutral": {"type": "float"},
        "positive": {"type": "float"},
        "source": {"type": "keyword"},
    }},
    "negative_for": {"type": "keyword"},
}
ENTITY_FIELDS = ("mentions", "entity_sentiment", "negative_for")
FOLD_FIELDS = ("title_sc", "text_sc")


def _plain(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` without its ``zh`` subfield (which needs the analyzer in the index settings)."""
    fields = {k: v for k, v in spec.get("fields", {}).items() if k != "zh"}
    out = {k: v for k, v in spec.items() if k != "fields"}
    return {**out, "fields": fields} if fields else out


ADDED_FIELDS: dict[str, Any] = {
    **{k: DOC_PROPERTIES[k] for k in ENTITY_FIELDS},
    **{k: _plain(DOC_PROPERTIES[k]) for k in FOLD_FIELDS},
}
"""Fields added after the first release: ``ensure_templates`` also adds them to the mappings
of indices that exist already (today's index would otherwise not map them until tomorrow).
The folds go in without ``zh`` (an index made before version 2 has no ``yuqing_zh``); an
index that has them already keeps its subfield (mappings merge)."""

ALERT_PROPERTIES: dict[str, Any] = {
    "alert_id": {"type": "keyword"},
    "entity": {"type": "keyword"},
    "topic": {"type": "keyword"},
    "severity": {"type": "keyword"},
    "window_start": _DATE,
    "window_end": _DATE,
    "negative_count": {"type": "integer"},
    "total_count": {"type": "integer"},
    "negative_share": {"type": "float"},
    "baseline_mean": {"type": "float"},
    "baseline_std": {"type": "float"},
    "score": {"type": "float"},
    "detector": {"type": "keyword"},
    "state": {"type": "keyword"},
    "episode_start": _DATE,
    "peak_score": {"type": "float"},
    "duration_s": {"type": "float"},
    "episode_negatives": {"type": "integer"},
    "sources": {"type": "keyword"},
    "co_moving": {"type": "keyword"},
    "model_version": {"type": "keyword"},
    "created_at": _DATE,
    "evidence": {"properties": {
        "doc_id": {"type": "keyword"},
        "title": {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 512}}},
        "url": {"type": "keyword", "index": False, "doc_values": False},
        "negative": {"type": "float"},
        "published_at": _DATE,
    }},
}


# Annotations (``<ns>-annotations``): a sentiment model change seen by the alerts detector on
# one series, and the re-base that ends its settling; Kibana shows them next to the trends.
ANNOTATION_PROPERTIES: dict[str, Any] = {
    "annotation_id": {"type": "keyword"},
    "kind": {"type": "keyword"},
    "entity": {"type": "keyword"},
    "topic": {"type": "keyword"},
    "timestamp": _DATE,
    "window_s": {"type": "integer"},
    "from_version": {"type": "keyword"},
    "to_version": {"type": "keyword"},
    "factor": {"type": "float"},
    "settle_windows": {"type": "integer"},
    "text": {"type": "text"},
    "detector": {"type": "keyword"},
}


def annotation_template(index: str) -> dict[str, Any]:
    """The index template of the annotations index (one index, no daily split)."""
    check_prefix(index)
    return {"index_patterns": [index], "priority": 300,
            "template": {"settings": {"number_of_shards": 1, "number_of_replicas": 0},
                         "mappings": {"dynamic": False, "properties": ANNOTATION_PROPERTIES}},
            "_meta": {"managed_by": "yuqing", "description": "model-change annotations"}}


def component_templates(prefix: str, alerts_index: str, replicas: int = 0,
                        shards: int = 1, zh: str = "bigram") -> dict[str, dict[str, Any]]:
    """Component templates by name: shared settings, document mappings (with the analysis
    they use, ``zh`` = one of :data:`ZH_ANALYSIS`), alert mappings."""
    check_prefix(prefix)
    meta = {"managed_by": "yuqing", "template_version": TEMPLATE_VERSION}
    return {
        f"{prefix}-settings": {"version": TEMPLATE_VERSION, "_meta": meta, "template": {
            "settings": {
                "number_of_shards": shards,
                "number_of_replicas": replicas,
                "refresh_interval": "1s",
            }}},
        f"{prefix}-mappings": {"version": TEMPLATE_VERSION, "_meta": {**meta, "zh_analysis": zh},
                               "template": {
            "settings": {"analysis": zh_analysis(zh)},
            "mappings": {
                "dynamic": False,
                "_source": {"enabled": True},
                # Which layout made an index, for operators (GET <index>/_mapping).
                "_meta": {"template_version": TEMPLATE_VERSION, "zh_analysis": zh},
                "properties": DOC_PROPERTIES,
            }}},
        f"{alerts_index}-mappings": {"version": TEMPLATE_VERSION, "_meta": meta, "template": {
            "mappings": {
                "dynamic": False,
                "properties": ALERT_PROPERTIES,
            }}},
    }


def index_templates(prefix: str, alerts_index: str) -> dict[str, dict[str, Any]]:
    """Index templates by name: daily documents (with the alias) and the alerts index."""
    check_prefix(prefix)
    check_prefix(alerts_index)
    return {
        prefix: {
            "index_patterns": [f"{prefix}-*"],
            "composed_of": [f"{prefix}-settings", f"{prefix}-mappings"],
            "template": {"aliases": {prefix: {}}},
            "priority": 200,
            "version": TEMPLATE_VERSION,
            "_meta": {"managed_by": "yuqing", "description": "daily sentiment documents",
                      "template_version": TEMPLATE_VERSION},
        },
        alerts_index: {
            "index_patterns": [alerts_index],
            # Higher priority: wins if the docs pattern happens to match the alerts name.
            "composed_of": [f"{prefix}-settings", f"{alerts_index}-mappings"],
            "priority": 300,
            "version": TEMPLATE_VERSION,
            "_meta": {"managed_by": "yuqing", "description": "spike alerts",
                      "template_version": TEMPLATE_VERSION},
        },
    }


def _prob(probs: dict[str, float], label: str) -> float | None:
    p = probs.get(label)
    # NaN/inf are not JSON: one would fail the whole bulk request, on every retry.
    return float(p) if p is not None and math.isfinite(p) else None


def doc_to_source(doc: ScoredDoc) -> dict[str, Any]:
    """The ``_source`` of a document: the scored document with sentiment flattened to floats,
    one ``entity_sentiment`` entry per entity (the document's own where the classifier gave
    none) and ``negative_for``."""
    src = doc.model_dump(mode="json", exclude={"sentiment", "entity_sentiment"})
    probs = doc.sentiment.probabilities

    def prob(label: str) -> float | None:
        return _prob(probs, label)

    src["sentiment"] = {
        "label": doc.sentiment.label,
        "negative": prob("negative"),
        "neutral": prob("neutral"),
        "positive": prob("positive"),
        "model_version": doc.sentiment.model_version,
        "model_language": doc.sentiment.model_language,
        "fallback": doc.sentiment.fallback,
        "truncated": doc.sentiment.truncated,
    }
    own = {es.entity: es for es in doc.entity_sentiment}
    entries = []
    for e in dict.fromkeys(doc.entities):
        es = own.get(e)
        label, p, source = ((es.label, es.probabilities, es.source) if es is not None
                            else (doc.sentiment.label, probs, "document"))
        entries.append({"entity": e, "label": label, "negative": _prob(p, "negative"),
                        "neutral": _prob(p, "neutral"), "positive": _prob(p, "positive"),
                        "source": source})
    src["entity_sentiment"] = entries
    src["negative_for"] = [x["entity"] for x in entries if x["label"] == "negative"]
    src.update(simplified_folds(doc.title, doc.text, doc.lang))
    return src


def simplified_folds(title: str | None, text: str, lang: str = "zh") -> dict[str, str]:
    """``title_sc`` / ``text_sc``: the traditional -> simplified fold of each one that changes
    (nothing for simplified Chinese, English, or Japanese/Korean, whose kanji are not
    traditional Chinese)."""
    if lang[:2].lower() in ("ja", "ko"):
        return {}
    out: dict[str, str] = {}
    for name, value in (("title_sc", title), ("text_sc", text)):
        if value and has_han(value):
            folded = to_simplified(value)
            if folded != value:
                out[name] = folded
    return out


def alert_to_source(alert: Alert) -> dict[str, Any]:
    return alert.model_dump(mode="json")
