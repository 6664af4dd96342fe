"""Chinese text handling shared by training and serving (the ``zh`` normaliser).

Like :func:`models.text.normalize_text`, whatever the Chinese classifier was trained on
must be what it serves on, so both call :func:`normalize_zh` (through
:func:`models.text.normalizer_for`). Bump ``ZH_NORMALIZATION_VERSION`` whenever its output
changes for any input: it is stored in every Chinese checkpoint's config.

Choices:

* Everything :func:`~models.text.normalize_text` does first (NFKC folds full-width
  letters, digits and the full-width ``，！？：；（）`` into their ASCII forms; URLs, control
  and zero-width characters go; whitespace collapses).
* Traditional -> simplified, character by character (OpenCC's ``TSCharacters`` table, first
  candidate, plus its short phrase table): Hong Kong and Taiwan news (騰訊, 匯豐, 虧損) must
  reach the model and the watchlist in the spelling they were trained and written in.
  bge-small-zh's vocabulary holds many traditional characters, but its pre-training and our
  fine-tuning data are simplified, so a traditional headline is otherwise a rare-token text.
* Forum and Weibo noise: ``回复@某人:`` and ``//@某人:`` repost markers and bare ``@mentions``
  are removed (a user name carries no sentiment and is often a company-like string);
  ``#话题#`` keeps its words; the cashtag-like stock mentions of 股吧 posts,
  ``$贵州茅台(SH600519)$``, become the bare name ``贵州茅台`` (the code is the linker's, read
  from the raw text); runs of the same punctuation or emoji collapse to two
  (``！！！！！`` -> ``!!``) so noise cannot fill the token budget; 【】 brackets stay (news
  titles use them).
* Spaces between two CJK characters are dropped: the WordPiece tokenizer splits CJK per
  character anyway, and copy-pasted text is full of stray spaces that change nothing but
  the truncation point.
"""
from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

from models.text import normalize_text

ZH_NORMALIZATION_VERSION = "zh-1"

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_REPOST_RE = re.compile(r"(?:回复\s*)?//?\s*@[^\s:：,，。!！?？]{1,30}\s*[:：]")
_REPLY_RE = re.compile(r"回复\s*@[^\s:：]{1,30}\s*[:：]")
_MENTION_RE = re.compile(r"@[\w\u4e00-\u9fff\-]{1,30}")
_HASHTAG_RE = re.compile(r"#([^#\n]{1,40})#")
_STOCK_TAG_RE = re.compile(r"\$\s*([^$()（）]{1,20}?)\s*[(（]\s*(?:[A-Za-z]{2})?\d{5,6}(?:\.[A-Za-z]{2})?\s*[)）]\s*\$")
_REPEAT_RE = re.compile(r"([!?.,~。…、！？～\U0001F300-\U0001FAFF\u2600-\u27BF])\1{2,}")
_CJK_SPACE_RE = re.compile(rf"(?<=[{_CJK}])\s+(?=[{_CJK}])")
_SENTENCE_END_RE = re.compile(r"[。！？!?；;…]+[”’」』)]?")
_HAN_RE = re.compile(rf"[{_CJK}]")


@lru_cache(maxsize=1)
def _t2s_tables() -> tuple[dict[int, str], list[tuple[str, str]]]:
    """(per-character table for ``str.translate``, phrase pairs longest first)."""
    try:
        folder = resources.files("opencc") / "dictionary"
        chars = (folder / "TSCharacters.txt").read_text("utf-8")
        phrases = (folder / "TSPhrases.txt").read_text("utf-8")
    except (ModuleNotFoundError, FileNotFoundError) as e:  # pragma: no cover - a dependency
        raise ImportError("traditional->simplified needs the package "
                          "opencc-python-reimplemented: `pip install -e .`") from e
    table: dict[int, str] = {}
    for line in chars.splitlines():
        src, _, dst = line.partition("\t")
        if len(src) == 1 and dst:
            first = dst.split(" ")[0]
            if first != src:
                table[ord(src)] = first
    pairs = []
    for line in phrases.splitlines():
        src, _, dst = line.partition("\t")
        if src and dst:
            pairs.append((src, dst.split(" ")[0]))
    pairs.sort(key=lambda p: -len(p[0]))
    return table, pairs


def to_simplified(s: str) -> str:
    """Traditional -> simplified Chinese (characters, plus OpenCC's phrase exceptions)."""
    table, pairs = _t2s_tables()
    if not any(ord(c) in table for c in s):
        return s
    for src, dst in pairs:
        if src in s:
            s = s.replace(src, dst)
    return s.translate(table)


def has_han(s: str) -> bool:
    return _HAN_RE.search(s) is not None


def normalize_zh(s: str) -> str:
    """Return the canonical form of ``s`` that the Chinese classifier trains and serves on."""
    s = normalize_text(s)
    if not s:
        return ""
    if "$" in s:
        s = _STOCK_TAG_RE.sub(lambda m: m.group(1), s)
    if "@" in s:
        s = _REPOST_RE.sub(" ", s)
        s = _REPLY_RE.sub(" ", s)
        s = _MENTION_RE.sub(" ", s)
    if "#" in s:
        s = _HASHTAG_RE.sub(lambda m: f" {m.group(1).strip()} ", s)
    s = to_simplified(s)
    s = _REPEAT_RE.sub(r"\1\1", s)
    s = _CJK_SPACE_RE.sub("", s)
    return " ".join(s.split())


def truncate_sentences(s: str, max_chars: int) -> str:
    """Cut ``s`` to at most ``max_chars`` characters at a sentence end when one falls in
    the last half of the budget (a classifier reading half a clause of a 处罚 notice
    misreads it more often than one that reads one sentence fewer); else a hard cut."""
    if len(s) <= max_chars:
        return s
    head = s[:max_chars]
    ends = [m.end() for m in _SENTENCE_END_RE.finditer(head)]
    cut = ends[-1] if ends and ends[-1] >= max_chars // 2 else max_chars
    return head[:cut]
