"""The one batch loop every agent runs: take a time-bounded batch, make it durable, ask again.

Faust acks a ``take_events`` batch when the agent asks for the next one, so the whole of the
no-loss rule is in the order of this loop: ``handle`` returns only when the batch's effects
are durable (``services.stream.effects``), and only then is the next batch taken. Every
agent uses this loop, so that rule is written once.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import faust

from services.stream.effects import finish_batch

# The three sinks of docs.scored (trends, index, alerts) take up to SINK_TAKE documents and
# wait at most SINK_MAX_WAIT_S for a batch to fill: one bulk request / one Redis round trip
# per take; at full load takes fill by count, when quiet the bound keeps latency low
# (docs/pipeline.md, p99 produce->searchable at half load).
SINK_TAKE = 500
SINK_MAX_WAIT_S = 0.150


async def run_batches(stream: faust.StreamT, stage: str,
                      handle: Callable[[list], Awaitable[Any]], *, take: int, within_s: float,
                      grace_s: float,
                      after: Callable[[], Awaitable[None]] | None = None) -> int:
    """Run ``handle(events)`` on each batch until the stream ends; returns the sum of what
    ``handle`` returned (ints; None counts 0). ``after`` runs between batches (e.g. waiting
    for room in the inference queue before taking more)."""
    total = 0
    async for events in stream.take_events(take, within=within_s):
        total += await finish_batch(stage, handle(events), grace_s) or 0
        if after is not None:
            await after()
    return total
