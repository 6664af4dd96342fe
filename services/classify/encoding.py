"""Tokenisation for the serving hot path: same output as ``SentimentModel.encode``, less glue.

On a GPU the forward pass is ~10x faster than tokenising through the usual wrappers, so
the per-item Python work around the Rust tokenizer decides throughput. This encoder keeps
the model's tokenizer and its language's text preparation (``TextEncoder.normalize``, and
for Chinese the cut at a sentence end within the token budget: exactly
``TextEncoder._prepare``; no train/serve skew; the output is checked against
``model.encode`` at construction and in the tests) and removes glue:

* ``encode_batch_fast`` (no offset tracking) on a private clone of the model's tokenizer;
* truncation detected from lengths instead of per-item ``overflowing`` lists: the clone
  truncates at ``max_length + 1``, so an item longer than the limit comes back exactly one
  token too long; it is cut to the limit (keeping the closing special token) and flagged;
* ids go into the padded array in one vectorised scatter (no per-row numpy calls);
* a bounded cache of raw text -> ids skips normalisation and tokenisation for repeated
  texts (syndicated stories, copy-pasted posts, retweets).

If the model's tokenizer is not of the shape this relies on (a template that ends each
sequence with one special token), the self-check fails and ``encode`` falls back to
``model.encode``: slower, never wrong.
"""
from __future__ import annotations

import hashlib
import itertools
import logging
import threading
from collections.abc import Sequence

import numpy as np
from tokenizers import Tokenizer

from models.sentiment import Encoded, SentimentModel
from models.sentiment.tokenize import CHARS_PER_TOKEN_CAP, TextEncoder
from models.text_zh import truncate_sentences

log = logging.getLogger(__name__)

_PROBES = (
    "",
    "Apple beats estimates",
    "$tsla 🚀🚀 特斯拉 股价 上涨 \x00\u200b",
    "word " * 300,
    "x" * 5000,
    "騰訊控股業績大增！！！！ $贵州茅台(SH600519)$ 回复@股民甲: 利好 ＡＢＣ１２３",
    "公司公告称，因涉嫌信息披露违法违规被立案调查。" * 8,
    "营收增长" * 40,
)


