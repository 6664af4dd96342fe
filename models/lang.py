"""Which language a document is in: its ``lang`` tag when it has one, else its script.

The worker routes every document to the model of its language. Producers' tags come in
every spelling (``zh-CN``, ``zh_Hant_HK``, ``ZH``, ``en-us``), so they are folded to the
primary subtag. Untagged text is judged by its dominant script, counted the way the
tokenizers see it, a Han character weighing two thirds of a Latin word, ties to Latin:
"腾讯控股 Q3 revenue 增长" (6 Han, 3 words) is Chinese, "Tencent (腾讯) beats" and
"Kweichow Moutai (贵州茅台) shares fell 3%" are English. Any hiragana means Japanese (so
does katakana outnumbering Han), Hangul Korean; other scripts get their ISO code,
and text with no letters at all is ``und`` (undetermined), which the worker scores with
the settings' fallback model (or dead-letters, when there is none).
"""
from __future__ import annotations

import re

UNDETERMINED = "und"

_SCRIPTS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("han", re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef]")),
    ("hiragana", re.compile(r"[\u3040-\u309f]")),
    ("kana", re.compile(r"[\u30a1-\u30fa\u31f0-\u31ff\uff66-\uff9d]+")),  # katakana runs
    ("hangul", re.compile(r"[\uac00-\ud7af\u1100-\u11ff\u3130-\u318f]")),
    ("cyrillic", re.compile(r"[\u0400-\u04ff]+")),
    ("arabic", re.compile(r"[\u0600-\u06ff\u0750-\u077f]+")),
    ("greek", re.compile(r"[\u0370-\u03ff]+")),
    ("hebrew", re.compile(r"[\u0590-\u05ff]+")),
    ("thai", re.compile(r"[\u0e00-\u0e7f]")),
    ("devanagari", re.compile(r"[\u0900-\u097f]+")),
    ("latin", re.compile(r"[A-Za-z\u00c0-\u024f]+")),
)
_SCRIPT_LANG = {"han": "zh", "hangul": "ko", "cyrillic": "ru", "arabic": "ar", "greek": "el",
                "hebrew": "he", "thai": "th", "devanagari": "hi", "latin": "en"}
_TAG_RE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*$")


def canonical_language(tag: str | None) -> str | None:
    """``zh-Hant-HK`` -> ``zh``, ``EN_us`` -> ``en``; None for an empty or malformed tag."""
    if not tag or not isinstance(tag, str):
        return None
    tag = tag.strip()
    if not _TAG_RE.match(tag):
        return None
    primary = re.split(r"[-_]", tag)[0].lower()
    return {"cmn": "zh", "yue": "zh", "zho": "zh", "chi": "zh", "eng": "en"}.get(primary, primary)


def script_counts(text: str) -> dict[str, int]:
    """Per script: Han/kana/Hangul/Thai characters, words of the alphabetic scripts."""
    return {name: len(rx.findall(text)) for name, rx in _SCRIPTS}


def detect_language(text: str) -> str:
    """The language of ``text``'s dominant script (see the module docstring)."""
    if not text:
        return UNDETERMINED
    counts = script_counts(text[:4000])
    if counts.pop("hiragana"):
        return "ja"  # Chinese never writes hiragana; Japanese nearly always does
    katakana = counts.pop("kana")
    if katakana > counts["han"]:
        return "ja"  # a katakana brand in a Chinese sentence (优衣库(ユニクロ)) stays Chinese
    # A Han character carries less than a Latin word: Chinese wins only clearly, and a tie
    # ("Tencent (腾讯) beats") goes to the Latin script, whose model reads the brand names.
    counts["han"] = counts["han"] / 1.5
    latin = counts.pop("latin")
    best, n = max(counts.items(), key=lambda kv: kv[1])
    if latin >= n:
        return "en" if latin else UNDETERMINED
    return _SCRIPT_LANG[best]


def document_language(tag: str | None, text: str) -> str:
    """The language a document is routed by: its tag when valid, else its script."""
    return canonical_language(tag) or detect_language(text)
