"""The one retry delay: exponential with "equal jitter".

Half of each delay is fixed and half random, so retries still grow (a struggling backend gets
air) but replicas that failed together do not retry in lockstep. Used by the Elasticsearch
bulk writer and by webhook delivery.
"""
from __future__ import annotations

import random


def backoff_s(attempt: int, base_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Delay before try ``attempt + 1`` after ``attempt`` failed tries (0 before the first)."""
    if attempt < 1:
        return 0.0
    cap = min(max_s, base_s * (2 ** (attempt - 1)))
    r = (rng or random).random()
    return cap / 2 + r * cap / 2
