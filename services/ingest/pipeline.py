"""The ingest stage as one pure-ish step: raw Kafka value in, an :data:`IngestOutcome` out.

The Faust agent stays thin: it calls :meth:`Ingestor.process_many` per batch and acts on the
outcome (forward to ``docs.clean``, count a duplicate, or send to the DLQ). Only the dedup
store touches a backend; when Redis is down ``process_many`` raises
:class:`~services.core.errors.BackendUnavailable` instead of guessing, so the agent can pause
and retry the same message (nothing is forwarded or dead-lettered on a backend error).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from models.lang import document_language
from services.core.errors import InputError
from services.core.schemas import (
    CleanDoc,
    CommentIn,
    DeadLetter,
    DocKind,
    Mention,
    NewsIn,
    SourceRef,
    utcnow,
)
from services.ingest.decode import decode
from services.ingest.dedup import DedupStore, story_fingerprint
from services.ingest.entities import EntityLinker
from services.ingest.normalize import clean_text, join_title_body, truncate
from services.ingest.taxonomy import TopicTagger
from services.stream.deadletter import dead_letter

log = logging.getLogger(__name__)

TITLE_MAX_CHARS = 1000


@dataclass(frozen=True, slots=True)
class Forward:
    """A new story: publish ``doc`` to the clean topic (key: ``doc.primary_entity``)."""

    doc: CleanDoc


@dataclass(frozen=True, slots=True)
class Duplicate:
    """A copy of ``original_doc_id``'s story: already counted on the original, drop it."""

    doc_id: str
    original_doc_id: str


@dataclass(frozen=True, slots=True)
class Reject:
    """Bad input: publish ``dead_letter`` to the DLQ."""

    dead_letter: DeadLetter


IngestOutcome = Forward | Duplicate | Reject


def doc_id_for(kind: DocKind, source: str, source_id: str) -> str:
    return f"{kind}:{source}:{source_id}"


