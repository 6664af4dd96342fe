from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from services.core.schemas import ScoredDoc, Sentiment
from services.trends.windows import (
    Bucket,
    KeySpace,
    cover,
    dims_of,
    epoch_minute,
    event_time,
    expire_at,
    hour_bucket,
    minute_bucket,
    rollup,
    series_buckets,
    window_buckets,
    window_range,
)

T = datetime(2026, 11, 29, 12, 34, 56, tzinfo=UTC)


def _minutes(buckets: list[Bucket]) -> list[int]:
    out: list[int] = []
    for b in buckets:
        out += [b.index] if b.res == "m" else list(range(b.index * 60, b.index * 60 + 60))
    return out


def test_buckets_of_a_timestamp() -> None:
    m = minute_bucket(T)
    assert m.start == datetime(2026, 11, 29, 12, 34, tzinfo=UTC)
    assert m.end_s - m.start_s == 60
    h = hour_bucket(T)
    assert h.start == datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    assert minute_bucket(T.replace(tzinfo=None)) == m  # naive is UTC
    assert minute_bucket(T.astimezone(timezone(timedelta(hours=8)))) == m  # zone-independent


@pytest.mark.parametrize(("start", "end"), [(0, 0), (5, 6), (30, 150), (60, 180), (61, 119),
                                             (1, 1441), (59, 61)])
def test_cover_is_exact_and_minimal(start: int, end: int) -> None:
    base = epoch_minute(T) // 60 * 60 * 10  # far from 0, hour aligned
    got = cover(base + start, base + end)
    assert _minutes(got) == list(range(base + start, base + end))
    # Whole hours inside the range are read as hour buckets, never as 60 minutes.
    full_hours = sum(1 for h in range((base + start + 59) // 60, (base + end) // 60))
    assert sum(1 for b in got if b.res == "h") == full_hours


def test_windows_end_with_the_current_minute() -> None:
    start, end = window_range(T, 5)
    assert end - start == 5
    assert end - 1 == epoch_minute(T)
    wb = window_buckets(T)
    assert set(wb) == {"5m", "1h", "24h"}
    for name, minutes in (("5m", 5), ("1h", 60), ("24h", 1440)):
        assert len(_minutes(wb[name])) == minutes
        assert max(_minutes(wb[name])) == epoch_minute(T)
    # 24 h at 12:34: 12:35-13:00 yesterday (25 minutes), 23 whole hours, 12:00-12:34 (35).
    assert len(wb["24h"]) == 25 + 23 + 35
    assert len(wb["5m"]) == 5 and all(b.res == "m" for b in wb["5m"])


def test_series_buckets() -> None:
    s = series_buckets(T, datetime(2026, 11, 29, 12, 37, tzinfo=UTC), "minute")
    assert [b.start for b in s] == [datetime(2026, 11, 29, 12, m, tzinfo=UTC) for m in (34, 35, 36)]
    # A range ending inside a minute includes that (partial) minute.
    assert len(series_buckets(T, T + timedelta(minutes=3), "minute")) == 4
    h = series_buckets(T - timedelta(hours=2), T, "hour")
    assert [b.start.hour for b in h] == [10, 11, 12]
    assert series_buckets(T, T, "minute") == []
    with pytest.raises(ValueError, match="coarser"):
        series_buckets(T - timedelta(days=30), T, "minute")
    with pytest.raises(ValueError):
        series_buckets(T, T + timedelta(hours=1), "day")  # type: ignore[arg-type]


def test_keys_share_a_hash_tag_per_bucket() -> None:
    ks = KeySpace("yq")
    b = minute_bucket(T)
    keys = [ks.seen(b), ks.counts(b, "entity", "AAPL"), ks.rank(b, "entity", "negative")]
    tags = {k[k.index("{") + 1:k.index("}")] for k in keys}
    assert tags == {f"m{b.index}"}
    assert ks.counts(hour_bucket(T), "all", "*") == f"yq:tr:{{h{b.index // 60}}}:all:*"


def test_expiry_is_bucket_end_plus_retention() -> None:
    b = minute_bucket(T)
    assert expire_at(b, 3600) == b.end_s + 3600


def _doc(**kw: object) -> ScoredDoc:
    base = dict(doc_id="news:s:1", kind="news", source="s", source_id="1", text="t",
                published_at=T, ingested_at=T, entities=["AAPL", "MSFT"], topics=["earnings"],
                sentiment=Sentiment(label="negative", probabilities={"negative": 0.7,
                                    "neutral": 0.2, "positive": 0.1}, model_version="v1"),
                classified_at=T)
    base.update(kw)
    return ScoredDoc.model_validate(base)


def test_dims_of_a_document() -> None:
    assert dims_of(_doc()) == [
        ("all", "*"), ("kind", "news"), ("entity", "AAPL"), ("entity", "MSFT"),
        ("topic", "earnings"), ("entity_topic", "AAPL|earnings"), ("entity_topic", "MSFT|earnings"),
    ]
    assert dims_of(_doc(entities=[], topics=[])) == [("all", "*"), ("kind", "news")]


def test_event_time_is_stable_across_redeliveries() -> None:
    """Re-ingestion gives a document a new ingested_at; its bucket must not move."""
    a = _doc(published_at=T - timedelta(hours=1), ingested_at=T)
    b = _doc(published_at=T - timedelta(hours=1), ingested_at=T + timedelta(minutes=7))
    assert event_time(a) == event_time(b) == T - timedelta(hours=1)


def test_rollup_of_raw_hashes() -> None:
    c = rollup([{b"n": b"2", b"n:negative": b"1", b"n:positive": b"1", b"s:negative": b"0.75"},
                {"n": "1", "n:negative": "1", "s:negative": "0.5"}, {}])
    assert c.count == 3
    assert c.labels == {"negative": 2, "neutral": 0, "positive": 1}
    assert c.score_sums["negative"] == pytest.approx(1.25)
    assert c.negative_share == pytest.approx(2 / 3)
    assert c.mean_scores["negative"] == pytest.approx(1.25 / 3)
    assert rollup([]).negative_share == 0.0
