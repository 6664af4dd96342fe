"""How one collated batch runs on the device: ``runner(ids, lengths) -> float32 probs``.

CPU: the model's own ``forward`` (its backend — fp32, int8 dynamic quantisation or ONNX
Runtime — is chosen by ``SentimentModel.set_backend``; see docs/inference.md for figures).

CUDA: a private bf16 copy of the network (bf16 weights beat fp32 weights under autocast:
no per-op casts, half the weight reads), ids copied from pinned host memory with
``non_blocking`` on a side stream, the attention mask built on the device from the lengths
(half the host-to-device bytes), and the sequence dimension padded to a multiple of 8 for
tensor cores. ``compile_mode`` (e.g. ``"reduce-overhead"``, which uses CUDA graphs) is
optional: it pays only when Python dispatch, not the GPU, bounds a batch; measure with
``bench/gpu_check.sh`` before turning it on.
"""
from __future__ import annotations

import copy
import logging
from typing import Any, Protocol

import numpy as np

from models.sentiment import Encoded, SentimentModel

log = logging.getLogger(__name__)


class Runner(Protocol):
    pad_to: int

    def __call__(self, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray: ...

    def with_hidden(self, ids: np.ndarray,
                    lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities [n, labels], last hidden states [n, L, H] float32) from one pass:
        the entity head reads the hidden states."""
        ...


class ModelForward:
    """The model's own forward (CPU, or CUDA without the tuned path)."""

    pad_to = 1

    def __init__(self, model: SentimentModel) -> None:
        self.model = model

    def _enc(self, ids: np.ndarray, lengths: np.ndarray) -> Encoded:
        mask = (np.arange(ids.shape[1])[None, :] < lengths[:, None]).astype(np.int64)
        return Encoded(ids, mask, lengths, np.zeros(len(ids), dtype=bool))

    def __call__(self, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        return self.model.forward(self._enc(ids, lengths))

    def with_hidden(self, ids: np.ndarray,
                    lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.model.forward_hidden(self._enc(ids, lengths))


class CudaForward:
    pad_to = 8

    def __init__(self, model: SentimentModel, dtype: str = "bfloat16",
                 compile_mode: str | None = None) -> None:
        import torch

        self.torch = torch
        self.device = model.device
        self.dtype = getattr(torch, dtype)
        net: Any = copy.deepcopy(model.network).to(self.device, dtype=self.dtype).eval()
        if compile_mode:
            net = torch.compile(net, mode=compile_mode, dynamic=True)
        self.net = net
        self.stream = torch.cuda.Stream(device=self.device)

    def __call__(self, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        return self._run(ids, lengths, hidden=False)[0]

    def with_hidden(self, ids: np.ndarray,
                    lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probs, hidden = self._run(ids, lengths, hidden=True)
        assert hidden is not None
        return probs, hidden

    def _run(self, ids: np.ndarray, lengths: np.ndarray,
             hidden: bool) -> tuple[np.ndarray, np.ndarray | None]:
        torch = self.torch
        with torch.inference_mode(), torch.cuda.stream(self.stream):
            h_ids = torch.from_numpy(ids).pin_memory()
            h_len = torch.from_numpy(lengths.astype(np.int64)).pin_memory()
            d_ids = h_ids.to(self.device, non_blocking=True)
            d_len = h_len.to(self.device, non_blocking=True)
            mask = (torch.arange(ids.shape[1], device=self.device)[None, :] < d_len[:, None])
            h_out = None
            if hidden:  # same pass: the network returns the states its head pooled
                logits, states = self.net.forward_with_hidden(d_ids, mask.to(torch.int64))
                h_out = torch.empty(states.shape, dtype=torch.float32, pin_memory=True)
                h_out.copy_(states.float(), non_blocking=True)
            else:
                logits = self.net(d_ids, mask.to(torch.int64))
            probs = torch.softmax(logits.float(), dim=-1)
            out = torch.empty(probs.shape, dtype=torch.float32, pin_memory=True)
            out.copy_(probs, non_blocking=True)
            self.stream.synchronize()
        return out.numpy(), (h_out.numpy() if h_out is not None else None)


def make_runner(model: SentimentModel, *, cuda_dtype: str = "bfloat16",
                compile_mode: str | None = None) -> Runner:
    if model.device.type == "cuda":
        try:
            return CudaForward(model, dtype=cuda_dtype, compile_mode=compile_mode)
        except Exception:  # e.g. torch.compile unavailable: the model's own forward still works
            log.exception("tuned CUDA path unavailable; using model.forward")
    return ModelForward(model)


def warm_up(runner: Runner, max_batch: int, max_length: int) -> None:
    """Run a few representative shapes so the first real batch pays no allocation or
    autotuning cost (cuDNN/cuBLAS heuristics, the caching allocators, compiled graphs)."""
    for n, length in ((1, 8), (min(max_batch, 64), 16), (max_batch, min(32, max_length)),
                      (max(1, max_batch // 4), max_length)):
        ids = np.full((n, length), 1000, dtype=np.int64)
        runner(ids, np.full(n, length, dtype=np.int32))
