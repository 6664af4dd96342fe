"""The product's inference worker, built from settings: device, batch shape, threads.

Everything here is a choice about *this host* (CPU or GPU, how many cores, which model
is promoted); ``worker.py`` stays a mechanism that takes explicit numbers, so tests and
the benchmarks build it with other values without settings.
"""
from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from models.sentiment.device import resolve_device
from services.classify.metrics import ClassifyMetrics, classify_metrics
from services.classify.model_watch import ModelWatcher, production_provider
from services.classify.scorer import Scorer
from services.classify.worker import InferenceWorker
from services.core.config import Settings
from services.core.errors import ConfigError


def cpu_parallelism(forward_threads: int, cpus: int | None = None) -> tuple[int, int]:
    """(forward threads, intra-op threads per forward) for CPU inference.

    Several batches side by side, each on fewer threads, beat one batch spread over every
    core: a transformer layer is a chain of small ops, and each op's threads meet at a
    barrier, so on a host shared with the stream stages and the stack a preempted thread
    stalls the others. ``forward_threads`` 0 means auto: one per core up to 4, and the cores
    split between them (2 cores: 2 x 1; 16 cores: 4 x 4). docs/inference.md has the figures.
    """
    import os

    if not cpus:  # the CPUs this process may run on (an affinity mask or cpuset narrows it)
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpus = max(1, cpus or 1)
    f = forward_threads if forward_threads > 0 else min(cpus, 4)
    return f, max(1, cpus // f)


# Longest a partial batch waits behind a running one for company before it is cut (a quiet
# worker with no batch running sends what is pending at once): 50 ms, docs/inference.md.
PARTIAL_BATCH_MAX_WAIT_MS = 50


@asynccontextmanager
async def open_inference_worker(
    settings: Settings, metrics: ClassifyMetrics | None = None
) -> AsyncIterator[InferenceWorker]:
    """The product's worker: the production model (or ``model_path``), followed for hot
    swaps, behind a started worker configured from ``settings``. Raises ModelLoadError
    (saying how to get a model) when there is nothing to serve, ConfigError for a device
    this host does not have.

    Usage in the classify agent::

        async with open_inference_worker(settings) as scorer:
            async for batch in stream.take(n, within=...):
                await scorer.wait_for_room(len(batch))   # backpressure: pauses consumption
                results = await scorer.submit_many([d.text for d in batch])
    """
    metrics = metrics or classify_metrics()
    try:
        device = resolve_device(settings.device)
    except ValueError as e:
        raise ConfigError(f"YUQING_DEVICE: {e}") from e
    cuda = device.startswith("cuda")
    forward_threads = 1
    # CPU: 64-row length-bucketed batches measured ~15% less CPU per text than 256-row ones
    # (less padding, cache-sized activations; docs/inference.md); a GPU wants big batches.
    max_batch = settings.classify_max_batch or (256 if cuda else 64)
    # CPU: cost is per real token, so cut small well-bucketed batches rather than wait to fill
    # a padded one (takes of ~30 texts: padding 29% -> 8%, CPU per text -17%, measured);
    # a GPU runs a padded batch in the time of a full one, so it waits for company.
    max_padding = 0.35 if cuda else 0.1
    if not cuda:
        import torch

        forward_threads, intra = cpu_parallelism(settings.classify_forward_threads)
        # process-wide, before the model loads: the backends size their thread pools from it
        # (restored when the worker closes, for processes that do more than serve)
        threads_before = torch.get_num_threads()
        torch.set_num_threads(intra)
    provider = await production_provider(
        settings.model_registry, settings.model_path, device=device,
        backend=settings.classify_backend, poll_s=settings.model_poll_s, metrics=metrics,
    )
    worker = InferenceWorker(
        provider,
        max_batch=max_batch,
        max_wait_ms=PARTIAL_BATCH_MAX_WAIT_MS,
        compile_mode=settings.classify_compile,
        forward_threads=forward_threads,
        max_padding=max_padding,
        metrics=metrics,
    )
    try:
        await worker.start()
        yield worker
    finally:
        await worker.stop()
        if isinstance(provider, ModelWatcher):
            await provider.stop()
        if not cuda:
            import torch

            torch.set_num_threads(threads_before)


async def open_scorer(settings: Settings) -> tuple[Scorer, contextlib.AsyncExitStack]:
    """The inference worker serving the registry's production model (or ``model_path``), and
    the stack that stops it.

    Fails with ModelLoadError (whose message says how to get a model) when there is none:
    the product never falls back to an untrained head.
    """
    stack = contextlib.AsyncExitStack()
    try:
        worker = await stack.enter_async_context(open_inference_worker(settings))
    except BaseException:
        await stack.aclose()
        raise
    return worker, stack
