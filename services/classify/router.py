"""One model per language: the classify agent's scorer routes each text to its language's
inference worker.

Each configured language has a provider (a :class:`~services.classify.model_watch.ModelWatcher`
on that language's production pointer, hot-swapping on its own) and, once the provider has a
model, an :class:`~services.classify.worker.InferenceWorker` of its own: its own pending pool,
so every batch holds one model's rows (one forward per language group), its own tokenizer
and runner. A micro-batch is split by :func:`models.routing.group_by_model` (each text's
language: its own model, else the fallback language's, else none), the groups are submitted
side by side and the results put back in input order. A text with no model gets a
:class:`ScoreError` ``no_model`` (the agent dead-letters it with the reason: nothing is
dropped); a text scored by the fallback model says so (``Scored.model_language`` differs
from its language, and the agent stamps ``sentiment.fallback``).

When every text of a call goes to one model (English-only traffic) the call goes straight to
that worker: the only added cost is grouping the languages.

A language whose model was absent at start-up starts serving when its pointer appears (its
watcher loads the model; the first text routed to it starts its worker); until then its texts
follow the fallback.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence

from models.lang import UNDETERMINED, detect_language
from models.routing import NO_MODEL, group_by_model, no_model_reason
from models.sentiment import SentimentModel
from services.classify.metrics import ClassifyMetrics
from services.classify.model_watch import ModelProvider
from services.classify.scorer import EntitySpans, Result, ScoreError
from services.classify.worker import InferenceWorker
from services.core.errors import ModelError

log = logging.getLogger(__name__)


def text_languages(texts: Sequence[object]) -> list[str]:
    """Each text's language by its script (for callers that pass no ``langs``)."""
    return [detect_language(t) if isinstance(t, str) else UNDETERMINED for t in texts]


def _loaded(provider: ModelProvider) -> bool:
    return bool(getattr(provider, "loaded", True))


class LanguageRouter:
    """A :class:`~services.classify.scorer.Scorer` over one inference worker per language."""

    def __init__(self, providers: Mapping[str, ModelProvider],
                 make_worker: Callable[[ModelProvider], InferenceWorker],
                 fallback: str | None, metrics: ClassifyMetrics) -> None:
        if not providers:
            raise ValueError("a LanguageRouter needs at least one language")
        self.providers = dict(providers)
        self.fallback = fallback
        self.metrics = metrics
        self._make_worker = make_worker
        self.workers: dict[str, InferenceWorker] = {}
        self._lock = asyncio.Lock()
        self._stopping = False

    # ---- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        """Start the workers of the languages that have a model now."""
        for lang in self.serving():
            await self._worker(lang)

    async def stop(self, grace_s: float = 30.0) -> None:
        self._stopping = True
        async with self._lock:
            workers = list(self.workers.values())
        await asyncio.gather(*(w.stop(grace_s) for w in workers))

    async def __aenter__(self) -> LanguageRouter:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- what serves --------------------------------------------------------------------
    def serving(self) -> tuple[str, ...]:
        """Languages with a model now (in the configured order)."""
        return tuple(lang for lang, p in self.providers.items() if _loaded(p))

    def model(self, language: str) -> SentimentModel | None:
        """The model serving ``language`` now, if any."""
        p = self.providers.get(language)
        return p.current() if p is not None and _loaded(p) else None

    async def _worker(self, lang: str) -> InferenceWorker:
        w = self.workers.get(lang)
        if w is not None:
            return w
        async with self._lock:  # a language's first text (or start): build its worker once
            w = self.workers.get(lang)
            if w is None:
                if self._stopping:
                    raise ModelError("inference worker is stopping")
                w = self._make_worker(self.providers[lang])
                await w.start()
                self.workers[lang] = w
                if len(self.providers) > 1:
                    log.info("classify: the %s model serves (%s)", lang,
                             w.provider.current().version)
            return w

    # ---- the Scorer API -----------------------------------------------------------------
    @property
    def queue_depth(self) -> int:
        return sum(w.queue_depth for w in self.workers.values())

    @property
    def queue_full(self) -> bool:
        return any(w.queue_full for w in self.workers.values())

    async def wait_for_room(self, n: int = 1) -> None:
        """Room for ``n`` more in every language's queue: the next take's languages are not
        known yet, so a saturated model of either pauses consumption."""
        for w in list(self.workers.values()):
            await w.wait_for_room(n)

    async def submit_many(self, texts: Sequence[str],
                          spans: Sequence[EntitySpans | None] | None = None,
                          langs: Sequence[str] | None = None) -> list[Result]:
        """See :class:`~services.classify.scorer.Scorer`; ``langs`` None: by script."""
        n = len(texts)
        if spans is not None and len(spans) != n:
            raise ValueError(f"{len(spans)} span lists for {n} texts")
        if langs is None:
            langs = text_languages(texts)
        elif len(langs) != n:
            raise ValueError(f"{len(langs)} languages for {n} texts")
        if n == 0:
            return []
        groups = group_by_model(langs, self.serving(), self.fallback)
        if len(groups) == 1:
            (target,) = groups
            if target is not None:  # one model for the whole call (e.g. only English)
                return await (await self._worker(target)).submit_many(texts, spans)
        results: list[Result | None] = [None] * n

        async def run(target: str | None, idx: list[int]) -> None:
            if target is None:
                for i in idx:
                    results[i] = ScoreError(NO_MODEL, no_model_reason(langs[i], self.fallback))
                self.metrics.item_errors.labels(reason=NO_MODEL).inc(len(idx))
                return
            worker = await self._worker(target)
            part = await worker.submit_many([texts[i] for i in idx],
                                            None if spans is None else [spans[i] for i in idx])
            for i, r in zip(idx, part, strict=True):
                results[i] = r

        outcomes = await asyncio.gather(*(run(t, idx) for t, idx in groups.items()),
                                        return_exceptions=True)
        for out in outcomes:  # a group failed as a whole: so does the call (callers retry)
            if isinstance(out, BaseException):
                raise out
        return results  # type: ignore[return-value]
