"""The fast tokenisation path must give exactly what SentimentModel.encode gives."""
from __future__ import annotations

import numpy as np
import pytest

from models.sentiment import SentimentModel
from services.classify.encoding import FastEncoder

ODD = [
    "",
    " ",
    "\x00\x01\x02\x7f",
    "Tesla slumps 📉 after recall; 特斯拉 股价 下跌 5%",
    "word " * 62,  # close to the limit
    "word " * 63,
    "word " * 64,
    "lengthy " * 5000,
    "x" * 100_000,
    "&amp; &lt;b&gt; html entities https://t.co/abc $aapl",
    "Ａｐｐｌｅ full-width ＡＢＣ",
    "\u200b\u200bzero width\ufeff",
    "🚀" * 100,
]


def _equal(a, b) -> None:
    np.testing.assert_array_equal(a.input_ids, b.input_ids)
    np.testing.assert_array_equal(a.attention_mask, b.attention_mask)
    np.testing.assert_array_equal(a.lengths, b.lengths)
    np.testing.assert_array_equal(a.truncated, b.truncated)


def test_fast_path_is_enabled_for_the_shipped_tokenizer(model: SentimentModel) -> None:
    assert FastEncoder(model).fast


def test_same_output_as_model_encode(model: SentimentModel) -> None:
    from bench.common import headlines

    texts = headlines(300) + ODD
    _equal(FastEncoder(model, cache_size=0).encode(texts), model.encode(texts))


def test_truncation_is_flagged_exactly(model: SentimentModel) -> None:
    enc = FastEncoder(model, cache_size=0)
    lengths = [len(enc.encode(["word " * k]).input_ids[0]) for k in (61, 62, 63)]
    assert lengths == [63, 64, 64]
    assert enc.encode(["word " * 62, "word " * 63]).truncated.tolist() == [False, True]
    last = enc.encode(["word " * 100]).input_ids[0, -1]
    assert last == model.encode([""]).input_ids[0, -1]  # still ends with [SEP]


def test_cache_returns_identical_rows_and_is_bounded(model: SentimentModel) -> None:
    enc = FastEncoder(model, cache_size=8)
    texts = [f"headline number {i}" for i in range(20)] + ODD
    first, hits0 = enc.encode_counted(texts)
    again, hits1 = enc.encode_counted(texts)
    _equal(first, again)
    _equal(first, model.encode(texts))
    assert hits0 == 0
    assert 0 < hits1 <= 8
    assert enc.cache_len() <= 8


@pytest.mark.parametrize("bad", [None, 12, 3.5])
def test_non_strings_encode_like_the_model(model: SentimentModel, bad) -> None:
    _equal(FastEncoder(model).encode([bad, "ok"]), model.encode([bad, "ok"]))
