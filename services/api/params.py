"""Query parameters shared by routers: time ranges and entities, with 400s that say why.

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
from services.core.watchlist import Watchlist

WINDOW_PATTERN = r"^\d{1,5}[mhd]$"
# An entity as a query parameter: a ticker/code, a name in any language, a 股吧 mention
# ($贵州茅台(600519)$); '|' separates trend key parts, so it is refused.
ENTITY_PATTERN = r"^[^|\x00-\x1f]+$"
ENTITY_MAX_CHARS = 64
ENTITY_DESCRIPTION = ("A company: a ticker or code in any spelling (AAPL, 600519.SH, SH600519, "
                      "600519, 00700.HK, 700), its Chinese full or short name (贵州茅台), or an "
                      "alias (茅台, Tencent); resolved to its watchlist id.")
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
    """Maps an entity as a user gives it to its id, and refuses entities yuqing has never
    heard of: known means on the watchlist or in at least one indexed document.

    Accepted: any code spelling (``600519.SH``, ``SH600519``, ``600519``, ``00700.HK``,
    ``700``), a ticker or listing (``GOOG`` -> ``GOOGL``), a Chinese full or short name
    (贵州茅台酒股份有限公司, 贵州茅台, 騰訊控股), an alias (茅台, Tencent) or a 股吧 mention
    (``$贵州茅台(600519)$``). An ambiguous short name (平安) is refused with its candidates,
    unless the watchlist names the one it means (see :mod:`services.core.watchlist`)."""

    def __init__(self, watchlist: Watchlist, es: AsyncElasticsearch, docs_alias: str) -> None:
        self._watchlist = watchlist
        self._es = es
        self._alias = docs_alias
        self._seen: set[str] = set()

    async def resolve(self, entity: str) -> str:
        found = self._watchlist.resolve(entity)
        if found.entity is not None:
            return found.entity
        if found.ambiguous is not None:
            options = " or ".join(self._watchlist.describe(t) for t in found.ambiguous.candidates)
            raise HTTPException(400, f"ambiguous entity {entity!r}: {options}; give its code or "
                                     "full name")
        canonical = found.ticker
        if canonical is None:
            raise HTTPException(400, f"unknown entity {entity!r}: not a name on the watchlist; "
                                     "give its code (600519.SH) or add it to the watchlist")
        if canonical in self._seen:
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
