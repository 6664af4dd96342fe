"""Shared fixtures. Integration fixtures talk to the real services that `ops/stack up` started;
there are no mocks of Kafka, Redis or Elasticsearch anywhere in this suite."""
from __future__ import annotations

import os
import uuid

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def unique() -> str:
    """A short random suffix that keeps one test's topics, indices and keys apart from others'."""
    return uuid.uuid4().hex[:10]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything under tests/integration is an integration test, whatever its module says."""
    for item in items:
        if "/tests/integration/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.integration)
