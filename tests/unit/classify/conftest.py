"""A real (untrained-head) model shared by the classify tests: loading it once keeps them fast."""
from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from models.sentiment import SentimentModel
from services.classify.metrics import ClassifyMetrics, classify_metrics


@pytest.fixture(scope="session")
def model() -> SentimentModel:
    return SentimentModel.untrained_for_tests(device="cpu", seed=0)


@pytest.fixture
def metrics() -> ClassifyMetrics:
    """Per-test Prometheus registry, so tests can read exact values."""
    return classify_metrics(CollectorRegistry())
