"""Message schemas: the contract with producers and between stages.

Producers write :class:`NewsIn` to ``yuqing.news.raw`` and :class:`CommentIn` to
``yuqing.comments.raw`` (JSON, UTF-8). Every later stage adds to the document rather than
replacing it, so a scored document still carries everything the producer sent. JSON Schema
for producers is exported to ``ops/schemas/`` by ``yuqing schemas export`` (checked by a test).
"""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

Label = Literal["negative", "neutral", "positive"]
Severity = Literal["info", "warning", "critical"]
DocKind = Literal["news", "comment"]  # which raw topic a document came from
SEVERITY_ORDER: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}


def _aware(dt: datetime) -> datetime:
    """Naive timestamps are taken as UTC; everything is stored in UTC."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_aware)]
Id = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^\s]+$")]
Ticker = Annotated[str, Field(min_length=1, max_length=16, pattern=r"^\$?[A-Za-z0-9.\-]+$")]


def _norm_ticker(t: str) -> str:
    return t.lstrip("$").upper()


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    id: Id = Field(description="Producer's id, unique within the source.")
    source: str = Field(min_length=1, max_length=128, description="Feed name, e.g. 'reuters', 'stocktwits'.")
    published_at: UtcDatetime = Field(description="ISO 8601; naive times are taken as UTC.")
    lang: str | None = Field(None, max_length=64, description=(
        "BCP-47 language tag (zh-CN, zh-Hant-HK, en). Optional: without one, or with a "
        "malformed one, ingest tells the language from the text's dominant script."))


class NewsIn(_In):
    """A news item, as producers write it to ``yuqing.news.raw``."""

    url: str | None = Field(None, max_length=4096)
    title: str = Field(min_length=1, max_length=2000,
                       description="Headline. Longer than 2,000 characters: rejected (DLQ, "
                                   "reason schema); ingest keeps the first 1,000 characters "
                                   "of the cleaned title (the body is kept whole).")
    body: str = Field("", max_length=1_000_000)
    tickers: list[Ticker] = Field(default_factory=list, max_length=64, description="Tickers the producer already knows.")
    category: str | None = Field(None, max_length=64, description="Producer's topic; wins over the taxonomy tagger.")

    @field_validator("tickers")
    @classmethod
    def _tickers(cls, v: list[str]) -> list[str]:
        return list(dict.fromkeys(_norm_ticker(t) for t in v))


class CommentIn(_In):
    """A comment or post, as producers write it to ``yuqing.comments.raw``."""

    text: str = Field(min_length=1, max_length=1_000_000)
    author: str = Field(min_length=1, max_length=256)
    parent_id: str | None = Field(None, max_length=256)
    ticker: Ticker | None = None
    category: str | None = Field(None, max_length=64)

    @field_validator("ticker")
    @classmethod
    def _ticker(cls, v: str | None) -> str | None:
        return _norm_ticker(v) if v else v


class SourceRef(BaseModel):
    """Where a message came from in Kafka."""

    topic: str
    partition: int
    offset: int


Span = tuple[int, int]


class Mention(BaseModel):
    """Where one linked entity is named in ``CleanDoc.text`` (cashtags and names/aliases)."""

    entity: str = Field(description="Canonical ticker (one of CleanDoc.entities).")
    spans: list[Span] = Field(default_factory=list,
                              description="Character spans [start, end) in CleanDoc.text.")


class CleanDoc(BaseModel):
    """A validated, normalised, entity-linked document (``yuqing.docs.clean``)."""

    doc_id: str = Field(description="Globally unique: '<kind>:<source>:<id>'. The ES _id and idempotency key.")
    kind: DocKind
    source: str
    source_id: str
    url: str | None = None
    title: str | None = None
    text: str = Field(description="Normalised text the classifier sees (title + body, or comment text).")
    author: str | None = None
    parent_id: str | None = None
    lang: str = Field("en", description="Primary language subtag: the producer's tag "
                      "(zh-Hant-HK -> zh) or, without a valid one, the text's dominant script "
                      "(models.lang.document_language); 'und' when the text has no letters.")
    published_at: UtcDatetime
    entities: list[str] = Field(default_factory=list, description="Tickers, primary first.")
    primary_entity: str | None = None
    mentions: list[Mention] = Field(
        default_factory=list,
        description="Where each entity is mentioned in text; entities only the producer "
                    "named (no mention in the text) have none. Older messages: empty.")
    topics: list[str] = Field(default_factory=list)
    duplicates: int = Field(0, description="Syndicated copies seen and dropped (as of forwarding).")
    fingerprint: str | None = None
    ingested_at: UtcDatetime
    origin: SourceRef | None = None


class Sentiment(BaseModel):
    label: Label
    probabilities: dict[str, float]
    model_version: str
    truncated: bool = False
    model_language: str = Field(
        "en", description="Language of the model that scored the document (one model per "
                          "language). Older messages: en.")
    fallback: str | None = Field(
        None, description="Set when no model of the document's language was serving and the "
                          "fallback language's model scored it: why, e.g. 'no model for "
                          "language ja: scored by the en model'. None: its own language's model.")


EntitySource = Literal["entity", "document"]


class EntitySentiment(BaseModel):
    """The sentiment of a document towards one of its entities ("Bank A sues Company B" is
    negative for B, not for A)."""

    entity: str
    label: Label
    probabilities: dict[str, float]
    source: EntitySource = Field(
        description="entity: the model's entity head read this entity's mentions; document: "
                    "the document's own sentiment (no mention in the text, mentions past the "
                    "model's truncation, or a model without an entity head).")


class ScoredDoc(CleanDoc):
    """A document with its sentiment (``yuqing.docs.scored``)."""

    lang: str = Field(
        "en", description="The language the classifier routed it by: CleanDoc.lang folded to "
                          "its primary subtag (zh-Hant-HK -> zh), or the text's dominant script "
                          "when that tag is empty or malformed (und: no letters at all).")
    sentiment: Sentiment
    entity_sentiment: list[EntitySentiment] = Field(
        default_factory=list,
        description="One per entity (CleanDoc.entities order). Older messages: empty, and "
                    "every entity then takes the document's sentiment.")
    classified_at: UtcDatetime

    def entity_label(self, entity: str) -> str:
        """The label that counts for ``entity``'s trends and alerts: its own where scored,
        else the document's (also for "*" and topic series, which count the document)."""
        for es in self.entity_sentiment:
            if es.entity == entity:
                return es.label
        return self.sentiment.label

    def entity_probabilities(self, entity: str) -> dict[str, float]:
        """Probabilities for ``entity`` (as :meth:`entity_label`)."""
        for es in self.entity_sentiment:
            if es.entity == entity:
                return es.probabilities
        return self.sentiment.probabilities


