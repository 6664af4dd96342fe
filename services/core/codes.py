"""Exchange codes of A-share and Hong Kong listings in every usual spelling, folded to one.

One company, one spelling downstream: a forum writes ``SH600519``, a broker ``600519.SH``,
Yahoo ``600519.SS``, a quant feed ``600519.XSHG``; all are ``600519.SH``. Hong Kong codes are
written ``00700.HK``, ``0700.HK``, ``700.HK``, ``HK00700``; all are ``0700.HK`` (the number
without leading zeros, padded to four digits: what Yahoo and most English feeds write, and
what the watchlist used before Chinese names existed).

=========================  ==========================================================
spelling                   read as
=========================  ==========================================================
``600519.SH`` ``.SS``      Shanghai (``.SS``: Yahoo; ``.XSHG``: Wind/JoinQuant)
``000001.SZ`` ``.XSHE``    Shenzhen
``830799.BJ``              Beijing
``SH600519`` ``sh600519``  exchange prefix (also ``SZ``, ``BJ``)
``00700.HK`` ``700.HK``    Hong Kong, 1 to 5 digits
``HK00700`` ``HK0700``     Hong Kong prefix, 4 or 5 digits
``600519`` (bare)          only where an entity is expected (``bare=True``): the exchange
                           follows from the number (60x/68x/900 Shanghai, 00x/30x/20x
                           Shenzhen, 43x/83x/87x/88x/920 Beijing)
``00700`` ``700`` (bare)   only where an entity is expected: Hong Kong
=========================  ==========================================================

Why bare numbers need ``bare=True``: in running text a six-digit number is as often a price,
an amount, a date (202406) or a phone number as a code, and four digits are mostly years.
An API ``entity=600519``, a producer's ``tickers: ["600519"]`` or the code inside a 股吧
cashtag ``$贵州茅台(600519)$`` is an entity by position, so there it is safe; the ingest
linker lists the few text contexts in which it reads a bare number as a code. A suffix
decides over the number's prefix: ``000001.SH`` is the SSE Composite index, ``000001.SZ``
平安银行, and a bare ``000001`` is read as Shenzhen.
"""
from __future__ import annotations

import re
from functools import lru_cache

_A_SUFFIX = {"SH": "SH", "SS": "SH", "XSHG": "SH", "SZ": "SZ", "XSHE": "SZ", "BJ": "BJ"}
_SUFFIXED_RE = re.compile(r"(\d{6})\.(SH|SS|SZ|BJ|XSHG|XSHE)|(\d{1,5})\.HK", re.IGNORECASE)
_PREFIXED_RE = re.compile(r"(SH|SZ|BJ)\.?(\d{6})|HK\.?(\d{4,5})", re.IGNORECASE)
_BARE_A_RE = (("SH", re.compile(r"(?:60[0135]|68[89]|900)\d{3}")),
              ("SZ", re.compile(r"(?:00[0-3]|30[0-2]|20[01])\d{3}")),
              ("BJ", re.compile(r"(?:4[03]|8[378])\d{4}|920\d{3}")))
_BARE_HK_RE = re.compile(r"\d{1,5}")


def a_share(digits: str, exchange: str) -> str:
    return f"{digits}.{exchange}"


def hk(digits: str) -> str | None:
    n = int(digits)
    return f"{n:04d}.HK" if n > 0 else None


def bare_exchange(digits: str) -> str | None:
    """The A-share exchange a bare six-digit code belongs to (``SH``/``SZ``/``BJ``), if any."""
    for exchange, rx in _BARE_A_RE:
        if rx.fullmatch(digits):
            return exchange
    return None


def parse_code(s: str, bare: bool = False) -> str | None:
    """The canonical spelling of an A-share/HK exchange code, or ``None`` when ``s`` is not
    one (a US ticker, a name, a number with ``bare=False``). See the module docstring."""
    s = s.strip().lstrip("$").strip()
    if not s or not s.isascii():
        return None
    if m := _SUFFIXED_RE.fullmatch(s):
        if m[1]:
            return a_share(m[1], _A_SUFFIX[m[2].upper()])
        return hk(m[3])
    if m := _PREFIXED_RE.fullmatch(s):
        if m[2]:
            return a_share(m[2], m[1].upper())
        return hk(m[3])
    if bare and s.isdigit():
        if len(s) == 6:
            exchange = bare_exchange(s)
            return a_share(s, exchange) if exchange else None
        if _BARE_HK_RE.fullmatch(s):
            return hk(s)
    return None


@lru_cache(maxsize=8192)  # the linker asks for the same few codes again and again
def ticker_key(s: str, bare: bool = True) -> str:
    """How a ticker is looked up: its canonical code spelling when it is an exchange code,
    else upper-cased without a leading ``$`` (``$aapl`` -> ``AAPL``, ``sh600519`` ->
    ``600519.SH``)."""
    return parse_code(s, bare=bare) or s.strip().lstrip("$").strip().upper()
