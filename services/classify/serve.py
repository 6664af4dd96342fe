"""The product's scorer, built from settings: languages and their models, device, batch
shape, threads.

Everything here is a choice about *this host* (CPU or GPU, how many cores, which model
is promoted); ``worker.py`` stays a mechanism that takes explicit numbers, so tests and
the benchmarks build it with other values without settings.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from models.sentiment.device import resolve_device
from services.classify.metrics import ClassifyMetrics, classify_metrics
from services.classify.model_watch import (
    HOW_TO_GET_A_MODEL,
    ModelProvider,
    ModelWatcher,
    production_provider,
)
from services.classify.router import LanguageRouter
from services.classify.scorer import Scorer
from services.classify.worker import InferenceWorker
from services.core.config import Settings
from services.core.errors import ConfigError, ModelLoadError

log = logging.getLogger(__name__)


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
) -> AsyncIterator[LanguageRouter]:
    """The product's scorer: one worker per language of ``languages``, each serving that
    language's production model (followed for hot swaps), behind a started
    :class:`~services.classify.router.LanguageRouter` configured from ``settings``. With
    ``model_path``, that one checkpoint serves its own language and the others follow the
    fallback. Raises ModelLoadError (saying how to get a model) when no language has a model,
    ConfigError for a device this host does not have.

    Usage in the classify agent::

        async with open_inference_worker(settings) as scorer:
            async for batch in stream.take(n, within=...):
                await scorer.wait_for_room(len(batch))   # backpressure: pauses consumption
                results = await scorer.submit_many([d.text for d in batch], None, langs)
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

    def make_worker(provider: ModelProvider) -> InferenceWorker:
        return InferenceWorker(
            provider,
            max_batch=max_batch,
            max_wait_ms=PARTIAL_BATCH_MAX_WAIT_MS,
            compile_mode=settings.classify_compile,
            forward_threads=forward_threads,
            max_padding=max_padding,
            metrics=metrics,
        )

    providers: dict[str, ModelProvider] = {}
    try:
        providers.update(await language_providers(settings, device, metrics))
        router = LanguageRouter(providers, make_worker, settings.fallback_language, metrics)
        try:
            await router.start()
            yield router
        finally:
            await router.stop()
    finally:
        for provider in providers.values():
            if isinstance(provider, ModelWatcher):
                await provider.stop()
        if not cuda:
            import torch

            torch.set_num_threads(threads_before)


async def language_providers(settings: Settings, device: str,
                             metrics: ClassifyMetrics | None = None) -> dict[str, ModelProvider]:
    """Per language, what serves it: ``model_path``'s checkpoint for its own language only;
    else a started watcher on each configured language's production pointer. A language with
    no pointer yet is logged (once) and served as soon as one appears; with none for any
    language, ModelLoadError says how to get a model."""
    common = dict(device=device, backend=settings.classify_backend, poll_s=settings.model_poll_s,
                  metrics=metrics)
    if settings.model_path is not None:
        fixed = await production_provider(settings.model_registry, settings.model_path, **common)
        return {fixed.current().config.language: fixed}
    out: dict[str, ModelProvider] = {}
    try:
        for lang in settings.language_list:
            try:
                watcher = await production_provider(settings.model_registry, None, **common,
                                                    language=lang, required=False)
            except ModelLoadError as e:
                # one broken language (a corrupt zh pointer or checkpoint) must not stop the
                # others: its documents follow the fallback until it is fixed and restarted
                if len(settings.language_list) == 1:
                    raise
                log.error("language %s not served: %s; its documents follow the fallback "
                          "(fix the model, then restart the classify role)", lang, e)
                continue
            out[lang] = watcher
        missing = [lang for lang, p in out.items() if not p.loaded]  # type: ignore[attr-defined]
        missing += [lang for lang in settings.language_list if lang not in out]
        if len(missing) == len(settings.language_list):
            raise ModelLoadError(
                f"no production model for {', '.join(missing)} in the registry "
                f"{settings.model_registry}: {HOW_TO_GET_A_MODEL}")
    except BaseException:
        for p in out.values():
            if isinstance(p, ModelWatcher):
                await p.stop()
        raise
    fallback = settings.fallback_language
    for lang in missing:
        follow = (f"scored by the {fallback} model" if fallback and fallback not in missing
                  else "dead-lettered (reason no_model)")
        log.warning("no production model for language %s in %s: its documents are %s until "
                    "one is promoted (hot-loaded); run `make model` to install the shipped "
                    "models", lang, settings.model_registry, follow)
    return out


async def open_scorer(settings: Settings) -> tuple[Scorer, contextlib.AsyncExitStack]:
    """The scorer serving the registry's production model of each language (or
    ``model_path``), and the stack that stops it.

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
