from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from services.core.errors import DecodeError, InputError, SchemaError
from services.core.schemas import CommentIn, NewsIn
from services.ingest.decode import decode

NEWS = {"id": "n1", "source": "reuters", "published_at": "2026-11-29T06:00:00Z",
        "title": "Apple beats", "body": "Body", "tickers": ["$aapl"]}


def _b(obj: object) -> bytes:
    return json.dumps(obj).encode()


def test_valid_news_and_comment() -> None:
    n = decode(_b(NEWS), "news", 10_000)
    assert isinstance(n, NewsIn)
    assert n.tickers == ["AAPL"]
    assert n.published_at == datetime(2026, 11, 29, 6, tzinfo=UTC)
    c = decode(_b({"id": "c1", "source": "st", "published_at": "2026-11-29T06:00:00",
                   "text": "to the moon", "author": "bob"}), "comment", 10_000)
    assert isinstance(c, CommentIn)
    assert c.published_at.tzinfo is not None


def test_utf8_bom_is_accepted() -> None:
    assert decode(b"\xef\xbb\xbf" + _b(NEWS), "news", 10_000).id == "n1"


@pytest.mark.parametrize(("value", "reason", "exc_type"), [
    (None, "empty", DecodeError),
    (b"", "empty", DecodeError),
    (b"x" * 101, "too_large", DecodeError),
    (b'{"title": "\xff\xfe"}', "not_utf8", DecodeError),
    (b'{"id": "n1",', "invalid_json", DecodeError),
    (b"[1, 2]", "not_object", DecodeError),
    (b'"just a string"', "not_object", DecodeError),
    (b"null", "not_object", DecodeError),
    (b"[" * 5000 + b"]" * 5000, "too_large", DecodeError),
])
def test_decode_failures_have_reason_codes(value: bytes | None, reason: str,
                                           exc_type: type[InputError]) -> None:
    with pytest.raises(exc_type) as info:
        decode(value, "news", 100)
    assert info.value.reason == reason


@pytest.mark.parametrize("value", [
    b"[" * 100_000 + b"]" * 100_000,  # nested deeper than the parser recurses
    b'{"id": ' + b"9" * 5000 + b"}",  # an integer Python refuses to convert
])
def test_pathological_json_is_invalid_json(value: bytes) -> None:
    with pytest.raises(DecodeError) as info:
        decode(value, "news", 1_000_000)
    assert info.value.reason == "invalid_json"


def test_size_limit_is_checked_before_parsing() -> None:
    # Invalid JSON, but too large: the cheaper check wins.
    with pytest.raises(DecodeError) as info:
        decode(b"{" * 50, "news", 10)
    assert info.value.reason == "too_large"


def test_schema_error_lists_fields() -> None:
    bad = dict(NEWS, published_at="yesterday")
    del bad["title"]
    with pytest.raises(SchemaError) as info:
        decode(_b(bad), "news", 10_000)
    assert info.value.reason == "schema"
    msg = str(info.value)
    assert "published_at: Input should be a valid datetime" in msg
    assert "title: Field required" in msg


@pytest.mark.parametrize("patch", [
    {"id": 123},  # wrong type: ids are strings
    {"title": ["a"]},
    {"tickers": "AAPL"},
    {"id": "has space"},
    {"source": ""},
])
def test_wrong_types_are_schema_errors(patch: dict) -> None:
    with pytest.raises(SchemaError) as info:
        decode(_b(dict(NEWS, **patch)), "news", 10_000)
    assert info.value.reason == "schema"


def test_comment_needs_comment_fields() -> None:
    with pytest.raises(SchemaError) as info:
        decode(_b(NEWS), "comment", 10_000)
    assert "text: Field required" in str(info.value)
    assert "author: Field required" in str(info.value)
