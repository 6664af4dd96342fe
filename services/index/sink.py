"""Bulk indexing sink: add / flush with retries, per-item failures, and backpressure.

Contract with the agent (offsets are committed only after their effects are durable):

* ``add(doc)`` buffers; ``full`` says when to flush; ``flush()`` indexes the buffer in bulk
  requests of ``max_docs`` and returns only when every document is either indexed or
  permanently rejected. Rejections (mapping errors: HTTP 400 per item) come back in
  :class:`FlushResult.failures` for the DLQ; after ``flush`` returns the agent may commit the
  offsets of everything it added.
* Transient failures (429, 5xx, connection errors), whole-request or per item, are retried
  with exponential backoff and jitter, each retry re-sending only the items still pending.
  When retries run out ``flush`` raises :class:`BulkBackpressure` (a
  :class:`~services.core.errors.SinkBackpressure`) with ``retry_after`` and the documents that
  were not indexed in ``pending``: the agent pauses, then re-adds them (or re-consumes from
  the last committed offset) and must not commit meanwhile.
* The buffer is cleared in ``finally``: a failed flush never leaves half a batch behind to be
  sent twice or mixed with the next one.

Idempotency: ``_id`` = doc_id and the daily index comes from the document's own date, so a
re-sent document overwrites itself.
"""
from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from elastic_transport import ConnectionError as TransportConnectionError
from elastic_transport import ConnectionTimeout
from elasticsearch import ApiError, AsyncElasticsearch, TransportError

from services.core.errors import BackendRejected, BackendUnavailable, SinkBackpressure
from services.core.schemas import Alert, ScoredDoc, utcnow
from services.index.template import (
    alert_to_source,
    check_prefix,
    component_templates,
    doc_to_source,
    index_date,
    index_for,
    index_templates,
)

log = logging.getLogger(__name__)

TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class IndexFailure:
    """A document Elasticsearch refused for good (send it to the DLQ)."""

    doc_id: str
    index: str
    status: int
    error_type: str
    reason: str
    doc: ScoredDoc | Alert | None = None


@dataclass(slots=True)
class FlushResult:
    indexed: int = 0
    failures: list[IndexFailure] = field(default_factory=list)


class BulkBackpressure(SinkBackpressure):
    """Elasticsearch kept refusing: pause for ``retry_after`` s; ``pending`` were not indexed."""

    def __init__(self, message: str, retry_after: float, pending: Sequence[Any]) -> None:
        super().__init__(message, "elasticsearch", retry_after)
        self.pending = list(pending)


@dataclass(slots=True)
class _Op:
    index: str
    id: str
    source: dict[str, Any]
    doc: ScoredDoc | Alert


