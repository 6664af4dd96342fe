"""Bulk writes to Elasticsearch with retries, per-item failures and backpressure.

Shared by the two stages that write to Elasticsearch (the index sink: documents; the alerts
stage: alerts), so both follow one set of rules:

* transient failures (408, 429, 5xx, connection errors), whole-request or per item, are
  retried with capped exponential backoff and jitter, each retry re-sending only the items
  still pending; when retries run out :class:`BulkBackpressure` (a
  :class:`~services.core.errors.SinkBackpressure`) says how long to pause and which items
  were not written, and the caller must not commit meanwhile;
* items refused for good (mapping errors: HTTP 400 per item) come back as
  :class:`IndexFailure` for the DLQ;
* the index templates (``services.stream.es_layout``) are installed before the first write,
  so no index is ever auto-created with guessed mappings.

Writes are idempotent: every item carries its own ``_id`` (doc id, alert id).
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from elastic_transport import ConnectionError as TransportConnectionError
from elastic_transport import ConnectionTimeout
from elasticsearch import ApiError, AsyncElasticsearch, TransportError

from services.core.backends import es_errors
from services.core.backoff import backoff_s
from services.core.errors import BackendRejected, BackendUnavailable, SinkBackpressure
from services.core.schemas import Alert, ScoredDoc
from services.stream.es_layout import (
    ADDED_FIELDS,
    alert_to_source,
    check_prefix,
    component_templates,
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
class BulkOp:
    index: str
    id: str
    source: dict[str, Any]
    doc: ScoredDoc | Alert


def _reason(exc: ApiError) -> str:
    """Elasticsearch's own reason for refusing a request (its root cause), else the message."""
    body = exc.body if isinstance(exc.body, dict) else {}
    err = body.get("error") or {}
    if isinstance(err, dict):
        causes = err.get("root_cause") or [err]
        reason = causes[0].get("reason") if isinstance(causes[0], dict) else None
        if reason:
            return str(reason)
    return str(exc.message)


def es_client(url: str) -> AsyncElasticsearch:
    """A client for the stream stages: short timeouts and no client-side retries, because
    outages are retried by ``until_durable`` around the whole batch."""
    return AsyncElasticsearch(url, request_timeout=30, max_retries=0, retry_on_timeout=False)


class EsWriter:
    """Bulk writer for one namespace's indices (documents ``<prefix>-*``, the alerts index)."""

    def __init__(self, es: AsyncElasticsearch, prefix: str, *, alerts_index: str,
                 retries: int = 5, backoff_s: float = 0.5, backoff_max_s: float = 30.0,
                 replicas: int = 0, refresh: bool | str = False, zh_analysis: str = "bigram",
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.es = es
        self.prefix = check_prefix(prefix)
        self.alerts_index = check_prefix(alerts_index)
        self.retries = max(0, retries)
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.replicas = replicas
        self.refresh = refresh
        self.zh_analysis = zh_analysis
        self._sleep = sleep
        self._templates_ready = False

    async def index_alerts(self, alerts: Sequence[Alert]) -> FlushResult:
        """Index alerts into the alerts index (``_id`` = alert_id), same retry rules."""
        if not alerts:
            return FlushResult()
        await self._ensure_once()
        ops = [BulkOp(self.alerts_index, a.alert_id, alert_to_source(a), a) for a in alerts]
        return await self._bulk(ops)

    # -- bulk with retries
    def _delay(self, attempt: int) -> float:
        return backoff_s(attempt + 1, self.backoff_s, self.backoff_max_s)

    async def _bulk(self, ops: list[BulkOp]) -> FlushResult:
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
            retry: list[BulkOp] = []
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
        with es_errors("templates"):
            comps = component_templates(self.prefix, self.alerts_index, replicas=self.replicas,
                                        zh=self.zh_analysis)
            for name, body in comps.items():
                try:
                    await self.es.cluster.put_component_template(name=name, **body)
                except ApiError as exc:
                    if exc.meta.status != 400 or name != f"{self.prefix}-mappings":
                        raise
                    raise BackendRejected(
                        f"template {name} refused: {_reason(exc)}; with YUQING_ES_ZH_ANALYSIS="
                        f"{self.zh_analysis} every node needs that analysis plugin "
                        "(docs/search.md), or set it to bigram", "elasticsearch") from exc
            for name, body in index_templates(self.prefix, self.alerts_index).items():
                await self.es.indices.put_index_template(name=name, **body)
        await self._extend_existing()
        self._templates_ready = True

    async def _extend_existing(self) -> None:
        """Add fields introduced after the first release to indices that already exist
        (a template applies to new indices only). Adding a field is always allowed; an
        index where it cannot be added (mapped otherwise by hand) is logged and left as is:
        its documents still index, the field is just not searchable there."""
        try:
            await self.es.indices.put_mapping(index=f"{self.prefix}-*", properties=ADDED_FIELDS,
                                              allow_no_indices=True, ignore_unavailable=True)
        except Exception as exc:  # noqa: BLE001 - best effort, see docstring
            log.warning("elasticsearch: could not add %s to the existing %s-* indices: %s",
                        ", ".join(ADDED_FIELDS), self.prefix, exc)
