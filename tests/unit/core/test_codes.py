"""Exchange codes in every spelling fold to one; bare numbers only where an entity is expected."""
from __future__ import annotations

import pytest

from services.core.codes import bare_exchange, parse_code, ticker_key


@pytest.mark.parametrize(("spelling", "code"), [
    ("600519.SH", "600519.SH"), ("600519.sh", "600519.SH"), ("600519.SS", "600519.SH"),
    ("600519.XSHG", "600519.SH"), ("SH600519", "600519.SH"), ("sh600519", "600519.SH"),
    ("SH.600519", "600519.SH"), ("$SH600519", "600519.SH"),
    ("000001.SZ", "000001.SZ"), ("SZ000001", "000001.SZ"), ("000001.XSHE", "000001.SZ"),
    ("830799.BJ", "830799.BJ"), ("bj830799", "830799.BJ"),
    ("00700.HK", "0700.HK"), ("0700.HK", "0700.HK"), ("700.HK", "0700.HK"),
    ("HK00700", "0700.HK"), ("hk0700", "0700.HK"), ("09988.HK", "9988.HK"),
    ("5.HK", "0005.HK"), ("00005.HK", "0005.HK"),
    # a suffix decides over the number's prefix: 000001.SH is the SSE Composite index
    ("000001.SH", "000001.SH"),
])
def test_spellings_fold_to_one(spelling: str, code: str) -> None:
    assert parse_code(spelling) == code
    assert parse_code(spelling, bare=True) == code


@pytest.mark.parametrize(("bare", "code"), [
    ("600519", "600519.SH"), ("601318", "601318.SH"), ("688981", "688981.SH"),
    ("000001", "000001.SZ"), ("002594", "002594.SZ"), ("300750", "300750.SZ"),
    ("830799", "830799.BJ"), ("920001", "920001.BJ"),
    ("00700", "0700.HK"), ("0700", "0700.HK"), ("700", "0700.HK"), ("1810", "1810.HK"),
])
def test_bare_numbers_only_where_an_entity_is_expected(bare: str, code: str) -> None:
    assert parse_code(bare) is None  # running text: a price, an amount, a year
    assert parse_code(bare, bare=True) == code


@pytest.mark.parametrize("s", ["AAPL", "BRK.B", "7203.T", "005930.KS", "123456", "0",
                               "1234567", "贵州茅台", "", "600519.NY", "SH60051"])
def test_not_a_code(s: str) -> None:
    assert parse_code(s, bare=True) is None


def test_bare_exchange_by_prefix() -> None:
    assert [bare_exchange(c) for c in ("603259", "301000", "200002", "430047", "999999")] == \
        ["SH", "SZ", "SZ", "BJ", None]


def test_ticker_key() -> None:
    assert ticker_key("$aapl") == "AAPL"
    assert ticker_key("sh600519") == "600519.SH"
    assert ticker_key("0700") == "0700.HK"
    assert ticker_key("0700", bare=False) == "0700"
