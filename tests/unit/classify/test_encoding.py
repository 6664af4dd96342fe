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


ZH = [
    "贵州茅台业绩大增，净利润同比增长三成。",
    "騰訊控股業績大增！！！！ 匯豐 虧損",  # traditional -> simplified, repeats collapse
    "$贵州茅台(SH600519)$ 回复@股民甲: 利好 ＡＢＣ１２３",  # stock tag, reply marker, full-width
    "公司公告称，因涉嫌信息披露违法违规被证监会立案调查。" * 6,  # cut at a sentence end
    "营收增长" * 40,  # no sentence end in the budget: a hard cut
    "平安银行 中国平安 两者 不同",  # spaces between CJK dropped
    "//@大V: 转发微博 #股市# 今天大涨😂😂😂😂",
    "腾讯控股 Q3 revenue 增长 " * 20,
    "这是一句话。" * 10 + "x" * 3000,
]


def test_zh_model_fast_path_equals_its_encoder(zh_model: SentimentModel) -> None:
    from bench.common import headlines

    enc = FastEncoder(zh_model, cache_size=0)
    assert enc.fast  # the self-check (Chinese probes included) passed
    texts = ZH + ODD + headlines(50)
    _equal(enc.encode(texts), zh_model.encode(texts))
    cached = FastEncoder(zh_model, cache_size=100)
    cached.encode(texts)
    _equal(cached.encode(texts), zh_model.encode(texts))  # from the cache: the same rows


def test_zh_sentence_end_truncation_is_flagged(zh_model: SentimentModel) -> None:
    from models.text_zh import truncate_sentences

    enc = FastEncoder(zh_model, cache_size=0)
    long = "公司公告称，因涉嫌信息披露违法违规被证监会立案调查。" * 6
    got = enc.encode([long, ZH[0]])
    assert got.truncated.tolist() == [True, False]
    budget = zh_model.max_length - 2
    cut = truncate_sentences(zh_model.text_encoder.normalize(long), budget)
    assert cut.endswith("。")  # whole sentences only
    assert got.lengths[0] == len(cut) + 2  # one token per character, plus [CLS] and [SEP]


def test_each_language_normalises_with_its_own_rules(model, zh_model) -> None:
    text = "回复@trader: 騰訊 beats!!!!!"
    en, zh = FastEncoder(model, cache_size=0), FastEncoder(zh_model, cache_size=0)
    assert en.encode([text]).lengths[0] > zh.encode([text]).lengths[0]
    _equal(en.encode([text]), model.encode([text]))
    _equal(zh.encode([text]), zh_model.encode(["腾讯 beats!!"]))  # the zh normaliser ran


def test_tokenizer_key_tells_languages_apart(model, zh_model) -> None:
    from services.classify.encoding import tokenizer_key

    assert tokenizer_key(model) != tokenizer_key(zh_model)  # same vocabulary, other rules
    assert tokenizer_key(model).endswith(":en") and tokenizer_key(zh_model).endswith(":zh")


def test_tokenizer_processes_prepare_like_the_model(zh_model: SentimentModel) -> None:
    from services.classify.encoding import _PROC, process_encode, process_init, tokenizer_key

    te = zh_model.text_encoder
    key = tokenizer_key(zh_model)
    process_init(key, te.tokenizer.to_str(), te.max_length, 0, te.language)
    try:
        ids, lengths, truncated, _ = process_encode(key, ZH)
        ref = zh_model.encode(ZH)
        np.testing.assert_array_equal(ids, ref.input_ids)
        np.testing.assert_array_equal(truncated, ref.truncated)
    finally:
        _PROC.pop(key, None)
