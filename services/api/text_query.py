"""The documents search's text query (``q``): English as before, Chinese as phrases.

A query with no CJK character is the ``simple_query_string`` it always was (``title^2`` and
``text``, all words required). A query with CJK characters is folded the way the index stores
text (NFKC: full-width letters and digits; traditional -> simplified) and split into terms on
whitespace (``"..."`` groups, a leading ``-`` excludes). Every CJK term must match as a
contiguous phrase: in ``title.zh``/``text.zh`` (character bigrams, see
:mod:`services.stream.es_layout`) and their simplified folds ``title_sc.zh``/``text_sc.zh``, so
立案调查 never matches a document with 立案 and 调查 apart and 平安银行 never matches a 中国平安
one. The other terms keep the simple query syntax, in one clause, required too. So::

    平安银行 立案调查          both phrases
    腾讯 "profit warning"     the phrase 腾讯 and the English phrase
    茅台 -减持                 茅台, and not 减持

A one-character term (涨) has no bigram, and katakana and hangul are whole-word tokens: those
terms are phrases on the per-character fields ``title``/``text`` (and folds). With a
word-segmenting analysis (``YUQING_ES_ZH_ANALYSIS`` = ``smartcn`` or ``ik``) a CJK term is an
all-words match on the ``zh`` fields instead of a phrase (segmenters do not keep positions a
phrase can rely on).

Indices made before template version 2 have no ``*.zh`` subfields (an analyzer cannot be added
to an open index): :class:`LegacyIndices` names them (``field_caps``, cached) and the query
searches them with phrases on the per-character fields, which select the same documents, only
more slowly (``docs/search.md``).
"""
from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from elasticsearch import AsyncElasticsearch

from models.text_zh import to_simplified
from services.core.backends import es_errors

# Han (BMP, extension A, compatibility, the supplementary planes), kana, hangul: the characters
# the standard tokenizer emits one per token.
_CJK = ("\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
        "\uff66-\uff9f\U00020000-\U0003134f")  # + half-width katakana (NFKC: full width)
_CJK_RE = re.compile(f"[{_CJK}]")
# Characters the standard tokenizer emits one per token (Han, hiragana); katakana and hangul
# runs are one token each, which a bigram field would pair with their neighbours.
_PER_CHAR_RE = re.compile("[\u3040-\u309f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
                          "\U00020000-\U0003134f]")
_WORD_CJK_RE = re.compile("[\u30a0-\u30ff\uac00-\ud7af]")
_ALNUM_RE = re.compile(r"[0-9A-Za-z]")
_TERM_RE = re.compile(r'(-?)"([^"]*)"?|(\S+)')
_OPERATORS_RE = re.compile(r'~\d*|[+*()"]')

TEXT_FIELDS = ["title^2", "text"]
"""What an English query searches (unchanged since the first release)."""
CHAR_FIELDS = ["title^2", "text", "title_sc^2", "text_sc"]
ZH_FIELDS = ["title.zh^2", "text.zh", "title_sc.zh^2", "text_sc.zh"]
ZH_PROBE_FIELD = "text.zh"


def has_cjk(s: str) -> bool:
    return _CJK_RE.search(s) is not None


def fold_query(q: str) -> str:
    """The query in the form the index stores text: NFKC (ＡＢＣ１２３ -> ABC123, ，-> ,),
    traditional -> simplified, whitespace collapsed."""
    return " ".join(to_simplified(unicodedata.normalize("NFKC", q)).split())


@dataclass(frozen=True, slots=True)
class Term:
    text: str
    negated: bool = False
    raw: str = ""
    """As typed (for the simple query string of the non-CJK terms)."""


def split_terms(q: str) -> list[Term]:
    """Whitespace-separated terms; ``"..."`` is one term; a leading ``-`` negates."""
    out = []
    for m in _TERM_RE.finditer(q):
        if m.group(3) is not None:
            raw = m.group(3)
            neg = raw.startswith("-") and len(raw) > 1
            out.append(Term(raw[1:] if neg else raw, neg, raw))
        else:
            out.append(Term(m.group(2), bool(m.group(1)), m.group(0)))
    return out


def _per_character_only(term: str) -> bool:
    """True where the bigram field cannot serve ``term`` and the per-character fields must:
    a single token (one Han character, no letters or digits; punctuation is dropped), or
    katakana/hangul, which the standard tokenizer keeps as whole words."""
    if _WORD_CJK_RE.search(term):
        return True
    return len(_PER_CHAR_RE.findall(term)) == 1 and not _ALNUM_RE.search(term)


