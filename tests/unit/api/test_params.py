"""Time ranges: 400 with a reason for meaningless ranges."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi import HTTPException

from services.api.params import parse_window, time_range

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def test_window_ends_now_by_default():
    assert time_range(None, None, "2h", 90, now=NOW) == (NOW - timedelta(hours=2), NOW)
    assert time_range(None, None, None, 90, now=NOW, default_window=None) == (None, None)
    naive = datetime(2026, 3, 2, 10, 0)
    start, end = time_range(naive, None, None, 90, now=NOW, default_window=None)
    assert start == datetime(2026, 3, 2, 10, 0, tzinfo=UTC) and end is None


@pytest.mark.parametrize("since,until,window,message", [
    (NOW, NOW - timedelta(hours=1), None, "must be before"),
    (NOW - timedelta(days=100), NOW, None, "more than 90 days"),
    (NOW + timedelta(days=1), None, None, "in the future"),
    (NOW - timedelta(hours=1), None, "1h", "either 'window' or 'since'"),
])
def test_bad_ranges_are_400(since, until, window, message):
    with pytest.raises(HTTPException) as err:
        time_range(since, until, window, 90, now=NOW, default_window=None)
    assert err.value.status_code == 400
    assert message in err.value.detail


def test_parse_window():
    assert parse_window("90m") == timedelta(minutes=90)
    assert parse_window("2d") == timedelta(days=2)
    with pytest.raises(HTTPException):
        parse_window("0h")