class Evidence(BaseModel):
    doc_id: str
    title: str
    url: str | None = None
    negative: float = Field(description="Negative probability.")
    published_at: UtcDatetime


class Alert(BaseModel):
    """A negative-volume spike (``yuqing.alerts``), with the window's figures and evidence."""

    alert_id: str
    entity: str = Field(description="Ticker, or '*' for all entities.")
    topic: str = Field("*", description="Topic, or '*' for all topics.")
    severity: Severity
    window_start: UtcDatetime
    window_end: UtcDatetime
    negative_count: int
    total_count: int
    negative_share: float
    baseline_mean: float
    baseline_std: float
    score: float = Field(description="Anomaly score 0-100 from the window's tail probability "
                                     "(legacy EWMA alerts: z, in standard deviations).")
    evidence: list[Evidence] = Field(default_factory=list)
    detector: str = Field(description="Detector and model version, e.g. 'seasonal-nb/v1'.")
    created_at: UtcDatetime
    state: Literal["firing", "escalated", "resolved"] = Field(
        "firing", description="Lifecycle event: first crossing, severity increase, or end.")
    episode_start: UtcDatetime | None = Field(None, description="Start of the episode's first window.")
    peak_score: float | None = Field(None, description="Highest score in the episode so far.")
    duration_s: float | None = Field(None, description="Episode start to the end of its last "
                                                       "window above the resolve score.")
    episode_negatives: int | None = Field(None, description="Negatives in the episode so far.")
    sources: list[str] = Field(default_factory=list, description="Sources of the evidence headlines.")
    co_moving: list[str] = Field(default_factory=list, description="Other entities with an episode open when this event was judged (informational: not part of the deterministic figures).")
    model_version: str | None = Field(None, description="Model version most of the window's documents were scored by.")


class DeadLetter(BaseModel):
    """A rejected input (``yuqing.dlq``): the original bytes and why, so nothing is silently lost."""

    reason: str = Field(description="Machine code: invalid_json, not_utf8, too_large, schema, classify_error, ...")
    error: str = Field(description="Human-readable explanation.")
    stage: str = Field(description="ingest, classify, index ...")
    original_b64: str = Field(description="The original message value, base64 (its first "
                              "original_kept bytes when original_truncated).")
    key_b64: str | None = None
    original_size: int | None = Field(None, description="Bytes of the original value.")
    original_sha256: str | None = Field(None, description="sha256 (hex) of the whole original value.")
    original_truncated: bool = Field(False, description="Only a prefix is kept (the value was too large for a dead letter); fetch the rest from origin while the topic retains it.")
    origin: SourceRef
    failed_at: UtcDatetime


class Feedback(BaseModel):
    """An analyst's corrected label (``yuqing.labels``), stored for retraining."""

    doc_id: str
    label: Label
    text: str | None = None
    analyst: str | None = None
    created_at: UtcDatetime


def utcnow() -> datetime:
    return datetime.now(UTC)
