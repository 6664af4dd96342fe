"""The one place ``device="auto"`` becomes a concrete device.

Serving, training and the benchmarks all accept ``auto``; resolving it in one function
means they agree on what a host has, and a typo or a CUDA request on a CPU-only host
fails here with a message instead of deep inside torch when the first tensor moves.
"""
from __future__ import annotations

import re

_CUDA = re.compile(r"^cuda(:\d+)?$")


def resolve_device(requested: str) -> str:
    """``"cpu"``, ``"cuda"`` or ``"cuda:N"`` for ``requested`` (``auto``, ``cpu``, ``cuda``,
    ``cuda:N``). Raises ValueError for anything else, or for CUDA on a host without it."""
    value = str(requested).strip().lower()
    if value == "cpu":
        return "cpu"
    if value != "auto" and not _CUDA.match(value):
        raise ValueError(f"unknown device {requested!r}: use auto, cpu, cuda or cuda:N")
    import torch  # here, not at import: resolving "cpu" must not need torch

    if value == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available():
        raise ValueError(f"device {requested!r} requested but CUDA is not available on this host")
    return value
