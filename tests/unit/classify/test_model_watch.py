"""Following the registry's production pointer: initial load, swap, failed load keeps the old
model, and no production model is a clear error (never an untrained head)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from models.registry import ModelRef, Registry
from models.sentiment import SentimentModel
from models.sentiment.network import save_checkpoint
from services.classify.metrics import ClassifyMetrics
from services.classify.model_watch import (
    ModelWatcher,
    load_checkpoint,
    production_provider,
    registry_pointer,
)
from services.core.errors import ModelLoadError


@pytest.fixture(scope="module")
def registry(tmp_path_factory, model: SentimentModel) -> Path:
    """A real registry with v1, v2 and v3-broken (passes the structural check, fails to load)."""
    root = tmp_path_factory.mktemp("registry")
    src = tmp_path_factory.mktemp("ckpt")
    save_checkpoint(model.network, src, replace(model.config, version="dev"))
    reg = Registry(root)
    for version in ("v1", "v2", "v3-broken"):
        reg.register(src, metrics={}, version=version)
    (root / "versions" / "v3-broken" / "head.safetensors").write_bytes(b"not safetensors")
    return root


def _promote(registry: Path, version: str) -> None:
    assert Registry(registry).promote(version, gate=None)


def _watcher(registry: Path, metrics: ClassifyMetrics) -> ModelWatcher:
    return ModelWatcher(registry_pointer(registry),
                        lambda ref: load_checkpoint(ref, device="cpu", backend="fp32"),
                        poll_s=0, metrics=metrics, describe=str(registry))


async def test_no_production_model_is_a_clear_error(tmp_path: Path, metrics) -> None:
    with pytest.raises(ModelLoadError, match="make model"):
        await _watcher(tmp_path, metrics).start()
    with pytest.raises(ModelLoadError, match="make model"):
        await production_provider(tmp_path, None, device="cpu", poll_s=0)


async def test_unreadable_pointer_is_a_clear_error(tmp_path: Path, metrics) -> None:
    (tmp_path / "production.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        registry_pointer(tmp_path)()


async def test_follows_the_pointer_and_keeps_serving_through_a_bad_version(
        registry: Path, metrics) -> None:
    _promote(registry, "v1")
    w = _watcher(registry, metrics)
    await w.start()
    assert w.current().version == "v1"
    assert w.ref == ModelRef("v1", registry / "versions" / "v1")
    assert metrics.model_loaded.labels(language="en", version="v1")._value.get() == 1
    assert not await w.check_once()  # pointer unchanged: nothing to do

    _promote(registry, "v3-broken")
    assert not await w.check_once()
    assert w.current().version == "v1"  # old model keeps serving
    assert "v3-broken" in (w.last_error or "")
    assert metrics.model_load_failures._value.get() == 1
    assert not await w.check_once()  # the same broken version is not retried every poll
    assert metrics.model_load_failures._value.get() == 1

    _promote(registry, "v2")
    assert await w.check_once()
    assert w.current().version == "v2" and w.swaps == 1 and w.last_error is None
    assert w.current().predict_batch(["Apple beats estimates"])[0].version == "v2"
    assert metrics.model_swaps._value.get() == 1
    await w.stop()


async def test_fixed_model_path(registry: Path, metrics) -> None:
    versions = registry / "versions"
    provider = await production_provider(Path("/nonexistent"), versions / "v2", device="cpu",
                                         backend="fp32", metrics=metrics)
    assert provider.current().version == "v2"
    with pytest.raises(ModelLoadError, match="v3-broken"):
        await production_provider(Path("/nonexistent"), versions / "v3-broken", device="cpu")


async def test_worker_follows_the_registry_end_to_end(registry: Path, metrics) -> None:
    import asyncio

    from services.classify.serve import open_inference_worker
    from services.core.config import Settings

    _promote(registry, "v1")
    settings = Settings(model_registry=registry, device="cpu", classify_backend="fp32",
                        model_poll_s=0.05)
    async with open_inference_worker(settings, metrics) as worker:
        (first,) = await worker.submit_many(["Apple beats estimates"])
        assert first.model_version == "v1"
        _promote(registry, "v3-broken")  # fails to load: v1 keeps serving
        async with asyncio.timeout(60):
            while metrics.model_load_failures._value.get() < 1:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        (still,) = await worker.submit_many(["Apple beats estimates"])
        assert still.model_version == "v1"
        _promote(registry, "v2")
        async with asyncio.timeout(60):
            while metrics.model_swaps._value.get() < 1:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        (after,) = await worker.submit_many(["Apple beats estimates"])
    assert after.model_version == "v2"
    assert after.probabilities == pytest.approx(first.probabilities, abs=1e-5)  # same weights
