"""Per-language routing end to end: a real classify worker (subprocess, real Kafka) serving a
tiny English and a tiny Chinese model from a temp registry. Documents on docs.clean come out
on docs.scored stamped with the language they were routed by (tag, else script) and the
language and version of the model that scored them; a Japanese document goes to the English
fallback (stamped) or, with YUQING_LANGUAGE_FALLBACK=none, to the DLQ with reason no_model."""
from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio

from models.registry import Registry
from services.core.schemas import CleanDoc, ScoredDoc
from services.stream.topics import ensure_topics
from tests.integration.pipeline_fixtures import Pipeline
from tests.integration.pipeline_support import pipeline_settings, topic_names, wait_for
from tests.model_helpers import make_tiny_base, make_tiny_checkpoint

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

NOW = datetime.now(UTC).replace(microsecond=0)
# (text, lang tag) -> (routed language, model language, or None: dead-lettered with "none")
DOCS = [
    ("Acme Corp beats estimates and raises guidance", "en", "en", "en"),
    ("贵州茅台业绩大增，净利润同比增长三成。", "zh-CN", "zh", "zh"),
    ("騰訊控股業績大增，港股應聲上漲。", "", "zh", "zh"),  # no tag: by script
    ("中国平安 遭监管处罚 股价下跌", "zh_Hans", "zh", "zh"),
    ("トヨタの株価が決算発表後に上昇した", "ja", "ja", None),
    ("Globex misses on revenue", "!!", "en", "en"),  # malformed tag: by script
]


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Path:
    base = make_tiny_base(tmp_path_factory.mktemp("tiny-base"))
    ck = tmp_path_factory.mktemp("ck")
    root = tmp_path_factory.mktemp("registry")
    reg = Registry(root)
    for lang, seed in (("en", 1), ("zh", 2)):
        reg.register(make_tiny_checkpoint(ck / lang, base, lang, seed=seed), metrics={},
                     version=f"{lang}-1")
        assert reg.promote(f"{lang}-1", gate=None)
    return root


@pytest_asyncio.fixture
async def pipeline(settings, kafka_admin, es, redis, es_prefix, redis_ns, unique, tmp_path,
                   registry) -> AsyncIterator[Pipeline]:
    s = pipeline_settings(settings, unique, tmp_path, es_prefix, redis_ns, None,
                          model_path=None, model_registry=registry, languages="en,zh",
                          model_poll_s=1.0)
    await ensure_topics(s)
    p = Pipeline(s, es, redis, tmp_path / "logs")
    try:
        yield p
    finally:
        for w in p.workers:
            w.stop()
        try:
            await kafka_admin.delete_topics(topic_names(s))
        except Exception:  # noqa: BLE001 - best effort cleanup
            pass


def _clean(i: int, text: str, lang: str) -> CleanDoc:
    return CleanDoc(doc_id=f"news:wire:lang-{i}", kind="news", source="wire",
                    source_id=f"lang-{i}", title=text, text=text, lang=lang, published_at=NOW,
                    ingested_at=NOW)


@pytest.mark.parametrize("fallback", ["en", "none"])
async def test_documents_are_scored_by_their_languages_model(pipeline: Pipeline, kafka_producer,
                                                             fallback: str) -> None:
    p = pipeline
    p.worker("classify", language_fallback=fallback)
    for i, (text, tag, _, _) in enumerate(DOCS):
        await kafka_producer.send_and_wait(p.settings.topic_docs_clean,
                                           _clean(i, text, tag).model_dump_json().encode(),
                                           key=b"k")
    expect_dlq = 1 if fallback == "none" else 0
    scored: dict[str, ScoredDoc] = {}
    dead: list[dict] = []

    async def done() -> bool:
        for m in await p.topic_messages(p.settings.topic_docs_scored, idle_ms=500):
            d = ScoredDoc.model_validate_json(m.value)
            scored[d.doc_id] = d
        dead[:] = [json.loads(m.value)
                   for m in await p.topic_messages(p.settings.topic_dlq, idle_ms=500)]
        return len(scored) + len(dead) >= len(DOCS)

    await wait_for("every document scored or dead-lettered", done, 180, p.workers, interval=2.0)
    assert len(dead) == expect_dlq
    for i, (_, _, routed, model_lang) in enumerate(DOCS):
        doc_id = f"news:wire:lang-{i}"
        if model_lang is None and fallback == "none":
            assert doc_id not in scored
            continue
        d = scored[doc_id]
        want = model_lang or "en"
        assert (d.lang, d.sentiment.model_language, d.sentiment.model_version) == (
            routed, want, f"{want}-1"), d
        assert (d.sentiment.fallback is None) == (routed == want)
    if fallback == "none":
        (dl,) = dead
        assert dl["reason"] == "no_model" and "no model for language ja" in dl["error"]
    else:
        ja = scored["news:wire:lang-4"]
        assert ja.sentiment.fallback == "no model for language ja: scored by the en model"
