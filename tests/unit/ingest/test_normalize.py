from __future__ import annotations

from services.ingest.normalize import clean_text, join_title_body, strip_html, truncate


def test_strip_html_keeps_visible_text_with_word_breaks() -> None:
    html = "<div><p>Apple <b>beats</b></p><p>estimates</p><script>var x=1;</script>" \
           "<style>p{}</style>done<br/>now</div>"
    assert clean_text(html, 1000) == "Apple beats estimates done now"


def test_plain_text_with_angle_brackets_is_untouched() -> None:
    assert strip_html("EPS < 2 and revenue > 3") == "EPS < 2 and revenue > 3"
    assert clean_text("a <= b", 100) == "a <= b"


def test_entities_unescaped_once() -> None:
    assert clean_text("<p>AT&amp;T &lt;3</p>", 100) == "AT&T <3"
    assert clean_text("Q&amp;A", 100) == "Q&A"


def test_unicode_nfkc_controls_and_whitespace() -> None:
    # Full-width letters/digits fold, zero-width and control chars vanish, whitespace collapses.
    assert clean_text("ＡＡＰＬ　涨\u200b了\x00 ５％\n\n\tok", 100) == "AAPL 涨了 5% ok"


def test_urls_removed_and_cashtags_upper_cased() -> None:
    assert clean_text("buy $aapl https://t.co/x now", 100) == "buy $AAPL now"


def test_length_cap_prefers_word_boundary() -> None:
    s = "word " * 100
    out = clean_text(s, 52)
    assert len(out) <= 52
    assert out.endswith("word")
    assert truncate("阿里巴巴股价大跌" * 10, 7) == "阿里巴巴股价大"
    assert truncate("abc", 0) == ""


def test_join_title_body() -> None:
    assert join_title_body("Apple beats", "Shares up") == "Apple beats. Shares up"
    assert join_title_body("Apple beats!", "Shares up") == "Apple beats! Shares up"
    assert join_title_body("苹果财报。", "股价上涨") == "苹果财报。 股价上涨"
    assert join_title_body("Title", "") == "Title"


def test_none_and_empty() -> None:
    assert clean_text(None, 10) == ""
    assert clean_text("<p> </p>", 10) == ""
