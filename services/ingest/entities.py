"""Entity linking: which companies (watchlist ids) a document is about, and where it says so.

Sources, in this order of trust: tickers the producer attached; 股吧 stock mentions
(``$贵州茅台(SH600519)$``, ``$腾讯控股(00700)$``, ``$贵州茅台$``) and cashtags (``$AAPL``,
``$0700.HK``); a watchlist name followed by its code in brackets (``贵州茅台(600519)``);
exchange codes written with an exchange (``600519.SH``, ``SH600519``, ``00700.HK``,
``HK00700``) or after 股票代码/证券代码; and watchlist names matched with
:class:`~services.ingest.matching.PhraseMatcher` (Latin word boundaries, none for Chinese,
traditional text folded to simplified). Every code maps to the company's id
(:meth:`services.core.watchlist.Watchlist.canonical`), so ``$TCEHY``, ``00700.HK``, 腾讯 and
騰訊 are one entity; without that one company would be split across trend keys and alerts.

Bare numbers: a six-digit number in running text is as often a price, an amount or a date
as a code, so it is read as a code only in context: inside a 股吧 mention, in brackets right
after a watchlist name (``贵州茅台(600519)``, ``平安(000001)``), or after 股票代码/证券代码/
代码 with a colon. Bare codes in text link watchlist companies only; 股吧 mentions and
cashtags of unknown codes are kept (``unknown_cashtags``), like ``$XYZ``.

Overlaps: where two mentions overlap, the more trusted source wins (a 股吧 mention over the
name and code inside it), then the longer one. Ambiguous short names (平安: 中国平安 or
平安银行) follow the watchlist's rule (:mod:`services.core.watchlist`): longest match first,
so 平安 inside 平安银行 is 平安银行; alone it links nothing unless the watchlist names the
company, or a code in brackets follows it (``平安(000001)`` is 平安银行).

Spans are ``[start, end)`` character offsets into the text given (ingest: ``CleanDoc.text``);
a 股吧 mention's span is the whole ``$...$``, which the Chinese normaliser turns into the bare
name, so the entity head pools the name's tokens.

Watchlist format: :mod:`services.core.watchlist`.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.core.codes import parse_code
from services.core.watchlist import (
    ZH_CASHTAG_RE,
    Ambiguous,
    Company,
    Watchlist,
    default_watchlist_path,
)
from services.ingest.matching import PhraseMatcher, fold_zh

__all__ = ["Company", "EntityLinker", "Linked", "default_watchlist_path"]

# $AAPL, $BRK.B, $0700.HK, $RDS-A, $SH600519; not $5 or $5.2bn (a ticker starts with a letter
# or is a listed code with an exchange suffix). Applied to text already normalised.
_CASHTAG_RE = re.compile(
    r"(?<![\w$])\$((?:[A-Za-z][A-Za-z0-9]{0,9}|[0-9]{3,6}(?=\.[A-Za-z]))(?:[.\-][A-Za-z]{1,3})?)(?![\w])"
)
# Codes with their exchange, in running text: 600519.SH/.SS/.SZ/.BJ, SH600519, 00700.HK, HK00700.
_CODE_RE = re.compile(
    r"(?<![A-Za-z0-9.])(?:\d{6}\.(?:SH|SS|SZ|BJ)|\d{1,5}\.HK|(?:SH|SZ|BJ)\d{6}|HK\d{4,5})"
    r"(?![A-Za-z0-9])", re.IGNORECASE)
# A code in brackets right after a name: 贵州茅台(600519), 腾讯控股 (00700.HK)
_PAREN_CODE_RE = re.compile(
    r"\s?\(\s*((?:[A-Za-z]{2})?\d{4,6}(?:\.[A-Za-z]{2,4})?)\s*\)")
# 股票代码：600519 / 证券代码:000001 / 代码：00700
_LABELLED_CODE_RE = re.compile(
    r"(?:股票|证券|股份|港股|A股)?代码\s*[:：为是]\s*((?:[A-Za-z]{2})?\d{4,6}(?:\.[A-Za-z]{2,4})?)(?![0-9])")

# Source priority in overlaps (lower wins), then length.
_P_ZH_CASHTAG, _P_CASHTAG, _P_NAME_CODE, _P_CODE, _P_NAME = range(5)


@dataclass
class EntityLinker:
    """Links text to watchlist ids; build it once (``from_file``), share it, it is read-only."""

    watchlist: Watchlist
    cashtags: bool = True
    unknown_cashtags: bool = True  # keep $XYZ / $某某(600000)$ even when not on the watchlist
    _matcher: PhraseMatcher[str | None] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._matcher = PhraseMatcher(self.watchlist.phrases())

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], **kwargs: Any) -> EntityLinker:
        return cls(Watchlist.from_mapping(data, fold=fold_zh), **kwargs)

    @classmethod
    def from_file(cls, path: str | Path | None = None, **kwargs: Any) -> EntityLinker:
        """Load a watchlist YAML file (``None``: the shipped example)."""
        return cls(Watchlist.from_file(path, fold=fold_zh), **kwargs)

    @property
    def companies(self) -> Sequence[Company]:
        return self.watchlist.companies

    def canonical(self, ticker: str) -> str:
        """The company's id for any of its codes/listings; unknown tickers upper-cased (codes
        in their canonical spelling)."""
        return self.watchlist.canonical(ticker)

    # ---- candidate mentions: (start, end, entity or None, priority) ----------------------
    def _zh_cashtag_mentions(self, text: str) -> list[tuple[int, int, str | None, int]]:
        out: list[tuple[int, int, str | None, int]] = []
        for m in ZH_CASHTAG_RE.finditer(text):
            code, name = m["code"], m["name"]
            ent = self.watchlist.known_code(code) if code else None
            if ent is None:
                found = self.watchlist.lookup_name(name)
                ent = found if isinstance(found, str) else getattr(found, "link", None)
            if ent is None and code and self.unknown_cashtags:
                ent = parse_code(code, bare=True) or (
                    code.upper() if not code.isdigit() else None)
            if ent is not None:
                out.append((m.start(), m.end(), ent, _P_ZH_CASHTAG))
        return out

    def _cashtag_mentions(self, text: str) -> list[tuple[int, int, str | None, int]]:
        out: list[tuple[int, int, str | None, int]] = []
        for m in _CASHTAG_RE.finditer(text):
            t = m.group(1)
            known = self.watchlist.known_code(t)
            if known is not None:
                out.append((m.start(), m.end(), known, _P_CASHTAG))
            elif self.unknown_cashtags:
                out.append((m.start(), m.end(), self.canonical(t), _P_CASHTAG))
        return out

    def _code_mentions(self, text: str) -> list[tuple[int, int, str | None, int]]:
        out: list[tuple[int, int, str | None, int]] = []
        for m in _CODE_RE.finditer(text):
            if (ent := self.watchlist.known_code(m.group(0))) is not None:
                out.append((m.start(), m.end(), ent, _P_CODE))
        if "代码" in text:
            for m in _LABELLED_CODE_RE.finditer(text):
                code = parse_code(m.group(1), bare=True)
                if code and (ent := self.watchlist.known_code(code)) is not None:
                    out.append((m.start(1), m.end(1), ent, _P_CODE))
        return out

    def _name_mentions(self, text: str) -> list[tuple[int, int, str | None, int]]:
        out: list[tuple[int, int, str | None, int]] = []
        for m in self._matcher.find(text):
            out.append((m.start, m.end, m.value, _P_NAME))
            # 贵州茅台(600519) / 平安(000001): the bracketed code decides an ambiguous name (and
            # is the context that makes a bare number a code); after an unambiguous name it
            # counts only when it is that company's own code: 贵州茅台(2007) is a year, not
            # Country Garden's 2007.HK
            pm = _PAREN_CODE_RE.match(text, m.end) if "(" in text else None
            if pm is not None:
                code = parse_code(pm.group(1), bare=True)
                ent = self.watchlist.known_code(code) if code else None
                if ent is not None and (m.value is None or ent == m.value
                                        or self._ambiguous_for(text[m.start:m.end], ent)):
                    out.append((m.start, pm.end(), ent, _P_NAME_CODE))
        return out

    def _ambiguous_for(self, name: str, ent: str) -> bool:
        """``name`` is an ambiguous short name (even one with a default, 恒大 -> 3333.HK) and
        ``ent`` one of the companies it may mean: 恒大(0708) is 恒大汽车."""
        found = self.watchlist.lookup_name(name)
        return isinstance(found, Ambiguous) and ent in found.candidates

    def link(self, text: str, producer: Iterable[str] = ()) -> list[str]:
        """Ordered unique ids: producer's first, then text mentions by position."""
        return self.link_mentions(text, producer).entities

    def link_mentions(self, text: str, producer: Iterable[str] = ()) -> Linked:
        """:meth:`link`, plus where in ``text`` each entity is mentioned (character spans
        ``[start, end)``, in text order). A ticker only the producer named has no spans."""
        found: list[str] = [self.canonical(t) for t in producer if t and t.strip()]
        spans: dict[str, list[tuple[int, int]]] = {}
        if text:
            cands = self._name_mentions(text)
            if "$" in text and self.cashtags:
                cands += self._zh_cashtag_mentions(text) + self._cashtag_mentions(text)
            cands += self._code_mentions(text)
            for start, end, t in _resolve_overlaps(cands, len(text)):
                if t is None:  # an ambiguous name or an exclusion: it only blocks shorter ones
                    continue
                found.append(t)
                spans.setdefault(t, []).append((start, end))
        return Linked(list(dict.fromkeys(found)), spans)


def _resolve_overlaps(cands: list[tuple[int, int, str | None, int]], n: int
                      ) -> list[tuple[int, int, str | None]]:
    """Non-overlapping mentions in text order: the more trusted source, then the longer wins.
    ``n``: the text's length."""
    if all(c[3] == _P_NAME for c in cands):  # the phrase matcher's: already overlap-free
        return sorted(((s, e, t) for s, e, t, _ in cands), key=lambda m: m[0])
    taken: list[tuple[int, int, str | None]] = []
    used = bytearray(n)
    for start, end, ent, _ in sorted(cands, key=lambda c: (c[3], c[0] - c[1], c[0])):
        if any(used[start:end]):
            continue
        used[start:end] = b"\x01" * (end - start)
        taken.append((start, end, ent))
    taken.sort(key=lambda m: m[0])
    return taken


@dataclass(frozen=True, slots=True)
class Linked:
    """What :meth:`EntityLinker.link_mentions` found: the entities (producer's first, then by
    first mention) and, per entity mentioned in the text, its spans."""

    entities: list[str]
    spans: dict[str, list[tuple[int, int]]]