class FastEncoder:
    """Thread-safe: the tokenizer clone is configured once and never mutated afterwards.

    Built from a model's ``TextEncoder`` (``FastEncoder(model)`` works too), so tokenizer
    processes can build one without loading the network.
    """

    def __init__(self, source: SentimentModel | TextEncoder, cache_size: int = 50_000) -> None:
        te: TextEncoder = source.text_encoder if isinstance(source, SentimentModel) else source
        self.text_encoder = te
        self.max_length = int(te.max_length)
        self.cache_size = max(0, int(cache_size))
        self._cache: dict[str, tuple[list[int], bool]] = {}
        self._cache_lock = threading.Lock()
        self._char_cap = self.max_length * CHARS_PER_TOKEN_CAP
        self._normalize = te.normalize  # the model's language's normaliser
        # Chinese: texts longer than the token budget are cut at a sentence end (as in
        # TextEncoder._prepare; the self-check below proves the two agree); None elsewhere
        self._sentence_budget: int | None = getattr(te, "_sentence_budget", None)
        self.pad_id = int(getattr(te, "pad_id", 0))
        self._fast = False
        try:
            tok = Tokenizer.from_str(te.tokenizer.to_str())
            tok.no_padding()
            tok.enable_truncation(max_length=self.max_length + 1)
            self._tok = tok
            empty = tok.encode("").ids
            self.n_special = len(empty)
            self._close_id = int(empty[-1]) if empty else None
            self._fast = self._close_id is not None and self._self_check()
        except Exception:  # any unexpected tokenizer shape: use the model's own encoder
            log.exception("fast encoder unavailable; using the model's encoder")
            self._fast = False
        if not self._fast:
            self.n_special = len(te.encode([""]).input_ids[0])
            log.warning("fast tokenisation path disabled (max_length %d)", self.max_length)

    @property
    def fast(self) -> bool:
        return self._fast

    def _self_check(self) -> bool:
        ref = self.text_encoder.encode(list(_PROBES))
        self._fast = True
        got, _ = self._encode_fast(list(_PROBES), use_cache=False)
        return (
            np.array_equal(ref.input_ids, got.input_ids)
            and np.array_equal(ref.attention_mask, got.attention_mask)
            and np.array_equal(ref.lengths, got.lengths)
            and np.array_equal(ref.truncated, got.truncated)
        )

    def encode(self, texts: Sequence[str]) -> Encoded:
        """Like ``SentimentModel.encode``: padded int64 ids/mask, lengths, truncated flags."""
        return self.encode_counted(texts)[0]

    def encode_counted(self, texts: Sequence[str]) -> tuple[Encoded, int]:
        """``encode`` plus how many texts came from the cache."""
        if not self._fast:
            return self.text_encoder.encode(texts), 0
        return self._encode_fast(texts, use_cache=self.cache_size > 0)

    def _encode_fast(self, texts: Sequence[str], use_cache: bool) -> tuple[Encoded, int]:
        n = len(texts)
        rows: list[list[int] | None] = [None] * n
        truncated = np.zeros(n, dtype=bool)
        miss_idx: list[int] = []
        miss_text: list[str] = []
        get = self._cache.get if use_cache else None
        cap = self._char_cap
        for i, t in enumerate(texts):
            if type(t) is not str:
                t = "" if t is None else str(t)
            if get is not None:
                hit = get(t)
                if hit is not None:
                    rows[i] = hit[0]
                    truncated[i] = hit[1]
                    continue
            miss_idx.append(i)
            miss_text.append(t)
        if miss_idx:
            cut = [len(t) > cap for t in miss_text]
            normalize = self._normalize
            prepared = [normalize(t[:cap]) if c else normalize(t)
                        for t, c in zip(miss_text, cut, strict=True)]
            budget = self._sentence_budget
            if budget is not None:
                for j, p in enumerate(prepared):
                    if len(p) > budget:
                        prepared[j] = truncate_sentences(p, budget)
                        cut[j] = True
            encs = self._tok.encode_batch_fast(prepared)
            limit, close = self.max_length, self._close_id
            new: list[tuple[str, list[int], bool]] = []
            for i, t, c, e in zip(miss_idx, miss_text, cut, encs, strict=True):
                ids = e.ids
                if len(ids) > limit:
                    ids = ids[: limit - 1]
                    ids.append(close)  # type: ignore[arg-type]
                    c = True
                rows[i] = ids
                truncated[i] = c
                new.append((t, ids, c))
            if use_cache:
                self._remember(new)
        lengths = np.fromiter(map(len, rows), dtype=np.int32, count=n)  # type: ignore[arg-type]
        width = max(int(lengths.max()) if n else 1, 1)
        mask = np.arange(width, dtype=np.int32)[None, :] < lengths[:, None]
        ids_arr = np.full((n, width), self.pad_id, dtype=np.int64)
        ids_arr[mask] = np.fromiter(
            itertools.chain.from_iterable(rows),  # type: ignore[arg-type]
            dtype=np.int64,
            count=int(lengths.sum()),
        )
        enc = Encoded(ids_arr, mask.astype(np.int64), lengths, truncated)
        return enc, n - len(miss_idx)

    def _remember(self, new: list[tuple[str, list[int], bool]]) -> None:
        with self._cache_lock:
            cache = self._cache
            overflow = len(cache) + len(new) - self.cache_size
            if overflow > 0:  # FIFO eviction: cheap, and old stories rarely come back
                for key in list(itertools.islice(cache, overflow)):
                    del cache[key]
            for t, ids, c in new[-self.cache_size:]:
                cache[t] = (ids, c)

    def cache_len(self) -> int:
        return len(self._cache)


def tokenizer_key(source: SentimentModel | TextEncoder) -> str:
    """Identity of a tokenisation (vocabulary, rules, max length, language: the language picks
    the normaliser): models trained from the same base for the same language share it, so a
    hot swap between them needs no re-tokenisation."""
    te = source.text_encoder if isinstance(source, SentimentModel) else source
    digest = hashlib.sha1(te.tokenizer.to_str().encode(), usedforsecurity=False).hexdigest()
    return f"{digest[:16]}:{te.max_length}:{getattr(te, 'language', 'en')}"


# ---- tokenizer processes ------------------------------------------------------------------
# With many cores the GIL, not the Rust tokenizer, caps threads: normalisation and the
# per-item glue are Python. Processes run that glue in parallel; each builds its encoder
# once (initializer) and returns three compact arrays per chunk.

_PROC: dict[str, FastEncoder] = {}


def process_init(key: str, tokenizer_json: str, max_length: int, cache_size: int,
                 language: str = "en") -> None:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "tokenizer.json"
        path.write_text(tokenizer_json)
        _PROC[key] = FastEncoder(TextEncoder(path, max_length, language), cache_size)


def process_encode(key: str, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    enc, hits = _PROC[key].encode_counted(texts)
    ids = enc.input_ids.astype(np.int32) if enc.input_ids.max(initial=0) < 2**31 else enc.input_ids
    return ids, enc.lengths, enc.truncated, hits