def cjk_clause(term: str, *, mode: str = "bigram", legacy: Sequence[str] = ()) -> dict[str, Any]:
    """The clause one CJK term must satisfy (see the module docstring)."""
    chars = {"multi_match": {"query": term, "type": "phrase", "fields": CHAR_FIELDS}}
    if _per_character_only(term):
        return chars
    if mode == "bigram":
        zh: dict[str, Any] = {"multi_match": {"query": term, "type": "phrase",
                                              "fields": ZH_FIELDS}}
    else:
        zh = {"multi_match": {"query": term, "type": "best_fields", "operator": "and",
                              "fields": ZH_FIELDS}}
    if not legacy:
        return zh
    # ``*.zh`` is unmapped in a legacy index (so ``zh`` matches nothing there); the
    # per-character phrase runs there only.
    old = {"bool": {"filter": [{"terms": {"_index": list(legacy)}}], "must": [chars]}}
    return {"bool": {"should": [zh, old], "minimum_should_match": 1}}


def simple_clause(q: str) -> dict[str, Any]:
    return {"simple_query_string": {"query": q, "fields": TEXT_FIELDS,
                                    "default_operator": "and"}}


@dataclass(frozen=True, slots=True)
class TextQuery:
    query: dict[str, Any]
    highlight: dict[str, Any]
    cjk: bool
    terms: list[str] = field(default_factory=list)
    """The folded CJK terms (for tests and logs)."""


_HIGHLIGHT = {"fields": {"text": {}, "title": {}}}
_ZH_HIGHLIGHT = {"fields": {"text": {"matched_fields": ["text", "text.zh"]},
                            "title": {"matched_fields": ["title", "title.zh"]}}}


def _groups(terms: list[Term]) -> list[list[Term]]:
    """Terms joined by ``|`` (``A|B``, ``A | B``) into one group: any of them."""
    groups: list[list[Term]] = []
    join = False
    for t in terms:
        if t.raw == "|":
            join = bool(groups)
            continue
        parts = ([Term(x, t.negated, x) for x in t.text.split("|") if x]
                 if "|" in t.text and has_cjk(t.text) else [t])
        if join:
            groups[-1].extend(parts)
        else:
            groups.append(parts)
        join = t.raw.endswith("|") and len(t.raw) > 1
    return groups


def text_query(q: str, *, mode: str = "bigram", legacy: Sequence[str] = ()) -> TextQuery:
    """The ``must`` clause and highlight for the search box ``q``."""
    if not has_cjk(q):
        return TextQuery(simple_clause(q), _HIGHLIGHT, cjk=False)
    must: list[dict[str, Any]] = []
    must_not: list[dict[str, Any]] = []
    rest: list[str] = []
    terms: list[str] = []

    def clause(t: Term) -> dict[str, Any]:
        if not has_cjk(t.text):
            return simple_clause(t.raw)
        text = " ".join(_OPERATORS_RE.sub(" ", t.text).split())
        terms.append(("-" if t.negated else "") + text)
        return cjk_clause(text, mode=mode, legacy=legacy)

    for group in _groups(split_terms(fold_query(q))):
        if len(group) == 1:
            t = group[0]
            if not has_cjk(t.text):
                rest.append(t.raw)  # its own syntax, in the one simple query string
            else:
                (must_not if t.negated else must).append(clause(t))
            continue
        anyof = []
        for t in group:
            c = clause(t)
            if has_cjk(t.text) and t.negated:
                c = {"bool": {"must_not": [c]}}
            anyof.append(c)
        must.append({"bool": {"should": anyof, "minimum_should_match": 1}})
    if rest:
        must.insert(0, simple_clause(" ".join(rest)))
    if len(must) == 1 and not must_not:
        return TextQuery(must[0], _ZH_HIGHLIGHT, cjk=True, terms=terms)
    return TextQuery({"bool": {"must": must, "must_not": must_not}}, _ZH_HIGHLIGHT, cjk=True,
                     terms=terms)


def legacy_from_field_caps(resp: dict[str, Any], probe: str = ZH_PROBE_FIELD) -> list[str]:
    """The indices of a ``field_caps(fields=probe, include_unmapped=True)`` answer where
    ``probe`` is unmapped (sorted)."""
    indices = list(resp.get("indices") or [])
    caps = (resp.get("fields") or {}).get(probe)
    if not caps:  # unmapped everywhere (or no index at all)
        return sorted(indices)
    unmapped = caps.get("unmapped")
    if unmapped is None:
        return []
    # A type that covers every index lists none.
    return sorted(unmapped.get("indices") or indices)


class LegacyIndices:
    """The daily indices behind ``alias`` that have no ``text.zh`` (made before template
    version 2), asked at most every ``ttl_s``: their number only falls (each new daily index
    has the subfield) until retention has removed them all."""

    def __init__(self, es: AsyncElasticsearch, alias: str, ttl_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._es = es
        self._alias = alias
        self._ttl = ttl_s
        self._clock = clock
        self._at: float | None = None
        self._names: list[str] = []

    async def get(self) -> list[str]:
        now = self._clock()
        if self._at is None or now - self._at >= self._ttl:
            with es_errors("field caps"):
                resp = await self._es.field_caps(index=self._alias, fields=ZH_PROBE_FIELD,
                                                 include_unmapped=True, ignore_unavailable=True,
                                                 allow_no_indices=True)
            self._names = legacy_from_field_caps(resp.body)
            self._at = now
        return self._names
