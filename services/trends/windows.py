"""Time-bucket maths and the Redis key layout for trends (pure: no I/O).

Counts live in per-minute buckets (the resolution of the 5 m and 1 h views and of spike
detection) and, written at the same time, per-hour buckets. The 24 h view is then read as
"minutes up to the first hour boundary, whole hours, minutes after the last hour boundary"
(:func:`cover`): at most 59 + 24 + 59 keys instead of 1440, and still exact to the minute.
Hour buckets also let the API draw a week at hour resolution without 10 080 reads, and can be
kept longer than minute buckets for the same memory.

Windows end at the current (still filling) minute: "5m" at 12:34:56 is 12:30:00-12:35:00.

Key layout (``P`` = prefix, ``B`` = bucket tag ``m<epoch minute>`` or ``h<epoch hour>``)::

    P:tr:{B}:seen                      set of doc_ids counted in this bucket (idempotency)
    P:tr:{B}:<dim>:<value>             hash: n, n:<label>, s:<label> (probability sums)
    P:tr:{B}:rank:<dim>                zset: value -> documents (for "top entities/topics")
    P:tr:{B}:rank:<dim>:<label>        zset: value -> documents with that label

Every key of one bucket shares the hash tag ``{B}``, so the single Lua call that checks the
``seen`` set and bumps all of a document's counters for that bucket touches one Redis Cluster
slot. Each bucket expires at its end plus the retention (``EXPIREAT``), so a late document
cannot extend an old bucket's life, and one older than the retention is not counted at all.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field, computed_field

from models.text import LABELS
from services.core.schemas import ScoredDoc

MINUTE_S = 60
HOUR_S = 3600
WINDOWS: dict[str, int] = {"5m": 5, "1h": 60, "24h": 1440}
"""Rolling views, in minutes."""

DIM_ENTITY = "entity"
DIM_TOPIC = "topic"
DIM_KIND = "kind"
DIM_ENTITY_TOPIC = "entity_topic"  # value: "<ticker>|<topic>", for per-entity-and-topic alerts
DIM_ALL = "all"  # value: "*"
DIMS = (DIM_ENTITY, DIM_TOPIC, DIM_KIND, DIM_ENTITY_TOPIC, DIM_ALL)
RANKED_DIMS = (DIM_ENTITY, DIM_TOPIC)
ALL = "*"

Resolution = Literal["minute", "hour"]


@dataclass(frozen=True, slots=True, order=True)
class Bucket:
    res: Literal["m", "h"]
    index: int  # epoch minutes or epoch hours

    @property
    def seconds(self) -> int:
        return MINUTE_S if self.res == "m" else HOUR_S

    @property
    def start_s(self) -> int:
        return self.index * self.seconds

    @property
    def end_s(self) -> int:
        return (self.index + 1) * self.seconds

    @property
    def start(self) -> datetime:
        return datetime.fromtimestamp(self.start_s, UTC)

    @property
    def tag(self) -> str:
        return f"{self.res}{self.index}"

    @property
    def minutes(self) -> int:
        return 1 if self.res == "m" else 60


def epoch_minute(ts: datetime) -> int:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return int(ts.timestamp() // MINUTE_S)


def minute_bucket(ts: datetime) -> Bucket:
    return Bucket("m", epoch_minute(ts))


def hour_bucket(ts: datetime) -> Bucket:
    return Bucket("h", epoch_minute(ts) // 60)


def cover(start_minute: int, end_minute: int) -> list[Bucket]:
    """Fewest buckets that exactly cover epoch minutes ``[start_minute, end_minute)``."""
    out: list[Bucket] = []
    m = start_minute
    while m < end_minute:
        if m % 60 == 0 and m + 60 <= end_minute:
            out.append(Bucket("h", m // 60))
            m += 60
        else:
            out.append(Bucket("m", m))
            m += 1
    return out


def window_range(now: datetime, minutes: int) -> tuple[int, int]:
    """Epoch minutes ``[start, end)`` of the ``minutes``-long window that ends with ``now``."""
    end = epoch_minute(now) + 1
    return end - minutes, end


def window_buckets(now: datetime, windows: Mapping[str, int] = WINDOWS) -> dict[str, list[Bucket]]:
    return {name: cover(*window_range(now, m)) for name, m in windows.items()}


def series_buckets(start: datetime, end: datetime, resolution: Resolution,
                   max_points: int = 2000) -> list[Bucket]:
    """Buckets of one resolution overlapping ``[start, end)``: from the one holding ``start``
    to the one holding the last instant before ``end`` (partial buckets at both ends)."""
    if end <= start:
        return []
    first_m, last_m = epoch_minute(start), epoch_minute(end - timedelta(microseconds=1))
    if resolution == "minute":
        buckets = [Bucket("m", i) for i in range(first_m, last_m + 1)] if \
            last_m - first_m < max_points else None
    elif resolution == "hour":
        fh, lh = first_m // 60, last_m // 60
        buckets = [Bucket("h", i) for i in range(fh, lh + 1)] if lh - fh < max_points else None
    else:
        raise ValueError(f"resolution must be 'minute' or 'hour', not {resolution!r}")
    if buckets is None:
        raise ValueError(f"more than {max_points} {resolution} points requested; "
                         "narrow the range or use a coarser resolution")
    return buckets


class KeySpace:
    """Redis key names for one prefix (see the module docstring for the layout)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def seen(self, b: Bucket) -> str:
        return f"{self.prefix}:tr:{{{b.tag}}}:seen"

    def counts(self, b: Bucket, dim: str, value: str) -> str:
        return f"{self.prefix}:tr:{{{b.tag}}}:{dim}:{value}"

    def rank(self, b: Bucket, dim: str, label: str | None = None) -> str:
        base = f"{self.prefix}:tr:{{{b.tag}}}:rank:{dim}"
        return f"{base}:{label}" if label else base


