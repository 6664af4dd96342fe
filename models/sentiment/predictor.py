"""The serving-side predictor: texts in, calibrated label probabilities out.

``SentimentModel`` is the one object the classify workers hold. Its contract:

* ``encode`` is pure CPU work on numpy (thread-safe) so a worker can tokenise the
  next batch while the previous one runs on the accelerator;
* ``forward`` takes an already-encoded batch and returns float32 probabilities;
* nothing raises on odd input: empty strings, 100 kB documents, control
  characters, CJK and emoji all score (long inputs are flagged ``truncated``).
"""
from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.sentiment.config import ModelConfig
from models.sentiment.device import resolve_device
from models.sentiment.network import (
    SentimentClassifier,
    build_classifier,
    load_classifier,
    tokenizer_file,
)
from models.sentiment.tokenize import Encoded, TextEncoder

__all__ = ["Encoded", "Prediction", "SentimentModel"]


@dataclass(frozen=True)
class Prediction:
    label: str  # one of config.labels
    probabilities: dict[str, float]  # label -> prob
    version: str  # model version
    truncated: bool  # input longer than max_length tokens


class SentimentModel:
    """A loaded classifier plus its tokenizer; see module docstring for the contract."""

    def __init__(
        self,
        network: SentimentClassifier,
        config: ModelConfig,
        tokenizer_path: str | Path,
        backend: str = "fp32",
    ):
        self.config = config
        self.version: str = config.version
        self.labels: tuple[str, ...] = tuple(config.labels)
        self.max_length: int = config.max_length
        self.network = network.eval()
        self.device: torch.device = next(network.parameters()).device
        self.text_encoder = TextEncoder(tokenizer_path, config.max_length)
        self.backend = "fp32"
        self._runner = self._torch_runner
        self._lock = threading.Lock()  # guards backend swaps only
        if backend != "fp32":
            self.set_backend(backend)

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str = "auto", backend: str = "auto"
    ) -> SentimentModel:
        """Load a checkpoint folder. ``backend``: auto|fp32|int8|onnx (CPU only; CUDA
        always runs the torch model in bf16 autocast)."""
        network, cfg = load_classifier(path, device=device)
        model = cls(network, cfg, Path(path) / "tokenizer.json")
        model.set_backend(backend)
        return model

    @classmethod
    def untrained_for_tests(cls, device: str = "cpu", seed: int = 0) -> SentimentModel:
        """Base encoder + random head, version "untrained-test". Never used by the product:
        it exists so tests of the serving path need no trained weights."""
        cfg = ModelConfig(version="untrained-test")
        network = build_classifier(cfg, seed=seed).to(resolve_device(device)).eval()
        return cls(network, cfg, tokenizer_file(cfg.base_model))

    # ---- backends -----------------------------------------------------------------------
    def set_backend(self, backend: str) -> str:
        """Switch the CPU execution backend; returns the one chosen.

        ``auto`` picks per hardware from the measured figures in docs/model.md: on
        CUDA always fp32 weights + bf16 autocast; on CPU ONNX Runtime when available
        (same predictions as fp32, ~1.6x faster), else fp32. int8 is opt-in because it
        changes ~5% of labels (see ``models.sentiment.cpu_backends.pick_cpu_backend``).
        """
        import models.sentiment.cpu_backends as cpu_backends

        with self._lock:
            if self.device.type != "cpu" or backend in ("fp32", "torch"):
                self.backend, self._runner = "fp32", self._torch_runner
                return self.backend
            if backend == "auto":
                backend = cpu_backends.pick_cpu_backend()
            runner = cpu_backends.build_cpu_backend(self.network, backend, self.max_length)
            if runner is None:  # unavailable (e.g. onnxruntime missing): stay on fp32
                self.backend, self._runner = "fp32", self._torch_runner
            else:
                self.backend, self._runner = backend, runner
            return self.backend

    def _torch_runner(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        dev = self.device
        t_ids, t_mask = torch.from_numpy(ids), torch.from_numpy(mask)
        with torch.inference_mode():
            if dev.type == "cuda":
                t_ids = t_ids.pin_memory().to(dev, non_blocking=True)
                t_mask = t_mask.pin_memory().to(dev, non_blocking=True)
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    logits = self.network(t_ids, t_mask)
            else:
                logits = self.network(t_ids.to(dev), t_mask.to(dev))
            return torch.softmax(logits.float(), dim=-1).cpu().numpy()

    # ---- the API ------------------------------------------------------------------------
    def encode(self, texts: Sequence[str]) -> Encoded:
        """Normalise + tokenise (truncating at ``max_length``) into numpy arrays."""
        return self.text_encoder.encode(texts)

    def lengths(self, texts: Sequence[str]) -> np.ndarray:
        """Cheap token counts (after truncation), for length bucketing."""
        return self.text_encoder.lengths(texts)

    def forward(self, enc: Encoded) -> np.ndarray:
        """float32 probabilities [n, n_labels] for an encoded batch."""
        if len(enc) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return np.ascontiguousarray(self._runner(enc.input_ids, enc.attention_mask),
                                    dtype=np.float32)

    def predict_batch(self, texts: Sequence[str]) -> list[Prediction]:
        """encode + forward for one batch; output order = input order."""
        enc = self.encode(texts)
        return self._to_predictions(self.forward(enc), enc.truncated)

    def predict(self, texts: Sequence[str], batch_size: int = 64) -> list[Prediction]:
        """Any number of texts: length-sorted batches (less padding), input order kept."""
        probs, truncated = self.predict_proba(texts, batch_size)
        return self._to_predictions(probs, truncated)

    def predict_proba(
        self, texts: Sequence[str], batch_size: int = 64
    ) -> tuple[np.ndarray, np.ndarray]:
        enc = self.encode(texts)
        n = len(enc)
        probs = np.zeros((n, len(self.labels)), dtype=np.float32)
        order = np.argsort(enc.lengths, kind="stable")
        for s in range(0, n, batch_size):
            idx = order[s : s + batch_size]
            probs[idx] = self.forward(enc.select(idx))
        return probs, enc.truncated

    def _to_predictions(self, probs: np.ndarray, truncated: np.ndarray) -> list[Prediction]:
        labels, version = self.labels, self.version
        top = probs.argmax(1)
        return [
            Prediction(
                label=labels[int(top[i])],
                probabilities={lab: float(p) for lab, p in zip(labels, probs[i], strict=True)},
                version=version,
                truncated=bool(truncated[i]),
            )
            for i in range(len(probs))
        ]
