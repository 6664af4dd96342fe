"""Text normalisation shared by training and serving.

The same function must run on training rows and on live documents, otherwise the
classifier sees a different distribution in production than it was fitted on
(train/serve skew). Bump ``NORMALIZATION_VERSION`` whenever the output of
``normalize_text`` changes for any input: it is stored in every checkpoint's
config, and the predictor refuses nothing but logs the mismatch.

Choices:

* Unicode NFKC: folds full-width letters/digits (common in Chinese-language
  finance text), ligatures and compatibility forms into one spelling.
* HTML entities (``&amp;``) are unescaped: tweets and RSS feeds carry them.
* Control and format characters (categories Cc, Cf, plus surrogates and
  private-use) are dropped; tabs/newlines become spaces first.
* URLs are REMOVED rather than replaced by a placeholder. In the tweet corpus
  nearly every row ends in a t.co link, while news sentences from the ingest
  stage rarely carry one; a placeholder token would become a "this is a tweet"
  feature the model can latch onto, which hurts transfer across sources. A URL
  carries no sentiment of its own.
* Cashtags (``$aapl``, ``$BRK.B``) are kept and upper-cased to one canonical
  form; the tokenizer is uncased, but downstream consumers (entity linking,
  logs) read the normalised text too.
* Whitespace is collapsed to single spaces and stripped.
"""
from __future__ import annotations

import html
import re
import unicodedata

LABELS: tuple[str, ...] = ("negative", "neutral", "positive")
"""Canonical label order used everywhere: model head rows, metrics, JSON output."""

NORMALIZATION_VERSION = "1"

_URL_RE = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_CASHTAG_RE = re.compile(r"(?<![\w$])\$([A-Za-z][A-Za-z0-9]{0,9}(?:[.\-][A-Za-z]{1,3})?)\b")
_WS_RE = re.compile(r"\s+")
_DROP_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})


def _strip_controls(s: str) -> str:
    # Fast path: most text is printable ASCII.
    if s.isascii() and s.isprintable():
        return s
    out = []
    for ch in s:
        if ch in "\t\n\r\v\f\x1c\x1d\x1e\x1f\x85\u2028\u2029":
            out.append(" ")
        elif unicodedata.category(ch) in _DROP_CATEGORIES:
            continue
        else:
            out.append(ch)
    return "".join(out)


def normalize_text(s: str) -> str:
    """Return the canonical form of ``s`` that the classifier is trained and served on.

    Never raises on str input; ``None`` is treated as the empty string so a bad
    upstream record scores as "empty" instead of crashing a batch.
    """
    if not s:
        return ""
    s = unicodedata.normalize("NFKC", s)
    if "&" in s:
        s = html.unescape(s)
    s = _strip_controls(s)
    s = _URL_RE.sub(" ", s)
    if "$" in s:
        s = _CASHTAG_RE.sub(lambda m: "$" + m.group(1).upper(), s)
    return _WS_RE.sub(" ", s).strip()