class EsSink:
    """Buffers scored documents and bulk-indexes them into daily indices behind the alias."""

    def __init__(self, es: AsyncElasticsearch, prefix: str, *, max_docs: int = 500,
                 retries: int = 5, backoff_s: float = 0.5, backoff_max_s: float = 30.0,
                 alerts_index: str = "yuqing-alerts", replicas: int = 0,
                 refresh: bool | str = False,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.es = es
        self.prefix = check_prefix(prefix)
        self.alerts_index = check_prefix(alerts_index)
        self.max_docs = max(1, max_docs)
        self.retries = max(0, retries)
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.replicas = replicas
        self.refresh = refresh
        self._sleep = sleep
        self._buffer: list[ScoredDoc] = []
        self._templates_ready = False

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
            ops = [_Op(index_for(self.prefix, d.published_at), d.doc_id, doc_to_source(d), d)
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

    async def index_alerts(self, alerts: Sequence[Alert]) -> FlushResult:
        """Index alerts into the alerts index (``_id`` = alert_id), same retry rules."""
        if not alerts:
            return FlushResult()
        await self._ensure_once()
        ops = [_Op(self.alerts_index, a.alert_id, alert_to_source(a), a) for a in alerts]
        return await self._bulk(ops)

    # -- bulk with retries
    def _delay(self, attempt: int) -> float:
        base = min(self.backoff_max_s, self.backoff_s * (2 ** attempt))
        return base * (0.5 + random.random() / 2)  # jitter: replicas do not retry in lockstep

    async def _bulk(self, ops: list[_Op]) -> FlushResult:
        result = FlushResult()
        pending = ops
        last_error = ""
        for attempt in range(self.retries + 1):
            if attempt:
                await self._sleep(self._delay(attempt - 1))
            body: list[dict[str, Any]] = []
            for o in pending:
                body.append({"index": {"_index": o.index, "_id": o.id}})
                body.append(o.source)
            try:
                resp = await self.es.bulk(operations=body, refresh=self.refresh,
                                          filter_path="errors,items.*.status,items.*.error")
            except (TransportConnectionError, ConnectionTimeout) as exc:
                last_error = f"connection: {exc}"
                continue
            except ApiError as exc:
                if exc.meta.status in TRANSIENT_STATUS:
                    last_error = f"HTTP {exc.meta.status}: {exc.message}"
                    continue
                raise BackendRejected(f"bulk request refused (HTTP {exc.meta.status}): "
                                      f"{exc.message}", "elasticsearch") from exc
            except TransportError as exc:
                last_error = f"transport: {exc}"
                continue
            items = resp.get("items") or []
            if len(items) != len(pending):
                raise BackendUnavailable(
                    f"bulk answered {len(items)} items for {len(pending)} operations",
                    "elasticsearch")
            retry: list[_Op] = []
            for op, item in zip(pending, items, strict=True):
                res = next(iter(item.values()))
                status = int(res.get("status", 500))
                if status < 300:
                    result.indexed += 1
                elif status in TRANSIENT_STATUS:
                    retry.append(op)
                    err = res.get("error") or {}
                    last_error = f"item HTTP {status}: {err.get('type')}: {err.get('reason')}"
                else:
                    err = res.get("error") or {}
                    if isinstance(err, str):
                        err = {"type": "error", "reason": err}
                    cause = err.get("caused_by") or {}
                    reason = str(err.get("reason") or "")
                    if cause.get("reason"):
                        reason = f"{reason}: {cause['reason']}"
                    result.failures.append(IndexFailure(op.id, op.index, status,
                                                        str(err.get("type") or "error"),
                                                        reason[:2000], op.doc))
            pending = retry
            if not pending:
                return result
        retry_after = self._delay(self.retries)
        log.warning("elasticsearch bulk: %d documents still pending after %d attempts (%s)",
                    len(pending), self.retries + 1, last_error)
        raise BulkBackpressure(
            f"{len(pending)} documents not indexed after {self.retries + 1} attempts: "
            f"{last_error}", retry_after, [o.doc for o in pending])

    # -- administration
    async def _ensure_once(self) -> None:
        if not self._templates_ready:
            await self.ensure_templates()

    async def ensure_templates(self) -> None:
        """Create or update the component and index templates (idempotent PUTs).

        Must run before the first daily index is created: an index auto-created without the
        template has guessed mappings and no alias. ``flush`` calls it once per sink.
        """
        try:
            comps = component_templates(self.prefix, self.alerts_index, replicas=self.replicas)
            for name, body in comps.items():
                await self.es.cluster.put_component_template(name=name, **body)
            for name, body in index_templates(self.prefix, self.alerts_index).items():
                await self.es.indices.put_index_template(name=name, **body)
        except ApiError as exc:
            if exc.meta.status in TRANSIENT_STATUS:
                raise BackendUnavailable(f"templates: {exc.message}", "elasticsearch") from exc
            raise BackendRejected(f"templates refused: {exc.message}", "elasticsearch") from exc
        except TransportError as exc:
            raise BackendUnavailable(f"templates: {exc}", "elasticsearch") from exc
        self._templates_ready = True

    async def daily_indices(self) -> dict[str, datetime]:
        """Existing daily indices of this prefix, by name, with their name date (UTC)."""
        try:
            resp = await self.es.indices.resolve_index(name=f"{self.prefix}-*",
                                                       expand_wildcards="open,closed")
        except ApiError as exc:
            if exc.meta.status == 404:
                return {}
            raise BackendUnavailable(f"list indices: {exc.message}", "elasticsearch") from exc
        except TransportError as exc:
            raise BackendUnavailable(f"list indices: {exc}", "elasticsearch") from exc
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
        try:
            for i in range(0, len(old), 50):
                await self.es.options(ignore_status=404).indices.delete(
                    index=",".join(old[i:i + 50]), expand_wildcards="none")
        except ApiError as exc:
            raise BackendRejected(f"delete indices: {exc.message}", "elasticsearch") from exc
        except TransportError as exc:
            raise BackendUnavailable(f"delete indices: {exc}", "elasticsearch") from exc
        return old
