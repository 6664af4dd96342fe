"""The retraining loop end to end, on the real backends: analysts' labels posted to the API
(Kafka ``labels`` topic + Redis stream) -> ``yuqing feedback export`` -> ``retrain_if_enough``
(train with the feedback, evaluate, gate, promote, watermark) -> the running inference worker
picks the promoted version up by itself. A tiny random encoder keeps training to seconds; the
shared data is replaced by a small file in its format (so the label-map-by-name path runs)."""
from __future__ import annotations

import asyncio
import csv
import json
import os
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from models.finetune.make_production import Recipe, run
from models.finetune.retrain import retrain_if_enough
from models.gate import Gate
from models.registry import Registry
from services.classify.metrics import classify_metrics
from services.classify.serve import open_inference_worker
from tests.integration.api_helpers import api_client, auth, isolated_settings, make_keys
from tests.model_helpers import make_tiny_base, synthetic_rows

pytestmark = pytest.mark.integration

TWEET_LABEL_IDS = {"negative": 0, "positive": 1, "neutral": 2}  # the shared set's order
# A random tiny encoder's scores are noise: this test is about the loop, not the gate's
# thresholds (those have unit tests), so the gate here accepts any well-formed candidate.
ACCEPT_ANY = Gate(f1_tolerance=1.0, recall_tolerance=1.0, guard_tolerance=1.0)


def write_tweets_folder(root: Path) -> Path:
    d = root / "twitter-financial-news-sentiment"
    d.mkdir(parents=True)
    for name, rows in (("train.csv", synthetic_rows(60, seed=1)),
                       ("valid.csv", synthetic_rows(24, seed=2))):
        with (d / name).open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            for text, label in rows:
                w.writerow([text, TWEET_LABEL_IDS[label]])
    return root


async def test_feedback_retrain_promote_and_hot_load(settings, redis, redis_ns, es_prefix,
                                                     new_topic, tmp_path):
    await new_topic("labels")  # the namespace's labels topic
    s = isolated_settings(settings, redis_ns)
    keys = await make_keys(redis, redis_ns)
    feedback = [(f"news:wire:fb{i}", text, label)
                for i, (text, label) in enumerate(synthetic_rows(30, seed=7))]
    async with api_client(s) as client:
        for doc_id, text, label in feedback:
            r = await client.post("/v1/feedback", json={"doc_id": doc_id, "label": label,
                                                        "text": text},
                                  headers=auth(keys["subscribe"]))
            assert r.status_code == 201, r.text

    exported = tmp_path / "labels.jsonl"
    proc = await asyncio.create_subprocess_exec(
        ".venv/bin/yuqing", "feedback", "export", "--output", str(exported),
        env={**os.environ, "YUQING_NAMESPACE": redis_ns, "YUQING_REDIS_URL": s.redis_url},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    rows = [json.loads(line) for line in exported.read_text().splitlines()]
    assert sorted((r["doc_id"], r["label"]) for r in rows) == sorted(
        (d, lab) for d, _, lab in feedback)

    data = write_tweets_folder(tmp_path / "data")
    base = make_tiny_base(tmp_path / "tiny-base")
    reg = tmp_path / "registry"

    def recipe() -> Recipe:
        return Recipe(base=str(base), max_steps=2, include_news="no", max_length=32,
                      batch_size=8, device="cpu", threads=1)

    first = await asyncio.to_thread(run, data, reg, recipe(), "v1", True, ACCEPT_ANY)
    assert first["promoted"], first["decision"]

    ws = s.model_copy(update={"model_registry": reg, "device": "cpu", "classify_backend": "fp32",
                              "model_poll_s": 0.05})
    metrics = classify_metrics(CollectorRegistry())
    async with open_inference_worker(ws, metrics) as worker:
        (before,) = await worker.submit_many(["Acme Corp beats estimates"])
        assert before.model_version == "v1"

        # Fewer new labels than asked for: no training, and the reason says why.
        skipped = await asyncio.to_thread(retrain_if_enough, exported, reg, 31, data, recipe(),
                                          ACCEPT_ANY)
        assert skipped["trained"] is False and "30 new feedback labels" in skipped["reason"]
        assert Registry(reg).production()[1] == "v1"

        done = await asyncio.to_thread(retrain_if_enough, exported, reg, 30, data, recipe(),
                                       ACCEPT_ANY)
        assert done["trained"] and done["promoted"] and done["previous"] == "v1"
        new_version = done["version"]
        assert new_version != "v1" and Registry(reg).production()[1] == new_version
        card = json.loads((reg / "versions" / new_version / "yuqing_model.json").read_text())
        assert card["training"]["data"]["extra"] == "30 feedback rows"
        m = json.loads((reg / "versions" / new_version / "metrics.json").read_text())
        assert m["feedback_rows"] == 30 and m["feedback_max_ts"] == max(r["ts"] for r in rows)
        decision = Registry(reg).decisions()[-1]
        assert decision["candidate"] == new_version and decision["accepted"] is True

        async with asyncio.timeout(60):  # the worker polls the pointer: no restart needed
            while metrics.model_swaps._value.get() < 1:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        (after,) = await worker.submit_many(["Acme Corp beats estimates"])
        assert after.model_version == new_version

    # The watermark: the same labels do not trigger another training.
    again = await asyncio.to_thread(retrain_if_enough, exported, reg, 1, data, recipe(),
                                    ACCEPT_ANY)
    assert again["trained"] is False and again["reason"].startswith("0 new feedback labels")
