"""Which language a document is in: its ``lang`` tag when it has one, else its script.

The worker routes every document to the model of its language. Producers' tags come in
every spelling (``zh-CN``, ``zh_Hant_HK``, ``ZH``, ``en-us``), so they are folded to the
primary subtag. Untagged text is judged by its dominant script, counted the way the
tokenizers see it: each Han character is about one token, each Latin word about one, so
"腾讯控股 Q3 revenue 增长" (6 Han, 3 words) is Chinese, and "Tencent (腾讯) beats" is
English. Kana beside Han means Japanese, Hangul Korean; other scripts get their ISO code,
and text with no letters at all is ``und`` (undetermined), which the worker scores with
the settings' fallback model (or dead-letters, when there is none).
"""
from __future__ import annotations

import re

UNDETERMINED = "und"

_SCRIPTS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("han", re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef]")),
    ("kana", re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f]")),
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
    if counts["kana"] and counts["kana"] * 5 >= counts["han"]:
        counts["kana"] += counts["han"]  # Japanese writes kanji among its kana
        counts["han"] = 0
    best, n = max(counts.items(), key=lambda kv: kv[1])
    if n == 0:
        return UNDETERMINED
    return "ja" if best == "kana" else _SCRIPT_LANG[best]


def document_language(tag: str | None, text: str) -> str:
    """The language a document is routed by: its tag when valid, else its script."""
    return canonical_language(tag) or detect_language(text)
