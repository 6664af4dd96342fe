"""Fixtures for the models suite: an untrained real model (serving tests) and a tiny random
BERT base (training tests), so nothing here needs trained weights or the shared data."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.model_helpers import make_tiny_base, synthetic_rows  # noqa: F401 - re-exported

SHARED_DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"


@pytest.fixture(scope="session")
def untrained():
    from models.sentiment import SentimentModel

    return SentimentModel.untrained_for_tests(device="cpu", seed=0)


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide random BERT with the real MiniLM tokenizer, as an HF folder."""
    return make_tiny_base(tmp_path_factory.mktemp("tiny-bert"))
