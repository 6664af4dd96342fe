"""CPU execution backends (placeholder until measured)."""
from __future__ import annotations


def pick_cpu_backend() -> str:
    return "fp32"


def make_runner(network, backend: str, max_length: int):
    return None
