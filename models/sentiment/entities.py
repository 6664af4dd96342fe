"""Entity-level sentiment from the same forward pass as the document's.

"Bank A sues Company B" is negative for B, not for A. The head reads the encoder's last
hidden states, which the document head pools anyway: for each entity it mean-pools the
tokens of that entity's mentions and concatenates the document's mean-pooled vector, so
``[entity tokens ; whole text] -> 3 labels``. The mention tokens are contextualised by
every other token (attention), which is where "sues" reaches "B"; the document half lets
the head fall back to the text's overall tone for neutral mentions.

Cost: one forward pass per document (the hidden states come out of the same graph as the
document logits), then a (k x 2H) @ (2H x 3) product per document in numpy.

Spans are character offsets in the text the caller passes; the model normalises text with
its language's normaliser (:func:`models.normalizers.normalizer_for`) before tokenising, so
offsets are mapped onto the normalised string (by the normalised prefix, checked against the
normalised mention, which Chinese repost/#topic# noise can move) and then onto token
positions with the tokenizer's offsets.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from models.text import normalize_text

ENTITY_HEAD_FILE = "entity_head.safetensors"


class EntityHead(nn.Module):
    def __init__(self, hidden: int, n_labels: int):
        super().__init__()
        self.dropout = nn.Dropout(0.1)
        self.head = nn.Linear(2 * hidden, n_labels)

    def forward(self, entity_vec: torch.Tensor, doc_vec: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(torch.cat([entity_vec, doc_vec], -1)))

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / ENTITY_HEAD_FILE
        save_file({k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()},
                  str(path))
        path.chmod(0o644)
        return path

    @classmethod
    def load(cls, folder: str | Path) -> EntityHead | None:
        path = Path(folder) / ENTITY_HEAD_FILE
        if not path.is_file():
            return None
        try:
            sd = load_file(str(path))
            w = sd["weight"]
            head = cls(w.shape[1] // 2, w.shape[0])
            head.head.load_state_dict(sd)
        except Exception as e:
            raise ValueError(f"{path} is corrupt ({e}); retrain or repack the model") from e
        return head.eval()


def masked_mean(hidden: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return hidden[rows].mean(0) if len(rows) else np.zeros(hidden.shape[-1], hidden.dtype)


def map_spans(text: str, spans: Sequence[tuple[int, int]], norm: str | None = None,
              normalize: Callable[[str], str] = normalize_text
              ) -> tuple[str, list[tuple[int, int]]]:
    """(normalised text, spans moved onto it). Exact when ``text`` is already normalised;
    otherwise each offset becomes the length of the normalised prefix (whitespace collapse,
    URL removal and NFKC shift offsets, never reorder them). ``norm``: the normalised text
    when the caller has it already; ``normalize``: the model's normaliser (its language's)."""
    norm = normalize(text) if norm is None else norm
    if norm == text:
        return norm, [(int(s), int(e)) for s, e in spans]
    out = []
    for s, e in spans:
        ns = len(normalize(text[:s]))
        # a prefix ending in whitespace loses it to the strip; the full text keeps it only
        # where the normaliser does (Chinese drops the space between two Han characters)
        if s and text[s - 1:s].isspace() and norm[ns:ns + 1] == " ":
            ns += 1
        ne = len(normalize(text[:e]))
        ns, ne = min(ns, len(norm)), min(max(ne, ns), len(norm))
        # A prefix can normalise differently from the same characters inside the whole text
        # (a cut inside #话题#, a 股吧 tag or a repost marker): then the mention itself, as
        # normalised, is looked up nearest the estimate, so the span covers its own words.
        mention = normalize(text[s:e])
        if mention and norm[ns:ne] != mention:
            ns, ne = _nearest(norm, mention, ns, (ns, ne))
        out.append((ns, ne))
    return norm, out


def _nearest(norm: str, mention: str, near: int, default: tuple[int, int]) -> tuple[int, int]:
    best, i = None, norm.find(mention)
    while i >= 0:
        if best is None or abs(i - near) < abs(best - near):
            best = i
        i = norm.find(mention, i + 1)
    return default if best is None else (best, best + len(mention))


def token_sets(offsets: Sequence[tuple[int, int]], special: Sequence[int],
               char_spans: Sequence[Sequence[tuple[int, int]]]) -> list[np.ndarray]:
    """Token positions overlapping each entity's character spans (special tokens excluded).
    ``offsets``: the tokenizer's (start, end) per token of the truncated encoding."""
    out = []
    for spans in char_spans:
        rows = [i for i, (a, b) in enumerate(offsets)
                if not special[i] and b > a and any(a < e and b > s for s, e in spans)]
        out.append(np.array(rows, dtype=np.int64))
    return out


def entity_logits_np(weight: np.ndarray, bias: np.ndarray, hidden: np.ndarray, length: int,
                     sets: Sequence[np.ndarray]) -> np.ndarray:
    """Per-entity logits [k, n_labels] for one document's hidden states [L, H]."""
    h = hidden[:length]
    doc = h.mean(0)
    feats = np.stack([np.concatenate([masked_mean(h, rows) if len(rows) else doc, doc])
                      for rows in sets]) if sets else np.zeros((0, 2 * h.shape[-1]), h.dtype)
    return feats @ weight.T + bias
