"""Entity linking: which companies (tickers) a document is about.

Three sources, in this order of trust: tickers the producer already attached, cashtags
written in the text (``$AAPL``), and company names/aliases from a watchlist file matched with
:class:`~services.ingest.matching.PhraseMatcher` (word-boundary aware for Latin scripts,
boundary-free for Chinese). Every ticker is mapped to the company's canonical ticker, so
"$TCEHY", "0700.HK" and "腾讯" all count as one entity; without that one company would be
split across trend keys and alert thresholds.

Watchlist file (YAML)::

    companies:
      - ticker: BABA                 # canonical ticker: the entity id everywhere downstream
        name: Alibaba Group          # display name; also matched
        listings: [9988.HK]          # other tickers of the same company
        aliases: [Alibaba, 阿里巴巴, 阿里]
        cased: [Ali]                 # aliases matched case-sensitively (common words)
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from services.core.errors import ConfigError
from services.ingest.matching import PhraseMatcher
from services.ingest.yaml_files import load_yaml

# $AAPL, $BRK.B, $0700.HK, $RDS-A; not $5 or $5.2bn (a ticker starts with a letter or is a
# listed code with an exchange suffix). Applied to text already normalised by normalize_text.
_CASHTAG_RE = re.compile(
    r"(?<![\w$])\$((?:[A-Za-z][A-Za-z0-9]{0,9}|[0-9]{3,6}(?=\.[A-Za-z]))(?:[.\-][A-Za-z]{1,3})?)(?![\w])"
)


def default_watchlist_path() -> Path:
    """The example watchlist shipped with the package."""
    return Path(str(resources.files("services.ingest.data").joinpath("watchlist.yaml")))


@dataclass(frozen=True)
class Company:
    ticker: str
    name: str
    listings: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    cased: tuple[str, ...] = ()


@dataclass
class EntityLinker:
    """Links text to canonical tickers; build it once (``from_file``), share it, it is read-only."""

    companies: Sequence[Company]
    cashtags: bool = True
    unknown_cashtags: bool = True  # keep $XYZ even when XYZ is not on the watchlist
    _canonical: dict[str, str] = field(init=False, repr=False)
    _matcher: PhraseMatcher[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._canonical = {}
        phrases: list[tuple[str, str, bool]] = []
        for c in self.companies:
            for t in (c.ticker, *c.listings):
                self._canonical[t.upper()] = c.ticker
            for alias in (c.name, *c.aliases):
                if alias:
                    phrases.append((alias, c.ticker, False))
            phrases.extend((alias, c.ticker, True) for alias in c.cased if alias)
        self._matcher = PhraseMatcher(phrases)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], **kwargs: Any) -> EntityLinker:
        items = data.get("companies") if isinstance(data, Mapping) else None
        if not isinstance(items, list):
            raise ConfigError("watchlist: expected a top-level 'companies' list")
        companies = []
        for i, item in enumerate(items):
            if not isinstance(item, Mapping) or not item.get("ticker"):
                raise ConfigError(f"watchlist: companies[{i}] needs at least a 'ticker'")

            def strs(key: str, item: Mapping[str, Any] = item, i: int = i) -> tuple[str, ...]:
                v = item.get(key) or []
                if isinstance(v, str):
                    v = [v]
                if not isinstance(v, list) or not all(isinstance(x, str | int) for x in v):
                    raise ConfigError(f"watchlist: companies[{i}].{key} must be a list of strings")
                return tuple(str(x) for x in v)

            companies.append(Company(
                ticker=str(item["ticker"]).lstrip("$").upper(),
                name=str(item.get("name") or ""),
                listings=tuple(t.lstrip("$").upper() for t in strs("listings")),
                aliases=strs("aliases"),
                cased=strs("cased"),
            ))
        return cls(companies, **kwargs)

    @classmethod
    def from_file(cls, path: str | Path | None = None, **kwargs: Any) -> EntityLinker:
        """Load a watchlist YAML file (``None``: the shipped example)."""
        p = Path(path) if path is not None else default_watchlist_path()
        data = load_yaml(p, "watchlist", "YUQING_WATCHLIST")
        return cls.from_mapping(data or {}, **kwargs)

    def canonical(self, ticker: str) -> str:
        """The company's canonical ticker for any of its listings; unknown tickers upper-cased."""
        t = ticker.strip().lstrip("$").upper()
        return self._canonical.get(t, t)

    def _cashtag_mentions(self, text: str) -> list[tuple[int, int, str]]:
        if not self.cashtags or "$" not in text:
            return []
        out = []
        for m in _CASHTAG_RE.finditer(text):
            t = m.group(1).upper()
            if t in self._canonical:
                out.append((m.start(), m.end(), self._canonical[t]))
            elif self.unknown_cashtags:
                out.append((m.start(), m.end(), t))
        return out

    def _name_mentions(self, text: str) -> list[tuple[int, int, str]]:
        return [(m.start, m.end, m.value) for m in self._matcher.find(text)]

    def link(self, text: str, producer: Iterable[str] = ()) -> list[str]:
        """Ordered unique canonical tickers: producer's first, then text mentions by position."""
        return self.link_mentions(text, producer).entities

    def link_mentions(self, text: str, producer: Iterable[str] = ()) -> Linked:
        """:meth:`link`, plus where in ``text`` each entity is mentioned (cashtags and names;
        character spans ``[start, end)``, in text order). A ticker only the producer named
        has no spans."""
        found: list[str] = [self.canonical(t) for t in producer if t and t.strip()]
        spans: dict[str, list[tuple[int, int]]] = {}
        if text:
            mentions = self._cashtag_mentions(text) + self._name_mentions(text)
            mentions.sort(key=lambda x: x[0])
            for start, end, t in mentions:
                found.append(t)
                spans.setdefault(t, []).append((start, end))
        return Linked(list(dict.fromkeys(found)), spans)


@dataclass(frozen=True, slots=True)
class Linked:
    """What :meth:`EntityLinker.link_mentions` found: the entities (producer's first, then by
    first mention) and, per entity mentioned in the text, its spans."""

    entities: list[str]
    spans: dict[str, list[tuple[int, int]]]