def expire_at(b: Bucket, retention_s: int) -> int:
    """Epoch second at which a bucket's keys go: its end plus the retention."""
    return b.end_s + retention_s


def event_time(doc: ScoredDoc) -> datetime:
    """When a document counts: its publication time. It must be a field of the document that
    every redelivery carries unchanged (not ``ingested_at``, which a re-ingested copy gets
    anew), or a redelivered document would land in another bucket's ``seen`` set and count
    twice. Ingest refuses timestamps from the future, so this never fills future minutes."""
    return doc.published_at


def dims_of(doc: ScoredDoc) -> list[tuple[str, str]]:
    """Every (dim, value) series a document counts in."""
    out: list[tuple[str, str]] = [(DIM_ALL, ALL), (DIM_KIND, doc.kind)]
    ents = list(dict.fromkeys(doc.entities))
    tops = list(dict.fromkeys(doc.topics))
    out += [(DIM_ENTITY, e) for e in ents]
    out += [(DIM_TOPIC, t) for t in tops]
    out += [(DIM_ENTITY_TOPIC, f"{e}|{t}") for e in ents for t in tops]
    return out


def entity_of(dim: str, value: str) -> str | None:
    """The entity a series is about (``entity`` and ``entity_topic`` series), else None."""
    if dim == DIM_ENTITY:
        return value
    if dim == DIM_ENTITY_TOPIC:
        return value.split("|", 1)[0]
    return None


def series_sentiment(doc: ScoredDoc, dim: str, value: str) -> tuple[str, Mapping[str, float]]:
    """(label, probabilities) a document counts with in one series: an entity's series count
    the document's sentiment towards that entity ("Bank A sues Company B" is a negative for
    B, not for A; ``ScoredDoc.entity_sentiment``), every other series (all, kind, topic)
    the document's own label."""
    entity = entity_of(dim, value)
    if entity is None:
        return doc.sentiment.label, doc.sentiment.probabilities
    return doc.entity_label(entity), doc.entity_probabilities(entity)


class TrendCounts(BaseModel):
    """Counts and probability sums for one series over one span."""

    count: int = 0
    labels: dict[str, int] = Field(default_factory=lambda: dict.fromkeys(LABELS, 0))
    score_sums: dict[str, float] = Field(default_factory=lambda: dict.fromkeys(LABELS, 0.0))

    @computed_field  # type: ignore[prop-decorator]
    @property
    def mean_scores(self) -> dict[str, float]:
        """Average probability per label (0 when empty)."""
        return {k: (v / self.count if self.count else 0.0) for k, v in self.score_sums.items()}

    @computed_field  # type: ignore[prop-decorator]
    @property
    def negative_share(self) -> float:
        return self.labels.get("negative", 0) / self.count if self.count else 0.0

    def add_hash(self, h: Mapping[bytes | str, bytes | str]) -> None:
        """Fold one bucket hash (raw HGETALL reply) into these counts."""
        for k, v in h.items():
            key = k.decode() if isinstance(k, bytes) else k
            val = v.decode() if isinstance(v, bytes) else v
            if key == "n":
                self.count += int(val)
            elif key.startswith("n:"):
                lab = key[2:]
                self.labels[lab] = self.labels.get(lab, 0) + int(val)
            elif key.startswith("s:"):
                lab = key[2:]
                self.score_sums[lab] = self.score_sums.get(lab, 0.0) + float(val)


def rollup(hashes: Iterable[Mapping[bytes | str, bytes | str]]) -> TrendCounts:
    out = TrendCounts()
    for h in hashes:
        out.add_hash(h)
    return out


def unique_buckets(groups: Iterable[Sequence[Bucket]]) -> list[Bucket]:
    return sorted({b for g in groups for b in g})
