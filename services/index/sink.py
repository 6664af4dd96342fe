"""Bulk indexing sink for documents: add / flush, retention of daily indices.

Contract with the agent (offsets are committed only after their effects are durable):

* ``add(doc)`` buffers; ``full`` says when to flush; ``flush()`` indexes the buffer in bulk
  requests of ``max_docs`` and returns only when every document is either indexed or
  permanently rejected. Rejections (mapping errors: HTTP 400 per item) come back in
  :class:`FlushResult.failures` for the DLQ; after ``flush`` returns the agent may commit the
  offsets of everything it added.
* Transient failures are retried by the shared writer (``services.stream.es_bulk``); when
  retries run out ``flush`` raises :class:`BulkBackpressure` with ``retry_after`` and the
  documents that were not indexed in ``pending``: the agent pauses, then re-adds them (or
  re-consumes from the last committed offset) and must not commit meanwhile.
* The buffer is cleared in ``finally``: a failed flush never leaves half a batch behind to be
  sent twice or mixed with the next one.

Idempotency: ``_id`` = doc_id and the daily index comes from the document's own date, so a
re-sent document overwrites itself.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from elasticsearch import AsyncElasticsearch

from services.core.backends import es_errors
from services.core.config import Settings
from services.core.schemas import ScoredDoc, utcnow
from services.stream.es_bulk import (  # noqa: F401 - the sink's result types, re-exported
    BulkBackpressure,
    BulkOp,
    EsWriter,
    FlushResult,
    IndexFailure,
    es_client,
)
from services.stream.es_layout import doc_to_source, index_date, index_for

log = logging.getLogger(__name__)

# Most documents per bulk request (and per sink take): ~1-2 MB requests, well inside ES's
# defaults, and one round trip per take at full load.
BULK_MAX_DOCS = 500


def build_sink(settings: Settings) -> EsSink:
    """The index stage's sink with its own client (close it with ``await sink.es.close()``)."""
    return EsSink(es_client(settings.es_url), settings.es_index_prefix,
                  alerts_index=settings.es_alerts_index, zh_analysis=settings.es_zh_analysis)


class EsSink(EsWriter):
    """Buffers scored documents and bulk-indexes them into daily indices behind the alias."""

    def __init__(self, es: AsyncElasticsearch, prefix: str, *, max_docs: int = BULK_MAX_DOCS,
                 alerts_index: str = "yuqing-alerts", **writer: Any) -> None:
        super().__init__(es, prefix, alerts_index=alerts_index, **writer)
        self.max_docs = max(1, max_docs)
        self._buffer: list[ScoredDoc] = []

    # -- buffer
    def add(self, doc: ScoredDoc) -> None:
        self._buffer.append(doc)

    def __len__(self) -> int:
        return len(self._buffer)

    @property
    def full(self) -> bool:
        return len(self._buffer) >= self.max_docs

    async def write(self, docs: Sequence[ScoredDoc]) -> FlushResult:
        """``add`` each, then ``flush``."""
        for d in docs:
            self.add(d)
        return await self.flush()

    async def flush(self) -> FlushResult:
        """Index everything buffered (see the module docstring for the guarantees)."""
        docs, result = self._buffer, FlushResult()
        try:
            if not docs:
                return result
            await self._ensure_once()
            ops = [BulkOp(index_for(self.prefix, d.published_at), d.doc_id, doc_to_source(d), d)
                   for d in docs]
            for i in range(0, len(ops), self.max_docs):
                try:
                    part = await self._bulk(ops[i:i + self.max_docs])
                except BulkBackpressure as exc:
                    # Later chunks were never sent: they are pending too.
                    exc.pending.extend(o.doc for o in ops[i + self.max_docs:])
                    raise
                result.indexed += part.indexed
                result.failures += part.failures
            return result
        finally:
            self._buffer = []

    async def daily_indices(self) -> dict[str, datetime]:
        """Existing daily indices of this prefix, by name, with their name date (UTC)."""
        with es_errors("list indices"):
            resp = await self.es.options(ignore_status=404).indices.resolve_index(
                name=f"{self.prefix}-*", expand_wildcards="open,closed")
        out: dict[str, datetime] = {}
        for item in resp.get("indices", []):
            d = index_date(self.prefix, item["name"])
            if d is not None:
                out[item["name"]] = datetime(d.year, d.month, d.day, tzinfo=UTC)
        return out

    async def expired(self, days: int, now: datetime | None = None) -> list[str]:
        """Daily indices :meth:`retention` would delete now (oldest first)."""
        if days < 1:
            raise ValueError("days must be at least 1")
        cutoff = ((now or utcnow()) - timedelta(days=days)).date()
        return sorted(name for name, d in (await self.daily_indices()).items()
                      if d.date() < cutoff)

    async def retention(self, days: int, now: datetime | None = None) -> list[str]:
        """Delete daily indices whose name date is before ``now - days`` (UTC); return names.

        With ``days=30`` on 2026-11-29 the oldest kept index is ``<prefix>-2026.10.30``. Only
        names of the exact form ``<prefix>-YYYY.MM.DD`` are candidates; the alias and other
        indices are never touched.
        """
        old = await self.expired(days, now)
        with es_errors("delete indices"):
            for i in range(0, len(old), 50):
                await self.es.options(ignore_status=404).indices.delete(
                    index=",".join(old[i:i + 50]), expand_wildcards="none")
        return old
