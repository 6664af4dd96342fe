"""``/v1/documents``: search the indexed documents (text, entity, label, source, language, time
range); the text query is :mod:`services.api.text_query`'s."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request
from pydantic import BaseModel

from models.lang import canonical_language
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
from services.api.text_query import text_query
from services.core.schemas import Label

router = APIRouter(prefix="/v1/documents", tags=["documents"])

_FIELDS = ["doc_id", "kind", "source", "title", "text", "url", "author", "published_at",
           "entities", "topics", "sentiment", "entity_sentiment", "negative_for", "duplicates",
           "lang"]


class DocumentPage(BaseModel):
    items: list[dict[str, Any]]
    total: int
    offset: int
    limit: int
    next_cursor: str | None = None


def _item(hit: dict[str, Any]) -> dict[str, Any]:
    src = hit["_source"]
    out = {k: src.get(k) for k in _FIELDS if k in src}
    out["doc_id"] = src.get("doc_id", hit["_id"])
    if hit.get("_score") is not None:
        out["score"] = hit["_score"]
    if hit.get("highlight"):
        out["highlight"] = hit["highlight"]
    return out


@router.get("", response_model=DocumentPage, summary="Search indexed documents (scope: read)")
async def search_documents(
        request: Request, es: ESDep, settings: SettingsDep, _: ReadKey,
        q: Annotated[str | None, Query(min_length=1, max_length=500,
                                       description="Words or phrases in title/text "
                                                   "(simple query syntax). Chinese terms "
                                                   "must each match as written, e.g. "
                                                   "'平安银行 立案调查' (docs/search.md)")] = None,
        lang: Annotated[str | None, Query(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$",
                                          description="Documents in this language (zh also "
                                                      "matches zh-*)")] = None,
        entity: Annotated[str | None, Query(min_length=1, max_length=ENTITY_MAX_CHARS,
                                            pattern=ENTITY_PATTERN,
                                            description=ENTITY_DESCRIPTION)] = None,
        label: Label | None = None,
        entity_label: Annotated[Label | None, Query(
            description="With entity: the document's sentiment towards that entity (its "
                        "entity_sentiment entry; 'Bank A sues Company B' is negative for B, "
                        "not A), where label filters the document's own.")] = None,
        source: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
        kind: Literal["news", "comment"] | None = None,
        topic: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
        window: Annotated[str | None, Query(pattern=WINDOW_PATTERN)] = None,
        since: datetime | None = None, until: datetime | None = None,
        sort: Literal["newest", "relevance", "most_negative"] = "newest",
        offset: Offset = 0, limit: Limit = 20, cursor: Cursor = None) -> DocumentPage:
    after = check_window(offset, limit, cursor)
    start, end = time_range(since, until, window, settings.api_max_range_days,
                            default_window=None)
    must: list[dict[str, Any]] = []
    filters: list[dict[str, Any]] = []
    highlight = None
    if q is not None:
        tq = text_query(q, mode=settings.es_zh_analysis)
        if tq.cjk and (legacy := await request.app.state.zh_legacy.get()):
            tq = text_query(q, mode=settings.es_zh_analysis, legacy=legacy)
        must.append(tq.query)
        highlight = tq.highlight
    if lang is not None:
        lang = canonical_language(lang) or lang.lower()  # ingest stores the primary subtag
        filters.append({"bool": {"should": [{"term": {"lang": lang}},
                                            {"prefix": {"lang": f"{lang}-"}}],
                                 "minimum_should_match": 1}})
    if entity_label is not None and entity is None:
        raise HTTPException(422, "entity_label needs entity (the ticker it applies to)")
    if entity is not None:
        ticker = await request.app.state.entities.resolve(entity)
        filters.append({"term": {"entities": ticker}})
        if entity_label is not None:
            filters.append({"nested": {"path": "entity_sentiment", "query": {"bool": {"filter": [
                {"term": {"entity_sentiment.entity": ticker}},
                {"term": {"entity_sentiment.label": entity_label}}]}}}})
    if label is not None:
        filters.append({"term": {"sentiment.label": label}})
    if source is not None:
        filters.append({"term": {"source": source}})
    if kind is not None:
        filters.append({"term": {"kind": kind}})
    if topic is not None:
        filters.append({"term": {"topics": topic}})
    if (clause := range_filter("published_at", start, end)) is not None:
        filters.append(clause)
    sort_spec: list[Any] | None
    if sort == "relevance":
        sort_spec = ["_score", {"published_at": "desc"}, {"doc_id": "asc"}]
    elif sort == "most_negative":
        sort_spec = [{"sentiment.negative": "desc"}, {"published_at": "desc"}, {"doc_id": "asc"}]
    else:
        sort_spec = [{"published_at": "desc"}, {"doc_id": "asc"}]
    res = await search(es, settings.es_index_prefix,
                       query={"bool": {"must": must or [{"match_all": {}}], "filter": filters}},
                       sort=sort_spec, offset=offset, limit=limit, search_after=after,
                       highlight=highlight)
    hits = res["hits"]["hits"]
    return DocumentPage(items=[_item(h) for h in hits], total=res["hits"]["total"]["value"],
                        offset=offset, limit=limit, next_cursor=next_cursor(hits, limit))


async def find_document(es: Any, alias: str, doc_id: str) -> dict[str, Any] | None:
    res = await search(es, alias, query={"ids": {"values": [doc_id]}}, sort=None, offset=0,
                       limit=1)
    hits = res["hits"]["hits"]
    return _item(hits[0]) if hits else None


@router.get("/{doc_id:path}", response_model=dict[str, Any], summary="One document (scope: read)")
async def get_document(doc_id: Annotated[str, Path(min_length=1, max_length=600)], es: ESDep,
                       settings: SettingsDep, _: ReadKey) -> dict[str, Any]:
    doc = await find_document(es, settings.es_index_prefix, doc_id)
    if doc is None:
        raise HTTPException(404, f"document {doc_id!r} not found")
    return doc