class Ingestor:
    """Decode, normalise, link, tag and dedup one message. Shared, stateless apart from Redis."""

    def __init__(self, linker: EntityLinker, tagger: TopicTagger, dedup_store: DedupStore | None,
                 max_bytes: int, max_chars: int, max_future_s: float = 900.0,
                 max_age_days: float = 30.0,
                 clock: Callable[[], datetime] = utcnow) -> None:
        """``max_future_s``: a ``published_at`` further ahead of the clock than this is refused
        (reason ``future_published_at``). Trends bucket documents by ``published_at``; a
        timestamp from the future (typically local time sent without an offset, which the
        schema takes as UTC) would count in minutes that have not happened yet.
        ``max_age_days``: one older than this is refused (reason ``stale_published_at``): it
        would create a daily index that retention deletes again, and no trend or alert
        window counts it (a backfill raises the setting for its run)."""
        self.linker = linker
        self.tagger = tagger
        self.dedup = dedup_store
        self.max_bytes = max_bytes
        self.max_chars = max_chars
        self.max_future = timedelta(seconds=max_future_s)
        self.max_age = timedelta(days=max_age_days)
        self.clock = clock

    def clean(self, msg: NewsIn | CommentIn, kind: DocKind, origin: SourceRef | None) -> CleanDoc:
        """The pure part: a validated message to a :class:`CleanDoc` (raises InputError)."""
        now = self.clock()
        if msg.published_at > now + self.max_future:
            ahead = (msg.published_at - now).total_seconds() / 3600
            raise InputError(f"published_at {msg.published_at.isoformat()} is {ahead:.1f} h "
                             "ahead of now; send UTC or a time with its offset (+08:00)",
                             reason="future_published_at")
        if msg.published_at < now - self.max_age:
            age = (now - msg.published_at).total_seconds() / 86400
            raise InputError(f"published_at {msg.published_at.isoformat()} is {age:.0f} days "
                             f"old, over the {self.max_age.days}-day limit "
                             "(YUQING_MAX_EVENT_AGE_DAYS; raise it for a backfill)",
                             reason="stale_published_at")
        if isinstance(msg, NewsIn):
            title = clean_text(msg.title, min(TITLE_MAX_CHARS, self.max_chars))
            body = clean_text(msg.body, self.max_chars)
            text = truncate(join_title_body(title, body), self.max_chars)
            producer = list(msg.tickers)
            author = parent = None
            url = msg.url
            fp = story_fingerprint("news", title, body)
        else:
            title = None
            text = clean_text(msg.text, self.max_chars)
            producer = [msg.ticker] if msg.ticker else []
            author, parent = msg.author, msg.parent_id
            url = None
            fp = story_fingerprint("comment", None, text)
        if not text:
            raise InputError("no text left after removing markup, control characters and URLs",
                             reason="empty_text")
        linked = self.linker.link_mentions(text, producer)
        entities = linked.entities
        return CleanDoc(
            doc_id=doc_id_for(kind, msg.source, msg.id),
            kind=kind,
            source=msg.source,
            source_id=msg.id,
            url=url,
            title=title or None,
            text=text,
            author=author,
            parent_id=parent,
            lang=document_language(msg.lang, text),
            published_at=msg.published_at,
            entities=entities,
            primary_entity=entities[0] if entities else None,
            mentions=[Mention(entity=e, spans=linked.spans[e]) for e in entities
                      if e in linked.spans],
            topics=self.tagger.tag(text, msg.category),
            fingerprint=fp,
            ingested_at=now,
            origin=origin,
        )

    def _clean_one(self, value: bytes | None, key: bytes | None, kind: DocKind,
                   origin: SourceRef) -> IngestOutcome:
        try:
            msg = decode(value, kind, self.max_bytes)
            return Forward(self.clean(msg, kind, origin))
        except InputError as exc:
            return Reject(dead_letter(value, key, origin, exc.reason, str(exc), now=self.clock()))
        except Exception as exc:  # a poison message must not crash-loop the agent: DLQ it
            log.exception("ingest: unexpected error on %s[%d]@%d; dead-lettering it",
                          origin.topic, origin.partition, origin.offset)
            return Reject(dead_letter(value, key, origin, "ingest_error",
                                      f"{type(exc).__name__}: {exc}", now=self.clock()))

    async def process_many(self, messages: Sequence[tuple[bytes | None, bytes | None, SourceRef]],
                           kind: DocKind) -> list[IngestOutcome]:
        """Decide each message of a batch, in order: the dedup claims go to Redis in one pipeline
        (per-message round trips cost more CPU than the rest of ingest together at moderate
        rates), with the same verdicts as one message at a time. One difference, harmless: a
        redelivered original's ``duplicates`` count also includes copies later in its own
        batch (their claims are made before the counts are read)."""
        out = [self._clean_one(value, key, kind, origin) for value, key, origin in messages]
        if self.dedup is None:
            return out
        todo = [i for i, o in enumerate(out) if isinstance(o, Forward) and o.doc.fingerprint]
        verdicts = await self.dedup.check_many(
            [(out[i].doc.fingerprint, out[i].doc.doc_id) for i in todo])  # type: ignore[union-attr]
        redelivered: list[int] = []
        for i, verdict in zip(todo, verdicts, strict=True):
            doc = out[i].doc  # type: ignore[union-attr]
            if verdict.is_duplicate:
                out[i] = Duplicate(doc.doc_id, verdict.original_doc_id)
            elif verdict.redelivered:  # copies may have arrived since the first delivery
                redelivered.append(i)
        if redelivered:
            counts = await self.dedup.duplicates_many(
                [out[i].doc.doc_id for i in redelivered])  # type: ignore[union-attr]
            for i in redelivered:
                doc = out[i].doc  # type: ignore[union-attr]
                out[i] = Forward(doc.model_copy(update={"duplicates": counts[doc.doc_id]}))
        return out
