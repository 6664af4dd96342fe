"""Batch tokenisation straight into numpy arrays, shared by training and serving.

Uses the Rust ``tokenizers`` library's ``encode_batch`` (parallel, releases the
GIL) instead of the transformers wrapper: no per-item Python dicts, no
BatchEncoding, and the Tokenizer object is configured once at construction and
never mutated afterwards, which is what makes concurrent ``encode`` calls from
several worker threads safe.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from models.normalizers import normalizer_for

CHARS_PER_TOKEN_CAP = 16
"""Texts are cut to ``max_length * CHARS_PER_TOKEN_CAP`` characters before
tokenisation so a 100 kB document costs the same as a tweet. No WordPiece token
of this vocabulary covers more than ~16 characters of real words, so a cut text
still fills all ``max_length`` positions; cut texts are flagged truncated."""


@dataclass
class Encoded:
    """A tokenised batch as numpy arrays, no per-item Python objects."""

    input_ids: np.ndarray  # int64 [n, L], padded to the batch's longest, L <= max_length
    attention_mask: np.ndarray  # int64 [n, L]
    lengths: np.ndarray  # int32 [n] real token counts (after truncation)
    truncated: np.ndarray  # bool [n]

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def select(self, idx: np.ndarray | slice) -> Encoded:
        """Rows ``idx``, re-trimmed to their own longest length (for bucketing)."""
        lengths = self.lengths[idx]
        L = max(int(lengths.max()) if len(lengths) else 1, 1)
        return Encoded(
            self.input_ids[idx, :L], self.attention_mask[idx, :L], lengths, self.truncated[idx]
        )


class TextEncoder:
    def __init__(self, tokenizer_path: str | Path, max_length: int, language: str = "en"):
        if max_length < 3:
            raise ValueError("max_length must leave room for [CLS] and [SEP]")
        self.max_length = max_length
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=max_length)
        # BERT vocabularies pad with [PAD]; MPNet/RoBERTa ones with <pad> (id 1, not 0).
        pads = (self.tokenizer.token_to_id(t) for t in ("<pad>", "[PAD]"))
        self.pad_id = next((i for i in pads if i is not None), 0)
        self._char_cap = max_length * CHARS_PER_TOKEN_CAP
        self.language = language
        self.normalize = normalizer_for(language)
        # Chinese: about one token per character, so a text longer than the token budget is
        # cut at a sentence end inside it (models.text_zh.truncate_sentences), not mid-clause.
        self._sentence_budget = max_length - 2 if language == "zh" else None

    def _prepare(self, texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
        cut = np.zeros(len(texts), dtype=bool)
        out = []
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                t = "" if t is None else str(t)
            if len(t) > self._char_cap:
                t = t[: self._char_cap]
                cut[i] = True
            t = self.normalize(t)
            if self._sentence_budget is not None and len(t) > self._sentence_budget:
                from models.text_zh import truncate_sentences

                t = truncate_sentences(t, self._sentence_budget)
                cut[i] = True
            out.append(t)
        return out, cut

    def encode(self, texts: Sequence[str]) -> Encoded:
        texts, cut = self._prepare(texts)
        n = len(texts)
        encs = self.tokenizer.encode_batch(texts) if n else []
        lengths = np.fromiter((len(e.ids) for e in encs), dtype=np.int32, count=n)
        truncated = cut | np.fromiter((bool(e.overflowing) for e in encs), dtype=bool, count=n)
        L = max(int(lengths.max()) if n else 1, 1)
        ids = np.full((n, L), self.pad_id, dtype=np.int64)
        mask = np.zeros((n, L), dtype=np.int64)
        for i, e in enumerate(encs):
            k = lengths[i]
            ids[i, :k] = e.ids
            mask[i, :k] = 1
        return Encoded(ids, mask, lengths, truncated)

    def offsets(self, text: str) -> tuple[list[tuple[int, int]], list[int]]:
        """Character offsets (in the normalised text) and special-token flags per token of
        ``text``'s truncated encoding: the entity head maps mentions onto tokens with them."""
        (prepared,), _ = self._prepare([text])
        e = self.tokenizer.encode(prepared)
        return list(e.offsets), list(e.special_tokens_mask)

    def lengths(self, texts: Sequence[str]) -> np.ndarray:
        """Token counts after truncation, for length bucketing (no array building)."""
        texts, _ = self._prepare(texts)
        return np.fromiter(
            (len(e.ids) for e in self.tokenizer.encode_batch(texts, add_special_tokens=True)),
            dtype=np.int32,
            count=len(texts),
        )
