"""Prometheus metrics of the inference worker.

One :class:`ClassifyMetrics` per Prometheus registry (several workers in one process share
it; tests pass their own ``CollectorRegistry``). Sequences/s is ``rate()`` of the counter on
the Prometheus side; the gauge holds the rate of the last batch for dashboards without
PromQL.
"""
from __future__ import annotations

import threading
import weakref

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, Info

_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
_TOKEN_BUCKETS = (64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072)
_RATIO_BUCKETS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ClassifyMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.batch_size = Histogram("yuqing_classify_batch_size", "Items per inference batch.",
                                    buckets=_BATCH_BUCKETS, registry=r)
        self.batch_tokens = Histogram("yuqing_classify_batch_tokens",
                                      "Padded tokens (items x longest) per inference batch.",
                                      buckets=_TOKEN_BUCKETS, registry=r)
        self.padding_ratio = Histogram("yuqing_classify_padding_ratio",
                                       "Share of a batch's token slots that are padding.",
                                       buckets=_RATIO_BUCKETS, registry=r)
        self.batch_latency = Histogram("yuqing_classify_batch_seconds",
                                       "Forward pass time per batch (collate + model + copy back).",
                                       buckets=_LATENCY_BUCKETS, registry=r)
        self.item_latency = Histogram("yuqing_classify_item_seconds",
                                      "Time from submit to result, per item (observed per batch).",
                                      buckets=_LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("yuqing_classify_queue_depth",
                                 "Items submitted and not yet scored.", registry=r)
        self.queue_capacity = Gauge("yuqing_classify_queue_capacity",
                                    "Bounded queue size; consumption pauses at this depth.",
                                    registry=r)
        self.sequences = Counter("yuqing_classify_sequences",
                                 "Items scored (rate() gives sequences/s).", registry=r)
        self.sequences_per_s = Gauge("yuqing_classify_sequences_per_second",
                                     "Throughput of the last batch.", registry=r)
        self.item_errors = Counter("yuqing_classify_item_errors",
                                   "Items answered with an error instead of a score.", ["reason"],
                                   registry=r)
        self.batch_failures = Counter("yuqing_classify_batch_failures",
                                      "Batches that raised and were bisected to find the bad item.",
                                      registry=r)
        self.cache_hits = Counter("yuqing_classify_text_cache_hits",
                                  "Texts served from the tokenisation cache.", registry=r)
        self.backpressure_waits = Counter("yuqing_classify_backpressure_waits",
                                          "Times a caller waited for room in the queue.",
                                          registry=r)
        self.model = Info("yuqing_classify_model", "Model currently serving, per language.",
                          ["language"], registry=r)
        self.model_loaded = Gauge("yuqing_classify_model_loaded",
                                  "1 for the version serving each language now.",
                                  ["language", "version"], registry=r)
        self._serving: dict[str, str] = {}  # language -> version with a model_loaded series
        self._serving_lock = threading.Lock()
        self.model_swaps = Counter("yuqing_classify_model_swaps", "Hot swaps done.", registry=r)
        self.model_load_failures = Counter("yuqing_classify_model_load_failures",
                                           "Model versions that failed to load (old one kept).",
                                           registry=r)

    def set_model(self, version: str, backend: str, device: str, language: str = "en") -> None:
        """``version`` serves ``language`` now (the one before it for that language is gone)."""
        self.model.labels(language=language).info(
            {"version": version, "backend": backend, "device": device})
        with self._serving_lock:
            old = self._serving.get(language)
            if old is not None and old != version:
                self.model_loaded.remove(language, old)
            self._serving[language] = version
        self.model_loaded.labels(language=language, version=version).set(1)


# Keyed by the registry object itself, weakly: keying by id() returned a dead registry's
# metrics (with its counts) when a new registry happened to reuse the address.
_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, ClassifyMetrics] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def classify_metrics(registry: CollectorRegistry | None = None) -> ClassifyMetrics:
    """The metrics object for ``registry`` (default: the process-wide one), created once."""
    reg = REGISTRY if registry is None else registry
    with _lock:
        m = _by_registry.get(reg)
        if m is None:
            m = _by_registry[reg] = ClassifyMetrics(reg)
        return m
