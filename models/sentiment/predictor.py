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
        self.text_encoder = TextEncoder(tokenizer_path, config.max_length,
                                        getattr(config, "language", "en"))
        self.backend = "fp32"
        self._runner = self._torch_runner
        self._hidden_runner = self._torch_hidden
        self.entity_head: tuple[np.ndarray, np.ndarray] | None = None  # (weight, bias)
        self.entity_pair = None  # models.sentiment.entity_pair.EntityPairScorer, when shipped
        self._doc_head: tuple[np.ndarray, np.ndarray] | None = None
        self._lock = threading.Lock()  # guards backend swaps only
        if backend != "fp32":
            self.set_backend(backend)

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str = "auto", backend: str = "auto"
    ) -> SentimentModel:
        """Load a checkpoint folder. ``backend``: auto|fp32|int8|onnx|onnx-int8|onnx-int8-ffn
        (CPU only; CUDA always runs the torch model in bf16 autocast)."""
        from models.sentiment.entities import EntityHead
        from models.sentiment.entity_pair import EntityPairScorer

        network, cfg = load_classifier(path, device=device)
        model = cls(network, cfg, Path(path) / "tokenizer.json")
        model.set_entity_head(EntityHead.load(path))
        if model.entity_head is not None:
            model.entity_pair = EntityPairScorer.load(path, network.encoder,
                                                      model.text_encoder.normalize)
        model.set_backend(backend)
        return model

    def set_entity_head(self, head) -> None:
        """Attach an :class:`~models.sentiment.entities.EntityHead` (or None)."""
        self.entity_head = None if head is None else (
            head.head.weight.detach().float().cpu().numpy(),
            head.head.bias.detach().float().cpu().numpy())

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
        CUDA always fp32 weights + bf16 autocast; on CPU the model's own measured choice
        (``config.cpu_backend``, e.g. ``onnx-int8`` for the Chinese model), else ONNX
        Runtime when available (same predictions as fp32, ~1.6x faster), else fp32. int8 is
        opt-in because it changes labels (see ``cpu_backends.pick_cpu_backend``).
        """
        import models.sentiment.cpu_backends as cpu_backends

        with self._lock:
            if self.device.type != "cpu" or backend in ("fp32", "torch"):
                self.backend, self._runner = "fp32", self._torch_runner
                self._hidden_runner = self._torch_hidden
                return self.backend
            if backend == "auto":
                backend = cpu_backends.pick_cpu_backend(getattr(self.config, "cpu_backend", None))
            runner = cpu_backends.build_cpu_backend(self.network, backend, self.max_length)
            if runner is None:  # unavailable (e.g. onnxruntime missing): stay on fp32
                self.backend, self._runner = "fp32", self._torch_runner
                self._hidden_runner = self._torch_hidden
            else:
                self.backend, self._runner = getattr(runner, "name", None) or backend, runner
                self._hidden_runner = runner.hidden
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

    def _torch_hidden(self, ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dev = self.device
        with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16,
                                                    enabled=dev.type == "cuda"):
            logits, hidden = self.network.forward_with_hidden(
                torch.from_numpy(ids).to(dev), torch.from_numpy(mask).to(dev))
            return (torch.softmax(logits.float(), dim=-1).cpu().numpy(),
                    hidden.float().cpu().numpy())

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

    def forward_hidden(self, enc: Encoded) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities [n, labels], last hidden states [n, L, H]) from one forward pass."""
        if len(enc) == 0:
            h = self.config.hidden_size
            return (np.zeros((0, len(self.labels)), np.float32),
                    np.zeros((0, 0, h), np.float32))
        probs, hidden = self._hidden_runner(enc.input_ids, enc.attention_mask)
        return (np.ascontiguousarray(probs, dtype=np.float32),
                np.ascontiguousarray(hidden, dtype=np.float32))

    # ---- entity level -------------------------------------------------------------------
    def entity_token_sets(self, text: str, char_spans: Sequence[Sequence[tuple[int, int]]]
                          ) -> list[np.ndarray]:
        """Token positions of each entity's mentions (``char_spans``: per entity, its
        [start, end) spans in ``text``) after normalisation and truncation."""
        from models.sentiment.entities import map_spans, token_sets

        normalize = self.text_encoder.normalize
        norm = normalize(text)
        mapped = [map_spans(text, spans, norm, normalize)[1] for spans in char_spans]
        offsets, special = self.text_encoder.offsets(norm)
        return token_sets(offsets, special, mapped)

    def entity_probs(self, hidden_row: np.ndarray, length: int,
                     sets: Sequence[np.ndarray]) -> np.ndarray:
        """Per-entity probabilities [k, labels] from one document's hidden states; without
        an entity head (or for an entity with no tokens) the document's own probabilities."""
        from models.sentiment.entities import entity_logits_np

        k = len(sets)
        h = hidden_row[:length]
        if self.entity_head is None:
            doc = self._doc_probs_from_hidden(h)
            return np.repeat(doc[None], k, 0)
        logits = entity_logits_np(*self.entity_head, h, length, sets)
        e = np.exp(logits - logits.max(1, keepdims=True))
        probs = (e / e.sum(1, keepdims=True)).astype(np.float32)
        empty = [i for i, rows in enumerate(sets) if len(rows) == 0]
        if empty:
            probs[empty] = self._doc_probs_from_hidden(h)
        return probs

    def _doc_probs_from_hidden(self, h: np.ndarray) -> np.ndarray:
        if self._doc_head is None:  # the network never changes under a SentimentModel
            self._doc_head = (self.network.head.weight.detach().float().cpu().numpy(),
                              self.network.head.bias.detach().float().cpu().numpy())
        w, b = self._doc_head
        logits = h.mean(0) @ w.T + b
        e = np.exp(logits - logits.max())
        return (e / e.sum()).astype(np.float32)

    def predict_entities(self, texts: Sequence[str],
                         spans: Sequence[Sequence[Sequence[tuple[int, int]]]],
                         batch_size: int = 64) -> tuple[np.ndarray, list[np.ndarray]]:
        """Document probabilities [n, labels] and, per text, [k_i, labels] for its entities
        (``spans[i][j]``: the character spans of entity j in text i), one forward each (and,
        with an entity pair model, a pair pass for the entities of likely-negative texts)."""
        enc = self.encode(texts)
        n = len(enc)
        probs = np.zeros((n, len(self.labels)), dtype=np.float32)
        ents: list[np.ndarray] = [np.zeros((0, len(self.labels)), np.float32)] * n
        order = np.argsort(enc.lengths, kind="stable")
        for s in range(0, n, batch_size):
            idx = order[s : s + batch_size]
            b = enc.select(idx)
            p, hidden = self.forward_hidden(b)
            probs[idx] = p
            with_spans = []
            for j, i in enumerate(idx.tolist()):
                if spans[i]:
                    sets = self.entity_token_sets(texts[i], spans[i])
                    ents[i] = self.entity_probs(hidden[j], int(b.lengths[j]), sets)
                    with_spans.append((i, j))
            if self.entity_pair is not None and with_spans:  # one pair call per batch
                got = self.entity_pair.score_documents(
                    [(texts[i], spans[i], p[j], ents[i]) for i, j in with_spans], self.labels)
                for (i, _), (e, _) in zip(with_spans, got, strict=True):
                    ents[i] = e
        return probs, ents

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
