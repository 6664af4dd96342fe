"""Text clean-up for ingest: strip HTML, then the classifier's own normalisation, then a length cap.

The model-facing part is :func:`models.text.normalize_text` (NFKC, entity unescape, control
characters, URLs, cashtags, whitespace), so that training rows and live documents are the same
distribution; this module only adds what raw feeds need before that: HTML removal (RSS bodies
and scraped pages carry markup, and tags would otherwise become tokens) and a cap, so one huge
article cannot blow up a batch.
"""
from __future__ import annotations

import re
from html.parser import HTMLParser

from models.text import normalize_text

# Tags whose content is not text a reader sees.
_SKIP_TAGS = frozenset({"script", "style", "noscript", "template", "head", "svg", "iframe",
                        "object"})
# Tags that separate words: without a space "<p>a</p><p>b</p>" would glue into "ab".
_BREAK_TAGS = frozenset({
    "p", "br", "div", "li", "ul", "ol", "tr", "td", "th", "table", "h1", "h2", "h3", "h4", "h5",
    "h6", "section", "article", "header", "footer", "blockquote", "pre", "hr", "dd", "dt", "dl",
    "figcaption", "figure", "title", "nav", "aside", "main",
})
_LOOKS_LIKE_HTML = re.compile(r"<(?:[A-Za-z][A-Za-z0-9]*[\s/>]|/[A-Za-z]|!--)")
_SENTENCE_END = ".!?。！？…\"'”’)"


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)  # entities are unescaped once, by normalize_text
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self._skip += 1
        elif tag in _BREAK_TAGS:
            self.parts.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BREAK_TAGS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skip = max(0, self._skip - 1)
        elif tag in _BREAK_TAGS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)

    def handle_entityref(self, name: str) -> None:
        if not self._skip:
            self.parts.append(f"&{name};")

    def handle_charref(self, name: str) -> None:
        if not self._skip:
            self.parts.append(f"&#{name};")


def strip_html(s: str) -> str:
    """Visible text of an HTML fragment; plain text (even with a stray '<') comes back unchanged."""
    if not s or not _LOOKS_LIKE_HTML.search(s):
        return s
    parser = _TextExtractor()
    parser.feed(s)
    parser.close()
    return "".join(parser.parts)


def truncate(s: str, max_chars: int) -> str:
    """Cut to ``max_chars``, at a word boundary in the last 10% if any (CJK: a hard cut)."""
    if max_chars <= 0:
        return ""
    if len(s) <= max_chars:
        return s
    cut = s[:max_chars]
    space = cut.rfind(" ")
    if space >= max_chars * 0.9:
        cut = cut[:space]
    return cut.rstrip()


def clean_text(s: str | None, max_chars: int) -> str:
    """HTML-stripped, normalised (:func:`models.text.normalize_text`) and capped text."""
    if not s:
        return ""
    return truncate(normalize_text(strip_html(s)), max_chars)


def join_title_body(title: str, body: str) -> str:
    """``title + ". " + body``; no extra full stop when the title already ends a sentence."""
    if not body:
        return title
    if not title:
        return body
    sep = " " if title[-1] in _SENTENCE_END else ". "
    return f"{title}{sep}{body}"
