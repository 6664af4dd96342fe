from models.text import LABELS, normalize_text


def test_labels_canonical_order():
    assert LABELS == ("negative", "neutral", "positive")


def test_urls_removed_and_whitespace_collapsed():
    got = normalize_text("Fed hikes  https://t.co/AbC123 \n rates www.x.com/a")
    assert got == "Fed hikes rates"


def test_cashtags_kept_and_uppercased():
    assert normalize_text("$aapl and $brk.b up, $5 gain") == "$AAPL and $BRK.B up, $5 gain"


def test_nfkc_controls_entities():
    assert normalize_text("ＡＢＣ１２\x00\x07 Q&amp;A\u200b\tok") == "ABC12 Q&A ok"


def test_unicode_content_kept_and_degenerate_inputs():
    assert normalize_text("股票 大涨 🚀") == "股票 大涨 🚀"
    assert normalize_text("") == ""
    assert normalize_text(None) == ""  # type: ignore[arg-type]
    assert normalize_text("https://t.co/only") == ""


def test_idempotent():
    for s in ["$msft beats https://x.y/z", "ＡＢＣ  x", "a\u2028b"]:
        once = normalize_text(s)
        assert normalize_text(once) == once
