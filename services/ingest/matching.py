"""Dictionary phrase matching for watchlists and taxonomies: one Aho-Corasick pass per text.

Why Aho-Corasick: a watchlist has thousands of names and a taxonomy hundreds of phrases; one
automaton finds every occurrence of all of them in a single pass over the text, independent of
the dictionary size, where a regex alternation or a loop of ``in`` checks grows with it.

Word boundaries depend on the script. Latin (and other spaced scripts) need them, or "Apple"
fires inside "Applesauce" and "Meta" inside "metadata". Chinese and Japanese have no spaces
between words, so a CJK edge of a phrase is never boundary-checked: 阿里巴巴 must match in
"阿里巴巴股价大跌". A boundary check therefore applies only at an edge of the phrase that is a
word character of a spaced script, and only fails when the neighbouring text character is one
too ("Apple的" matches; "Apples" does not).

Matching is case-insensitive unless a phrase is marked case-sensitive (short names that are
also common words: "Meta", "Shell", "Target"). A trailing ``*`` on a phrase turns off the
right-hand boundary check ("acqui*" matches acquire, acquired, acquisition).

Traditional Chinese: phrases and text are both folded traditional->simplified
(:func:`fold_zh`) before matching, so a watchlist written in simplified characters finds
騰訊 and 匯豐 in Hong Kong and Taiwan news. The fold maps character for character (OpenCC's
tables never change a length), so match offsets still index the original text.
"""
from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Generic, TypeVar

import ahocorasick

from models.text_zh import to_simplified

T = TypeVar("T")


def is_cjk(ch: str) -> bool:
    """Characters of scripts written without spaces between words (Han, kana, Hangul...)."""
    o = ord(ch)
    return (
        0x2E80 <= o <= 0x2FDF  # CJK radicals
        or 0x3040 <= o <= 0x30FF  # hiragana, katakana
        or 0x3100 <= o <= 0x312F  # bopomofo
        or 0x3190 <= o <= 0x31FF
        or 0x3400 <= o <= 0x4DBF  # CJK extension A
        or 0x4E00 <= o <= 0x9FFF  # CJK unified ideographs
        or 0xAC00 <= o <= 0xD7AF  # Hangul syllables
        or 0xF900 <= o <= 0xFAFF  # compatibility ideographs
        or 0xFF66 <= o <= 0xFF9F  # half-width katakana
        or 0x20000 <= o <= 0x3134F  # extensions B..H
        or 0x0E00 <= o <= 0x0EFF  # Thai, Lao: no spaces either
    )


def is_word_char(ch: str) -> bool:
    """A character that glues to its neighbours in a spaced script (letters, digits, marks, _)."""
    if ch == "_":
        return True
    if is_cjk(ch):
        return False
    return ch.isalnum() or unicodedata.category(ch).startswith("M")


def fold(s: str) -> str:
    """Lower-case without changing the length, so match offsets index the original text."""
    low = s.lower()
    if len(low) == len(s):
        return low
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in s)


@lru_cache(maxsize=16)  # the linker and the tagger fold the same text one after the other
def fold_zh(s: str) -> str:
    """Traditional -> simplified, same length (the offsets of ``s`` index the result)."""
    if s.isascii():
        return s
    out = to_simplified(s)
    return out if len(out) == len(s) else s


@dataclass(frozen=True, slots=True)
class Match(Generic[T]):
    start: int
    end: int  # exclusive
    phrase: str
    value: T


@dataclass(frozen=True, slots=True)
class _Entry(Generic[T]):
    phrase: str  # as written, without a trailing '*'
    value: T
    case_sensitive: bool
    check_left: bool
    check_right: bool


class PhraseMatcher(Generic[T]):
    """Finds non-overlapping dictionary phrases in text; the longest wins where phrases overlap."""

    def __init__(self, phrases: Iterable[tuple[str, T, bool]], simplify: bool = True) -> None:
        """``phrases``: (phrase, value, case_sensitive). Empty phrases are ignored.
        ``simplify``: match on traditional->simplified folded text (:func:`fold_zh`)."""
        self._automaton = ahocorasick.Automaton()
        self._simplify = simplify
        by_key: dict[str, list[_Entry[T]]] = {}
        for raw, value, case_sensitive in phrases:
            phrase = unicodedata.normalize("NFKC", raw).strip()
            if simplify:
                phrase = fold_zh(phrase)
            prefix = phrase.endswith("*")
            phrase = phrase.rstrip("*").strip()
            if not phrase:
                continue
            entry = _Entry(
                phrase=phrase,
                value=value,
                case_sensitive=case_sensitive,
                check_left=is_word_char(phrase[0]),
                check_right=is_word_char(phrase[-1]) and not prefix,
            )
            by_key.setdefault(fold(phrase), []).append(entry)
        for key, entries in by_key.items():
            self._automaton.add_word(key, (key, tuple(entries)))
        self._size = len(by_key)
        if self._size:
            self._automaton.make_automaton()

    def __len__(self) -> int:
        return self._size

    def find(self, text: str) -> list[Match[T]]:
        """All accepted matches, left to right, overlaps resolved longest-first."""
        if not self._size or not text:
            return []
        candidates: list[Match[T]] = []
        n = len(text)
        if self._simplify:
            text = fold_zh(text)
        for end_idx, (key, entries) in self._automaton.iter(fold(text)):
            start = end_idx - len(key) + 1
            end = end_idx + 1
            for e in entries:
                if e.case_sensitive and text[start:end] != e.phrase:
                    continue
                if e.check_left and start > 0 and is_word_char(text[start - 1]):
                    continue
                if e.check_right and end < n and is_word_char(text[end]):
                    continue
                candidates.append(Match(start, end, e.phrase, e.value))
                break
        accepted: list[Match[T]] = []
        # Greedy by length, then restore text order: "腾讯音乐" beats the "腾讯" inside it.
        used = bytearray(n)
        for m in sorted(candidates, key=lambda m: (-(m.end - m.start), m.start)):
            if any(used[m.start:m.end]):
                continue
            used[m.start:m.end] = b"\x01" * (m.end - m.start)
            accepted.append(m)
        accepted.sort(key=lambda m: m.start)
        return accepted
