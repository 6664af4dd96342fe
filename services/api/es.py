"""Elasticsearch calls of the API, with client errors translated into yuqing's error tree."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from elasticsearch import ApiError, AsyncElasticsearch, TransportError

from services.core.backends import es_errors


async def search(es: AsyncElasticsearch, index: str, *, query: dict[str, Any],
                 sort: list[Any] | None, offset: int, limit: int,
                 highlight: dict[str, Any] | None = None,
                 search_after: list[Any] | None = None) -> dict[str, Any]:
    """A paged search that treats a missing index as empty (nothing indexed yet)."""
    extra: dict[str, Any] = {"search_after": search_after} if search_after else {}
    with es_errors("search"):
        res = await es.search(index=index, query=query, sort=sort, from_=offset, size=limit,
                              track_total_hits=True, ignore_unavailable=True,
                              allow_no_indices=True, highlight=highlight, **extra)
    return res.body


def range_filter(field: str, start: datetime | None, end: datetime | None) -> dict[str, Any] | None:
    """A half-open [start, end) range clause on ``field``, or None when neither bound is set."""
    if not (start or end):
        return None
    rng: dict[str, str] = {}
    if start:
        rng["gte"] = start.isoformat()
    if end:
        rng["lt"] = end.isoformat()
    return {"range": {field: rng}}


async def ping(es: AsyncElasticsearch) -> bool:
    try:
        health = await es.cluster.health(timeout="2s")
    except (TransportError, ApiError):
        return False
    return health.get("status") in ("green", "yellow")
