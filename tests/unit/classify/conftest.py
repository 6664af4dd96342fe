"""Real (untrained-head) models shared by the classify tests: loading them once keeps them
fast. ``zh_model`` is the same encoder and tokenizer (which splits CJK per character) as a
Chinese model (``ModelConfig.language`` zh: the zh normaliser, sentence-end truncation)."""
from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from models.sentiment import SentimentModel
from services.classify.metrics import ClassifyMetrics, classify_metrics


@pytest.fixture(scope="session")
def model() -> SentimentModel:
    return SentimentModel.untrained_for_tests(device="cpu", seed=0)


@pytest.fixture(scope="session")
def zh_model() -> SentimentModel:
    from models.sentiment.config import ModelConfig
    from models.sentiment.network import build_classifier, tokenizer_file

    cfg = ModelConfig(version="untrained-zh-test", language="zh")
    return SentimentModel(build_classifier(cfg, seed=1).eval(), cfg,
                          tokenizer_file(cfg.base_model))


@pytest.fixture
def metrics() -> ClassifyMetrics:
    """Per-test Prometheus registry, so tests can read exact values."""
    return classify_metrics(CollectorRegistry())
