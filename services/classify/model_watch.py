"""Which model serves, and hot swaps when the registry's production pointer moves.

The worker asks its provider for ``current()`` once per batch, so a swap lands *between*
batches: every item is scored exactly once, by one model, and carries that model's
version. A new version is loaded and warmed up off the event loop while the old one keeps
serving; if loading fails, the failure is logged and counted, the old model stays, and the
same broken version is not retried until the pointer changes again.

One watcher per language (``registry_pointer(root, language)``: ``production.json`` for
English, ``production-<lang>.json`` for the others), each swapping its own model; the
classify worker routes documents between them (``services.classify.router``).

The product never serves an untrained head: with no production model at all, start-up
raises :class:`ModelLoadError` that says how to get one. A language whose pointer is absent
may start empty (``ModelWatcher.start(required=False)``): it is logged once, its documents
follow the fallback, and the watcher loads the model as soon as the pointer appears.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from models.registry import ModelRef, RegistryError, production
from models.sentiment import SentimentModel
from services.classify.metrics import ClassifyMetrics
from services.core.errors import ModelLoadError

log = logging.getLogger(__name__)

HOW_TO_GET_A_MODEL = (
    "install the shipped one with `make model` (or `python -m models.ship install`), "
    "or point YUQING_MODEL_PATH at a checkpoint folder"
)


class ModelProvider(Protocol):
    def current(self) -> SentimentModel: ...


class StaticModel:
    """Always the same model (tests, benchmarks, ``YUQING_MODEL_PATH``)."""

    def __init__(self, model: SentimentModel) -> None:
        self.model = model

    loaded = True

    def current(self) -> SentimentModel:
        return self.model


def registry_pointer(registry: Path, language: str = "en") -> Callable[[], ModelRef | None]:
    """A function returning the registry's production version of ``language``
    (``models.registry``), or ``None`` if nothing is promoted for it yet. A corrupt pointer
    or production folder raises ModelLoadError (a running watcher then keeps its model)."""
    root = Path(registry)

    def read() -> ModelRef | None:
        try:
            return production(root, language)
        except RegistryError as e:
            raise ModelLoadError(str(e)) from e

    return read


def load_checkpoint(ref: ModelRef, device: str = "auto", backend: str = "auto") -> SentimentModel:
    """Load and warm up ``ref``; every failure becomes a ModelLoadError naming the folder."""
    try:
        model = SentimentModel.from_checkpoint(ref.path, device=device, backend=backend)
        model.predict_batch(["warm-up", "the model answers before it is swapped in"])
    except ModelLoadError:
        raise
    except Exception as e:  # corrupt weights, missing files, CUDA OOM...
        raise ModelLoadError(f"cannot load model {ref.version} from {ref.path}: {e}") from e
    if ref.version not in ("?", model.version):
        log.warning("registry says version %s but %s/yuqing_model.json says %s; serving as %s",
                    ref.version, ref.path, model.version, model.version)
    return model


class ModelWatcher:
    """Serves the production model and follows the pointer (see module docstring)."""

    def __init__(
        self,
        pointer: Callable[[], ModelRef | None],
        load: Callable[[ModelRef], SentimentModel],
        poll_s: float = 5.0,
        metrics: ClassifyMetrics | None = None,
        describe: str = "the model registry",
        language: str = "en",
    ) -> None:
        self._pointer = pointer
        self._load = load
        self.poll_s = poll_s
        self.metrics = metrics
        self.describe = describe
        self.language = language  # the pointer's language (metrics, log lines)
        self._model: SentimentModel | None = None
        self._ref: ModelRef | None = None
        self._failed: ModelRef | None = None
        self.last_error: str | None = None
        self.swaps = 0
        self._task: asyncio.Task[None] | None = None

    def current(self) -> SentimentModel:
        if self._model is None:
            raise ModelLoadError("no model loaded yet: await ModelWatcher.start() first")
        return self._model

    @property
    def loaded(self) -> bool:
        """Whether a model serves (False only after ``start(required=False)`` found none)."""
        return self._model is not None

    @property
    def ref(self) -> ModelRef | None:
        return self._ref

    async def start(self, required: bool = True) -> SentimentModel | None:
        """Load the production model and start polling. No pointer: ModelLoadError saying
        how to get a model, or with ``required=False`` None (polling still starts, and the
        model is loaded when the pointer appears). A broken one: ModelLoadError."""
        ref = await asyncio.to_thread(self._pointer)
        model = None
        if ref is None:
            if required:
                raise ModelLoadError(
                    f"no production model in {self.describe}: {HOW_TO_GET_A_MODEL}")
        else:
            model = await asyncio.to_thread(self._load, ref)
            self._install(ref, model)
        if self.poll_s > 0:
            self._task = asyncio.create_task(self._poll(),
                                             name=f"yuqing-model-watch-{self.language}")
        return model

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def check_once(self) -> bool:
        """Look at the pointer once; swap if it moved. True if a swap happened."""
        try:
            ref = await asyncio.to_thread(self._pointer)
        except Exception as e:  # unreadable pointer: keep serving; report each new error once
            if str(e) != self.last_error:
                self._report(None, e)
            return False
        if ref is None or ref == self._ref or ref == self._failed:
            return False
        t0 = time.perf_counter()
        try:
            model = await asyncio.to_thread(self._load, ref)
        except Exception as e:
            self._report(ref, e)
            return False
        old = self._ref
        self._install(ref, model)
        self.swaps += 1
        if self.metrics is not None:
            self.metrics.model_swaps.inc()
        log.info("%s model swapped %s -> %s (loaded in %.1fs)", self.language,
                 old.version if old else None, ref.version, time.perf_counter() - t0)
        return True

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            await self.check_once()

    def _install(self, ref: ModelRef, model: SentimentModel) -> None:
        self._model, self._ref, self._failed, self.last_error = model, ref, None, None
        if self.metrics is not None:
            self.metrics.set_model(model.version, getattr(model, "backend", "?"),
                                   str(model.device), self.language)

    def _report(self, ref: ModelRef | None, e: BaseException) -> None:
        self._failed = ref
        self.last_error = str(e)
        if self.metrics is not None:
            self.metrics.model_load_failures.inc()
        serving = self._ref.version if self._ref else None
        log.error("%s model %s failed to load, still serving %s: %s", self.language,
                  ref.version if ref else "pointer", serving, e)


async def production_provider(
    registry: Path,
    model_path: Path | None,
    device: str = "auto",
    backend: str = "auto",
    poll_s: float = 5.0,
    metrics: ClassifyMetrics | None = None,
    language: str = "en",
    required: bool = True,
) -> StaticModel | ModelWatcher:
    """What the product serves for ``language``: a fixed checkpoint if ``model_path`` is set,
    else the registry's production version of that language, followed by a started
    :class:`ModelWatcher` (not ``required``: possibly empty until the pointer appears)."""
    if model_path is not None:
        ref = ModelRef(version="?", path=Path(model_path))
        model = await asyncio.to_thread(load_checkpoint, ref, device, backend)
        if metrics is not None:
            metrics.set_model(model.version, getattr(model, "backend", "?"), str(model.device),
                              model.config.language)
        return StaticModel(model)
    watcher = ModelWatcher(
        registry_pointer(registry, language),
        lambda ref: load_checkpoint(ref, device, backend),
        poll_s=poll_s,
        metrics=metrics,
        describe=f"the registry {registry}" + ("" if language == "en" else f" for {language}"),
        language=language,
    )
    await watcher.start(required=required)
    return watcher
