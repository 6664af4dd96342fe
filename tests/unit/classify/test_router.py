"""The product's scorer with a tiny English and a tiny Chinese model in a temp registry:
Chinese documents go to the zh model, English to the en one, a Japanese one to the fallback
(stamped) or, with no fallback, to the DLQ; a language whose pointer appears later is
hot-loaded; entity-level scores come from the zh model's entity head too."""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import numpy as np
import pytest

from models.lang import document_language
from models.registry import Registry
from models.sentiment import SentimentModel
from services.classify.scorer import Scored, ScoreError
from services.classify.serve import open_inference_worker
from services.core.config import Settings
from services.core.errors import ModelLoadError
from tests.model_helpers import make_tiny_base, make_tiny_checkpoint

EN = "Acme Corp beats estimates and raises guidance"
ZH = "贵州茅台业绩大增，净利润同比增长三成。"
JA = "トヨタの株価が決算発表後に上昇した"
TEXTS = [EN, ZH, JA, "Globex misses on revenue", "騰訊控股業績大增！！", "12345 %%%"]
LANGS = [document_language(None, t) for t in TEXTS]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    base = make_tiny_base(tmp_path_factory.mktemp("tiny-base"))
    root = tmp_path_factory.mktemp("ckpts")
    return {"en": make_tiny_checkpoint(root / "en", base, "en", seed=1),
            "zh": make_tiny_checkpoint(root / "zh", base, "zh", seed=2)}


def _registry(root: Path, checkpoints: dict[str, Path], promote: tuple[str, ...]) -> Path:
    reg = Registry(root)
    for lang, path in checkpoints.items():
        reg.register(path, metrics={}, version=f"{lang}-1")
    for lang in promote:
        assert reg.promote(f"{lang}-1", gate=None)
    return root


def _settings(registry: Path, **over) -> Settings:
    return Settings(model_registry=registry, device="cpu", classify_backend="fp32",
                    model_poll_s=0.05, classify_forward_threads=1, **over)


def _scored(r) -> Scored:
    assert isinstance(r, Scored), r
    return r


def _probs(r) -> np.ndarray:
    return np.array(list(_scored(r).probabilities.values()))


async def test_each_language_goes_to_its_model_and_the_rest_to_the_fallback(
        tmp_path: Path, checkpoints, metrics) -> None:
    assert LANGS == ["en", "zh", "ja", "en", "zh", "und"]
    reg = _registry(tmp_path, checkpoints, ("en", "zh"))
    async with open_inference_worker(_settings(reg), metrics) as scorer:
        assert scorer.serving() == ("en", "zh")
        res = await scorer.submit_many(TEXTS, None, LANGS)
        zh_model, en_model = scorer.model("zh"), scorer.model("en")
    assert [(_scored(r).model_version, r.model_language) for r in res] == [
        ("en-1", "en"), ("zh-1", "zh"), ("en-1", "en"), ("en-1", "en"), ("zh-1", "zh"),
        ("en-1", "en")]
    # the same probabilities as each model alone (with its own text handling), input order
    zh_idx, en_idx = [1, 4], [0, 2, 3, 5]
    np.testing.assert_allclose([_probs(res[i]) for i in zh_idx],
                               zh_model.predict_proba([TEXTS[i] for i in zh_idx])[0], atol=1e-5)
    np.testing.assert_allclose([_probs(res[i]) for i in en_idx],
                               en_model.predict_proba([TEXTS[i] for i in en_idx])[0], atol=1e-5)
    stamps = [_scored(r).to_sentiment(lang) for r, lang in zip(res, LANGS, strict=True)]
    assert [s.fallback for s in stamps] == [
        None, None, "no model for language ja: scored by the en model", None, None,
        "no model for language und: scored by the en model"]
    assert metrics.model_loaded.labels(language="zh", version="zh-1")._value.get() == 1
    assert metrics.model_loaded.labels(language="en", version="en-1")._value.get() == 1


async def test_without_a_fallback_unserved_languages_are_refused_with_the_reason(
        tmp_path: Path, checkpoints, metrics) -> None:
    reg = _registry(tmp_path, checkpoints, ("en", "zh"))
    async with open_inference_worker(_settings(reg, language_fallback="none"), metrics) as s:
        res = await s.submit_many(TEXTS, None, LANGS)
        only_ja = await s.submit_many([JA], None, ["ja"])
    assert [type(r).__name__ for r in res] == [
        "Scored", "Scored", "ScoreError", "Scored", "Scored", "ScoreError"]
    err = res[2]
    assert isinstance(err, ScoreError) and err.reason == "no_model"
    assert "no model for language ja" in err.message
    assert isinstance(only_ja[0], ScoreError) and only_ja[0].reason == "no_model"
    assert metrics.item_errors.labels(reason="no_model")._value.get() == 3


