"""Paging through search results: offset/limit for the first pages, a cursor past them.

Elasticsearch answers ``from + size`` past ``index.max_result_window`` (10,000) with an
internal error; instead the API refuses such a request with 422 naming the field, and every
page carries ``next_cursor`` (the last hit's sort values, opaque to the client) that reads the
following page with ``search_after`` however deep -- stable while documents keep arriving,
since every sort ends in a unique tiebreaker.
"""
from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any

from fastapi import HTTPException, Query

MAX_WINDOW = 10_000

Cursor = Annotated[str | None, Query(max_length=2000, description=(
    "Continue after the page that returned this `next_cursor` (offset must then be 0)."))]


def check_window(offset: int, limit: int, cursor: str | None) -> list[Any] | None:
    """The ``search_after`` values of ``cursor`` (or None), after checking the page bounds."""
    if cursor is not None:
        if offset:
            raise HTTPException(422, "offset: must be 0 with a cursor (the cursor says where "
                                     "the page starts)")
        return decode_cursor(cursor)
    if offset + limit > MAX_WINDOW:
        raise HTTPException(422, f"offset: offset + limit must be at most {MAX_WINDOW} "
                                 f"(got {offset + limit}); page further with cursor=next_cursor")
    return None


def decode_cursor(cursor: str) -> list[Any]:
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor.encode() + b"=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise HTTPException(422, "cursor: not a cursor this API returned") from exc
    if not isinstance(values, list) or not values or len(values) > 4:
        raise HTTPException(422, "cursor: not a cursor this API returned")
    return values


def next_cursor(hits: list[dict[str, Any]], limit: int) -> str | None:
    """A cursor after the last hit, when the page was full (there may be more)."""
    if len(hits) < limit or not hits or "sort" not in hits[-1]:
        return None
    raw = json.dumps(hits[-1]["sort"], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")
