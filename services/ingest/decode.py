"""Bytes from Kafka to a validated :class:`NewsIn` / :class:`CommentIn`, or a reasoned rejection.

Every failure raises an :class:`~services.core.errors.InputError` whose ``reason`` is the DLQ
code, so the caller can dead-letter the original bytes without inspecting messages. Checks run
cheapest first: size before UTF-8 before JSON before the schema, so a 50 MB blob is refused
without being parsed.
"""
from __future__ import annotations

import json
from typing import Literal, overload

from pydantic import ValidationError

from services.core.errors import DecodeError, SchemaError
from services.core.schemas import CommentIn, DocKind, NewsIn

_MODELS: dict[str, type[NewsIn] | type[CommentIn]] = {"news": NewsIn, "comment": CommentIn}


def schema_message(exc: ValidationError, limit: int = 10) -> str:
    """'published_at: Input should be a valid datetime; title: Field required' (stable, short)."""
    parts = []
    for err in exc.errors(include_url=False)[:limit]:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "<root>"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    more = exc.error_count() - limit
    if more > 0:
        parts.append(f"... and {more} more")
    return "; ".join(parts)


@overload
def decode(value: bytes | None, kind: Literal["news"], max_bytes: int) -> NewsIn: ...
@overload
def decode(value: bytes | None, kind: Literal["comment"], max_bytes: int) -> CommentIn: ...
def decode(value: bytes | None, kind: DocKind, max_bytes: int) -> NewsIn | CommentIn:
    """Validate one raw message value.

    Reasons: ``empty`` (no value: a tombstone or an empty payload), ``too_large``, ``not_utf8``,
    ``invalid_json``, ``not_object`` (JSON, but not an object), ``schema``.
    """
    model = _MODELS.get(kind)
    if model is None:
        raise ValueError(f"unknown kind {kind!r}; expected 'news' or 'comment'")
    if value is None or len(value) == 0:
        raise DecodeError("message has no value (tombstone or empty payload)", reason="empty")
    if len(value) > max_bytes:
        raise DecodeError(f"message is {len(value)} bytes; the limit is {max_bytes}",
                          reason="too_large")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"value is not UTF-8: {exc.reason} at byte {exc.start}",
                          reason="not_utf8") from exc
    if text.startswith("\ufeff"):  # a UTF-8 BOM is harmless; json.loads would refuse it
        text = text[1:]
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DecodeError(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                          reason="invalid_json") from exc
    except RecursionError as exc:
        raise DecodeError("invalid JSON: nested too deeply", reason="invalid_json") from exc
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise DecodeError(f"invalid JSON: {exc}", reason="invalid_json") from exc
    if not isinstance(obj, dict):
        raise DecodeError(f"expected a JSON object, got {type(obj).__name__}", reason="not_object")
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        raise SchemaError(schema_message(exc), reason="schema") from exc
