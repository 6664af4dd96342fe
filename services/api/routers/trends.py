"""``/v1/trends``: sentiment counts and negative share from the Redis trend buckets."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel

from services.api.deps import ReadKey, SettingsDep, TrendsDep
from services.api.params import (
    ENTITY_DESCRIPTION,
    ENTITY_MAX_CHARS,
    ENTITY_PATTERN,
    WINDOW_PATTERN,
    time_range,
)
from services.core.schemas import Label
from services.trends.windows import ALL, DIM_ALL, DIM_ENTITY, DIM_ENTITY_TOPIC, DIM_TOPIC

router = APIRouter(prefix="/v1/trends", tags=["trends"])

TopicQ = Annotated[str | None, Query(min_length=1, max_length=64, pattern=r"^[^\s|]+$",
                                     description="A topic; with an entity: that entity and topic.")]
EntityQ = Annotated[str | None, Query(min_length=1, max_length=ENTITY_MAX_CHARS,
                                      pattern=ENTITY_PATTERN, description=ENTITY_DESCRIPTION)]


class TrendPoint(BaseModel):
    start: datetime
    count: int
    labels: dict[str, int]
    negative_share: float
    mean_scores: dict[str, float]


class TrendSeries(BaseModel):
    dimension: str
    value: str
    resolution: Literal["minute", "hour"]
    start: datetime
    end: datetime
    total: dict[str, Any]
    points: list[TrendPoint]


class TrendSummary(BaseModel):
    dimension: str
    value: str
    windows: dict[str, Any]


async def _dim(request: Request, entity: str | None, topic: str | None) -> tuple[str, str]:
    if entity is not None:
        canonical = await request.app.state.entities.resolve(entity)
        if topic is not None:
            return DIM_ENTITY_TOPIC, f"{canonical}|{topic}"
        return DIM_ENTITY, canonical
    if topic is not None:
        return DIM_TOPIC, topic
    return DIM_ALL, ALL


def _counts(c: Any) -> dict[str, Any]:
    data = c.model_dump() if hasattr(c, "model_dump") else dict(c)
    return {k: data.get(k) for k in ("count", "labels", "negative_share", "mean_scores")}


@router.get("", response_model=TrendSeries,
            summary="Counts per label and negative share over time (scope: read)")
async def series(request: Request, trends: TrendsDep, settings: SettingsDep, _: ReadKey,
                 entity: EntityQ = None, topic: TopicQ = None,
                 resolution: Literal["minute", "hour"] = "minute",
                 window: Annotated[str | None, Query(
                     pattern=WINDOW_PATTERN, description="e.g. 30m, 6h, 2d; ends now")] = None,
                 since: datetime | None = None, until: datetime | None = None) -> TrendSeries:
    start, end = time_range(since, until, window, settings.api_max_range_days,
                            default_window="1h")
    if start is None:  # cannot happen with a default window; keeps the type checker honest
        raise HTTPException(400, "bad time range: give 'window' or 'since'")
    if end is None:
        end = datetime.now(start.tzinfo)
        if start >= end:
            raise HTTPException(400, "bad time range: since must be in the past")
    kept_s = trends.retention_s if resolution == "minute" else trends.hour_retention_s
    if start < datetime.now(start.tzinfo) - timedelta(seconds=kept_s):
        raise HTTPException(400, f"bad time range: {resolution} buckets are kept "
                                 f"{kept_s // 3600} hours; start later"
                                 + (" or use resolution=hour" if resolution == "minute" else ""))
    dim, value = await _dim(request, entity, topic)
    try:
        raw = await trends.series(dim, value, start, end, resolution)
    except ValueError as exc:  # e.g. too many points for the resolution
        raise HTTPException(400, str(exc)) from exc
    points = []
    total = {"count": 0, "labels": {}, "negative_share": 0.0}
    for item in raw:
        c = _counts(item.counts)
        points.append(TrendPoint(start=item.start, **c))
        total["count"] += c["count"]
        for lab, n in c["labels"].items():
            total["labels"][lab] = total["labels"].get(lab, 0) + n
    if total["count"]:
        total["negative_share"] = total["labels"].get("negative", 0) / total["count"]
    return TrendSeries(dimension=dim, value=value, resolution=resolution, start=start, end=end,
                       total=total, points=points)


@router.get("/summary", response_model=TrendSummary,
            summary="Rolling 5m / 1h / 24h counts and negative share (scope: read)")
async def summary(request: Request, trends: TrendsDep, _: ReadKey, entity: EntityQ = None,
                  topic: TopicQ = None) -> TrendSummary:
    dim, value = await _dim(request, entity, topic)
    raw = await trends.read(dim, value)
    windows = {name: _counts(c) for name, c in raw.items()}
    return TrendSummary(dimension=dim, value=value, windows=windows)


class TopItem(BaseModel):
    value: str
    count: int


@router.get("/top", response_model=list[TopItem],
            summary="Most-mentioned entities or topics in a rolling window (scope: read)")
async def top(trends: TrendsDep, _: ReadKey, dimension: Literal["entity", "topic"] = "entity",
              window: Literal["5m", "1h", "24h"] = "1h", label: Label | None = None,
              n: Annotated[int, Query(ge=1, le=100)] = 10) -> list[TopItem]:
    return [TopItem(value=v, count=c) for v, c in await trends.top(dimension, window, n, label)]
