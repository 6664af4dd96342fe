"""Query parameters shared by routers: time ranges and entity names, with 400s that say why.

A time range is ``since``/``until`` (ISO 8601, naive = UTC) or a ``window`` ending now. A range
that ends before it starts, or spans more than the configured maximum, is a 400 (the request is
well-formed but asks for something meaningless); a malformed value is a 422 from validation.
"""
from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from elasticsearch import AsyncElasticsearch
from fastapi import HTTPException

from services.core.backends import es_errors
from services.ingest.entities import EntityLinker

WINDOW_PATTERN = r"^\d{1,5}[mhd]$"
_UNITS = {"m": 60, "h": 3600, "d": 86400}


def parse_window(window: str) -> timedelta:
    m = re.fullmatch(r"(\d{1,5})([mhd])", window)
    if not m or int(m[1]) == 0:
        raise HTTPException(400, f"window {window!r}: use a positive number and m, h or d, e.g. 1h")
    return timedelta(seconds=int(m[1]) * _UNITS[m[2]])


def utc(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def time_range(since: datetime | None, until: datetime | None, window: str | None,
               max_days: int, now: datetime | None = None,
               default_window: str | None = "24h") -> tuple[datetime | None, datetime | None]:
    """Resolve (start, end); ``None`` sides are open. Raises 400 on a meaningless range."""
    now = now or datetime.now(UTC)
    start, end = utc(since), utc(until)
    if window is not None and since is not None:
        raise HTTPException(400, "give either 'window' or 'since', not both")
    win = window or (default_window if since is None else None)
    if win is not None:
        end = end or now
        start = end - parse_window(win)
    if start is not None and end is not None:
        if start >= end:
            raise HTTPException(400, f"bad time range: since ({start.isoformat()}) must be before "
                                     f"until ({end.isoformat()})")
        if end - start > timedelta(days=max_days):
            raise HTTPException(400, f"bad time range: spans more than {max_days} days; narrow it")
    if start is not None and start > now + timedelta(minutes=5):
        raise HTTPException(400, f"bad time range: since ({start.isoformat()}) is in the future")
    return start, end


class EntityResolver:
    """Maps a ticker to its canonical form and refuses entities yuqing has never heard of:
    known means on the watchlist or in at least one indexed document."""

    def __init__(self, linker: EntityLinker, es: AsyncElasticsearch, docs_alias: str) -> None:
        self._linker = linker
        self._es = es
        self._alias = docs_alias
        self._known = {c.ticker for c in linker.companies}
        self._seen: set[str] = set()

    async def resolve(self, entity: str) -> str:
        canonical = self._linker.canonical(entity)
        if canonical in self._known or canonical in self._seen:
            return canonical
        with es_errors("entity lookup"):
            res = await self._es.count(index=self._alias, ignore_unavailable=True,
                                       query={"term": {"entities": canonical}})
        if res.get("count", 0) > 0:
            if len(self._seen) < 100_000:
                self._seen.add(canonical)
            return canonical
        raise HTTPException(400, f"unknown entity {entity!r}: not on the watchlist and in no "
                                 "indexed document")