async def test_a_language_without_a_model_follows_the_fallback_until_its_pointer_appears(
        tmp_path: Path, checkpoints, metrics, caplog) -> None:
    reg = _registry(tmp_path, checkpoints, ("en",))  # zh registered, not promoted
    with caplog.at_level(logging.WARNING, logger="services.classify.serve"):
        async with open_inference_worker(_settings(reg), metrics) as scorer:
            warned = [r.getMessage() for r in caplog.records
                      if "no production model for language zh" in r.getMessage()]
            assert len(warned) == 1 and "make model" in warned[0]
            assert "scored by the en model" in warned[0]
            assert scorer.serving() == ("en",)
            (before,) = await scorer.submit_many([ZH], None, ["zh"])
            assert _scored(before).model_language == "en"  # fallback, and stamped so
            assert before.to_sentiment("zh").fallback is not None
            assert Registry(reg).promote("zh-1", gate=None)
            async with asyncio.timeout(60):
                while "zh" not in scorer.serving():  # noqa: ASYNC110 - the watcher polls
                    await asyncio.sleep(0.05)
            (after,) = await scorer.submit_many([ZH], None, ["zh"])
            (en,) = await scorer.submit_many([EN], None, ["en"])
    assert (_scored(after).model_version, after.model_language) == ("zh-1", "zh")
    assert after.to_sentiment("zh").fallback is None
    assert _scored(en).model_version == "en-1"


async def test_no_model_for_any_language_is_a_clear_error(tmp_path: Path, metrics) -> None:
    with pytest.raises(ModelLoadError, match=r"no production model for en, zh.*make model"):
        async with open_inference_worker(_settings(tmp_path), metrics):
            pass


async def test_a_pinned_checkpoint_serves_its_language_and_the_rest_follow_the_fallback(
        tmp_path: Path, checkpoints, metrics) -> None:
    settings = _settings(tmp_path / "no-registry", model_path=checkpoints["zh"])
    async with open_inference_worker(settings, metrics) as scorer:
        assert scorer.serving() == ("zh",)
        res = await scorer.submit_many([ZH, EN], None, ["zh", "en"])
    assert _scored(res[0]).model_language == "zh"
    assert isinstance(res[1], ScoreError) and res[1].reason == "no_model"  # en not serving


async def test_mixed_calls_keep_order_and_entity_scores_come_from_each_model(
        tmp_path: Path, checkpoints, metrics) -> None:
    reg = _registry(tmp_path, checkpoints, ("en", "zh"))
    texts = [ZH if i % 3 else EN for i in range(30)]
    langs = ["zh" if i % 3 else "en" for i in range(30)]
    zh_span = [[(0, 4)]]  # 贵州茅台
    en_span = [[(0, 9)]]  # Acme Corp
    spans = [zh_span if lang == "zh" else en_span for lang in langs]
    async with open_inference_worker(_settings(reg), metrics) as scorer:
        calls = [scorer.submit_many(texts[i:i + 7], spans[i:i + 7], langs[i:i + 7])
                 for i in range(0, 30, 7)]
        res = [r for out in await asyncio.gather(*calls) for r in out]
        zh_model: SentimentModel = scorer.model("zh")  # type: ignore[assignment]
    assert [_scored(r).model_language for r in res] == langs
    zh_doc, zh_ents = zh_model.predict_entities([ZH], [zh_span])
    for r, lang in zip(res, langs, strict=True):
        (ent,) = _scored(r).entities
        assert ent.from_entity
        if lang == "zh":
            np.testing.assert_allclose(list(ent.probabilities.values()), zh_ents[0][0],
                                       atol=1e-5)
            np.testing.assert_allclose(_probs(r), zh_doc[0], atol=1e-5)


async def test_a_broken_chinese_model_does_not_stop_english(
        tmp_path: Path, checkpoints, metrics, caplog) -> None:
    reg = _registry(tmp_path, checkpoints, ("en", "zh"))
    (tmp_path / "versions" / "zh-1" / "head.safetensors").write_bytes(b"not a head")
    with caplog.at_level(logging.ERROR, logger="services.classify.serve"):
        async with open_inference_worker(_settings(reg), metrics) as scorer:
            assert scorer.serving() == ("en",)
            (zh,) = await scorer.submit_many([ZH], None, ["zh"])
    assert _scored(zh).model_language == "en" and zh.to_sentiment("zh").fallback
    assert any("language zh not served" in r.getMessage() for r in caplog.records)
