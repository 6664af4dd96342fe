"""The watchlist: which companies yuqing knows, by every name and code, and one id for each.

Shared by the ingest stage (which links text to these ids) and the API (which accepts any
name or code of a company and answers for its id); neither imports the other.

Watchlist file (YAML)::

    companies:
      - ticker: 600519.SH              # the id everywhere downstream (trend keys, ES, alerts)
        name: Kweichow Moutai          # English display name; matched
        name_zh: 贵州茅台酒股份有限公司  # full registered Chinese name; matched
        short_zh: [贵州茅台]           # 证券简称 (A/H short names, without -W/-SW); matched
        listings: [600519.SS]          # other codes/tickers of the company, any spelling
        aliases: [Moutai, 茅台]        # other names, any language; matched
        cased: []                      # names matched case-sensitively (common words)
        exclude: [茅台镇]              # phrases that contain a name but are not the company
    ambiguous:                         # short names that several companies answer to
      平安: [2318.HK, 000001.SZ]       # a bare 平安 links nothing
      恒大: {candidates: [3333.HK, 0708.HK], link: 3333.HK}   # the watchlist says which

Codes: ``ticker`` and ``listings`` are read by :func:`services.core.codes.ticker_key`, so any
spelling of an A-share/HK code (``SH600519``, ``600519.SS``, ``00700.HK``, ``700.HK``) is one
key, and a code ``ticker`` is stored in its canonical spelling (``600519.SH``, ``0700.HK``).

Ambiguity rule (the same for the linker and the API):

1. Longest match first: a longer name contains its shorter ones, so 平安 inside 平安银行
   is 平安银行 (000001.SZ), not 中国平安, and 京东 inside 京东方 is 京东方.
2. A name that stands alone and that several companies answer to links *nothing*, unless
   the ``ambiguous`` section names the company (``link``). A name becomes ambiguous either
   by being listed there or by being given to two companies (then its candidates are those
   two); an API lookup of an ambiguous name is refused with its candidates.
3. ``exclude`` phrases (per company) and ambiguous names still take part in rule 1: the
   longest match wins and links nothing, so 小米粥 is not 小米集团.

Matching is case-insensitive (``cased`` names excepted) on text folded by ``fold``: the
ingest stage and the API pass the traditional->simplified fold, so 騰訊 is 腾讯.
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from services.core.codes import ticker_key
from services.core.errors import ConfigError
from services.core.yaml_files import load_yaml

# A 股吧/雪球 stock mention: $贵州茅台(SH600519)$, $腾讯控股(00700)$, $特斯拉(TSLA)$, $贵州茅台$.
# Full-width forms are folded by NFKC before this runs (ingest text and API queries both).
ZH_CASHTAG_RE = re.compile(
    r"\$(?P<name>[^\s$()\[\]]{1,24}?)"
    r"(?:\s*\(\s*(?P<code>[A-Za-z]{2}\.?\d{4,6}|\d{1,6}(?:\.[A-Za-z]{2,4})?"
    r"|[A-Za-z][A-Za-z0-9]{0,9}(?:[.\-][A-Za-z]{1,3})?)\s*\)\s*)?\$")
# Whitespace before the closing ``$`` only after a bracketed code: "$META $AAPL" is two
# cashtags, not one 股吧 mention swallowing the second's ``$``.
# HK short names carry share-class marks: 美团-W, 京东集团-SW, 网易-S, 小米集团-W.
_CLASS_MARK_RE = re.compile(r"-(?:W|SW|S|WR|SWR|R)$", re.IGNORECASE)
_SPACE_RE = re.compile(r"\s+")


def default_watchlist_path() -> Path:
    """The example watchlist shipped with the package (``services/ingest/data``)."""
    return Path(str(resources.files("services.ingest.data").joinpath("watchlist.yaml")))


def _identity(s: str) -> str:
    return s


@dataclass(frozen=True)
class Company:
    ticker: str
    name: str
    listings: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    cased: tuple[str, ...] = ()
    name_zh: str = ""
    short_zh: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """Every case-insensitive name: English name, Chinese full and short names, aliases."""
        return tuple(n for n in (self.name, self.name_zh, *self.short_zh, *self.aliases) if n)

    @property
    def display(self) -> str:
        """The name an error message shows: the Chinese short name, else the name."""
        return (self.short_zh[0] if self.short_zh else "") or self.name or self.ticker


@dataclass(frozen=True)
class Ambiguous:
    """A name several companies answer to; ``link`` is the one it means when standing alone
    (``None``: it links nothing)."""

    name: str
    candidates: tuple[str, ...]
    link: str | None = None


@dataclass(frozen=True)
class Resolution:
    """What an entity query means (:meth:`Watchlist.resolve`)."""

    entity: str | None = None                     # a watchlist id
    ambiguous: Ambiguous | None = None            # a name that needs a code or a longer name
    ticker: str | None = None                     # not on the watchlist, but spelled like a ticker


@dataclass
class Watchlist:
    """Companies by id, code and name; build once (``from_file``), share it, it is read-only."""

    companies: Sequence[Company]
    ambiguous: Mapping[str, Ambiguous] = field(default_factory=dict)
    fold: Callable[[str], str] = _identity
    _by_id: dict[str, Company] = field(init=False, repr=False)
    _codes: dict[str, str] = field(init=False, repr=False)
    _names: dict[str, str | Ambiguous] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_id = {c.ticker: c for c in self.companies}
        self._codes = {}
        for c in self.companies:
            for t in (c.ticker, *c.listings):
                self._codes.setdefault(ticker_key(t), c.ticker)
                self._codes.setdefault(t.upper(), c.ticker)
        owners: dict[str, dict[str, None]] = {}
        spelled: dict[str, str] = {}
        for c in self.companies:
            for n in (*c.names, *c.cased):
                k = self.name_key(n)
                owners.setdefault(k, {})[c.ticker] = None
                spelled.setdefault(k, n)
        explicit = {self.name_key(a.name): a for a in self.ambiguous.values()}
        self._names = {}
        for k, ids in owners.items():
            if len(ids) == 1:
                self._names[k] = next(iter(ids))
            else:
                self._names[k] = Ambiguous(spelled[k], tuple(ids))
        self._names.update(explicit)
        self.ambiguous = {a.name: a for a in (v for v in self._names.values()
                                              if isinstance(v, Ambiguous))}

    # ---- loading ------------------------------------------------------------------------
    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], fold: Callable[[str], str] = _identity
                     ) -> Watchlist:
        items = data.get("companies") if isinstance(data, Mapping) else None
        if not isinstance(items, list):
            raise ConfigError("watchlist: expected a top-level 'companies' list")
        companies: list[Company] = []
        seen: dict[str, int] = {}
        for i, item in enumerate(items):
            if not isinstance(item, Mapping) or not item.get("ticker"):
                raise ConfigError(f"watchlist: companies[{i}] needs at least a 'ticker'")

            def strs(key: str, item: Mapping[str, Any] = item, i: int = i) -> tuple[str, ...]:
                v = item.get(key) or []
                if isinstance(v, str):
                    v = [v]
                if not isinstance(v, list) or not all(isinstance(x, str | int) for x in v):
                    raise ConfigError(f"watchlist: companies[{i}].{key} must be a list of strings")
                return tuple(str(x).strip() for x in v if str(x).strip())

            ticker = ticker_key(str(item["ticker"]), bare=False)
            if ticker in seen:
                raise ConfigError(f"watchlist: companies[{i}].ticker {ticker} is already "
                                  f"companies[{seen[ticker]}]; merge the two entries")
            seen[ticker] = i
            name_zh = item.get("name_zh") or ""
            if not isinstance(name_zh, str):
                raise ConfigError(f"watchlist: companies[{i}].name_zh must be a string")
            companies.append(Company(
                ticker=ticker,
                name=str(item.get("name") or ""),
                listings=tuple(t.lstrip("$").upper() for t in strs("listings")),
                aliases=strs("aliases"),
                cased=strs("cased"),
                name_zh=name_zh.strip(),
                short_zh=tuple(_CLASS_MARK_RE.sub("", s) for s in strs("short_zh")),
                exclude=strs("exclude"),
            ))
        wl = cls(companies, fold=fold)
        wl.ambiguous = wl._parse_ambiguous(data.get("ambiguous") or {})
        wl.__post_init__()
        return wl

    def _parse_ambiguous(self, raw: Any) -> dict[str, Ambiguous]:
        if not isinstance(raw, Mapping):
            raise ConfigError("watchlist: 'ambiguous' must map a name to its candidate tickers")
        out: dict[str, Ambiguous] = {}
        for name, spec in raw.items():
            where = f"watchlist: ambiguous.{name}"
            if isinstance(spec, list):
                spec = {"candidates": spec}
            if not isinstance(spec, Mapping):
                raise ConfigError(f"{where}: give a list of tickers or {{candidates, link}}")
            cands = spec.get("candidates") or []
            if not isinstance(cands, list):
                raise ConfigError(f"{where}.candidates must be a list of tickers")
            ids = tuple(dict.fromkeys(self._known_id(str(t), where) for t in cands))
            link = spec.get("link")
            link_id = self._known_id(str(link), where) if link else None
            if link_id and link_id not in ids:
                ids = (*ids, link_id)
            out[str(name)] = Ambiguous(str(name).strip(), ids, link_id)
        return out

    def _known_id(self, t: str, where: str) -> str:
        c = self._codes.get(ticker_key(t)) or self._codes.get(t.strip().upper())
        if c is None:
            raise ConfigError(f"{where}: {t!r} is no company's ticker or listing; "
                              "add the company first or fix the code")
        return c

    @classmethod
    def from_file(cls, path: str | Path | None = None,
                  fold: Callable[[str], str] = _identity) -> Watchlist:
        """Load a watchlist YAML file (``None``: the shipped example)."""
        p = Path(path) if path is not None else default_watchlist_path()
        data = load_yaml(p, "watchlist", "YUQING_WATCHLIST")
        return cls.from_mapping(data or {}, fold=fold)

    # ---- lookups ------------------------------------------------------------------------
    def name_key(self, name: str) -> str:
        """How names compare: NFKC, folded (traditional->simplified), case- and space-free."""
        s = self.fold(unicodedata.normalize("NFKC", name).strip())
        return _SPACE_RE.sub("", s).lower()

    def company(self, ticker: str) -> Company | None:
        return self._by_id.get(ticker)

    def canonical(self, ticker: str) -> str:
        """The company's id for any of its codes/listings in any spelling; an unknown ticker
        in its lookup spelling (upper-cased, or the canonical code spelling)."""
        key = ticker_key(ticker)
        return self._codes.get(key) or self._codes.get(ticker.strip().lstrip("$").upper()) or key

    def known_code(self, code: str) -> str | None:
        """The id of the company with this code/listing (any spelling), else ``None``."""
        return self._codes.get(ticker_key(code)) or self._codes.get(code.strip().upper())

    def lookup_name(self, name: str) -> str | Ambiguous | None:
        """The id a name (exactly, after folding) belongs to, an :class:`Ambiguous`, or None."""
        k = self.name_key(_CLASS_MARK_RE.sub("", name.strip()))
        return self._names.get(k)

    def resolve(self, query: str) -> Resolution:
        """An entity as a user gives it: any code spelling, a Chinese full or short name, an
        alias, or a 股吧 cashtag ``$贵州茅台(600519)$``. Codes win over names."""
        q = unicodedata.normalize("NFKC", query).strip()
        name = q
        if (m := ZH_CASHTAG_RE.fullmatch(q)) is not None:
            name = m["name"]
            if m["code"] and (hit := self.known_code(m["code"])):
                return Resolution(entity=hit)
        elif (hit := self.known_code(q)) is not None:
            return Resolution(entity=hit)
        found = self.lookup_name(name)
        if isinstance(found, Ambiguous):
            return Resolution(entity=found.link, ambiguous=None if found.link else found)
        if found is not None:
            return Resolution(entity=found)
        if re.fullmatch(r"\$?[A-Za-z0-9.\-]{1,16}", q):
            return Resolution(ticker=self.canonical(q))
        return Resolution()

    def describe(self, ticker: str) -> str:
        """'平安银行 (000001.SZ)' for error messages."""
        c = self._by_id.get(ticker)
        return f"{c.display} ({ticker})" if c else ticker

    def phrases(self) -> list[tuple[str, str | None, bool]]:
        """(phrase, id or None, case_sensitive) for a phrase matcher: every name of every
        company, ambiguous names with their ``link`` (None: links nothing), exclusions (None).
        A name shared by two companies comes once, as ambiguous."""
        out: list[tuple[str, str | None, bool]] = []
        done: set[str] = set()
        for c in self.companies:
            for n in c.names:
                k = self.name_key(n)
                if k in done:
                    continue
                done.add(k)
                v = self._names.get(k)
                out.append((n, v.link if isinstance(v, Ambiguous) else c.ticker, False))
            for n in c.cased:
                v = self._names.get(self.name_key(n))
                out.append((n, v.link if isinstance(v, Ambiguous) else c.ticker, True))
            out.extend((n, None, False) for n in c.exclude)
        for a in self.ambiguous.values():
            k = self.name_key(a.name)
            if k not in done:
                done.add(k)
                out.append((a.name, a.link, False))
        return out

    def ids(self) -> set[str]:
        return set(self._by_id)
