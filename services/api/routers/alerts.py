"""``/v1/alerts``: recent alerts from the alerts index, filtered and paged."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from services.api.deps import ESDep, Limit, Offset, ReadKey, SettingsDep
from services.api.es import range_filter, search
from services.api.paging import Cursor, check_window, next_cursor
from services.api.params import (
    ENTITY_DESCRIPTION,
    ENTITY_MAX_CHARS,
    ENTITY_PATTERN,
    WINDOW_PATTERN,
    time_range,
)
from services.core.schemas import SEVERITY_ORDER, Severity

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])


class AlertPage(BaseModel):
    items: list[dict[str, Any]]
    total: int
    offset: int
    limit: int
    next_cursor: str | None = None


@router.get("", response_model=AlertPage, summary="Recent alerts, newest first (scope: read)")
async def list_alerts(request: Request, es: ESDep, settings: SettingsDep, _: ReadKey,
                      entity: Annotated[str | None, Query(
                          min_length=1, max_length=ENTITY_MAX_CHARS, pattern=ENTITY_PATTERN,
                          description=ENTITY_DESCRIPTION + " '*': alerts on all entities "
                                      "together.")] = None,
                      topic: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
                      min_severity: Severity = "info",
                      window: Annotated[str | None, Query(pattern=WINDOW_PATTERN)] = None,
                      since: datetime | None = None, until: datetime | None = None,
                      offset: Offset = 0, limit: Limit = 50,
                      cursor: Cursor = None) -> AlertPage:
    after = check_window(offset, limit, cursor)
    start, end = time_range(since, until, window, settings.api_max_range_days,
                            default_window=None)
    filters: list[dict[str, Any]] = [{"terms": {"severity": [
        s for s, n in SEVERITY_ORDER.items() if n >= SEVERITY_ORDER[min_severity]]}}]
    if entity is not None:
        value = entity if entity == "*" else await request.app.state.entities.resolve(entity)
        filters.append({"term": {"entity": value}})
    if topic is not None:
        filters.append({"term": {"topic": topic}})
    if (clause := range_filter("created_at", start, end)) is not None:
        filters.append(clause)
    res = await search(es, settings.es_alerts_index, query={"bool": {"filter": filters}},
                       sort=[{"created_at": "desc"}, {"alert_id": "asc"}], offset=offset,
                       limit=limit, search_after=after)
    hits = res["hits"]["hits"]
    return AlertPage(items=[h["_source"] for h in hits], total=res["hits"]["total"]["value"],
                     offset=offset, limit=limit, next_cursor=next_cursor(hits, limit))
