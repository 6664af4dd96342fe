"""End to end on the real Kafka, Redis and Elasticsearch, with a real worker process.

Produce N valid and M invalid messages (news and comments, six companies, syndicated copies,
exact re-sends, one negative spike) and check every output against what the feed implies:
exactly the expected documents in ES with the labels the model gives their texts, M dead
letters with their reasons and original bytes, Redis minute buckets equal to the documents
per minute, and exactly the alerts the pure rules give for those labels -- which include one
for the spike company and none for the calm ones.
"""
from __future__ import annotations

import base64
from collections import Counter
from datetime import datetime

import pytest

from models.registry import ModelRef
from services.alerts import rules
from services.classify.model_watch import load_checkpoint
from services.feed.replay import replay
from tests.integration.pipeline_fixtures import (  # noqa: F401 - fixtures
    Pipeline,
    centroid_model_fixture,
    expected_minutes,
    pipeline_fixture,
    rules_for,
    scenario,
)
from tests.integration.pipeline_support import expected_alert_windows, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

PROB_TOL = 0.02  # padding/batching float noise
CLEAR_MARGIN = 0.05


async def wait_until_drained(p: Pipeline, n_docs: int, n_dead: int, limit_s: float) -> None:
    async def done() -> bool:
        if await p.es_count() < n_docs:
            return False
        distinct, _ = await p.dead_letters()
        return len(distinct) >= n_dead

    await wait_for(f"{n_docs} documents in ES and {n_dead} dead letters", done, limit_s,
                   p.workers, interval=2.0)


def assert_labels_match_model(docs: dict[str, dict], model_dir) -> None:
    """ES labels are the model's labels for the stored texts (both sides fp32; the worker
    batches and pads differently, so probabilities agree up to float noise)."""
    model = load_checkpoint(ModelRef("?", model_dir), device="cpu", backend="fp32")
    ids = sorted(docs)
    preds = model.predict_batch([docs[i]["text"] for i in ids])
    clear = agree = 0
    worst = 0.0
    for doc_id, pred in zip(ids, preds, strict=True):
        s = docs[doc_id]["sentiment"]
        assert s["model_version"] == model.version == "test-centroid-v1"
        worst = max(worst, *(abs(s[k] - v) for k, v in pred.probabilities.items()))
        agree += s["label"] == pred.label
        top = sorted(pred.probabilities.values(), reverse=True)
        if top[0] - top[1] > CLEAR_MARGIN:
            clear += 1
            assert s["label"] == pred.label, (doc_id, s, pred)
    print(f"labels agree {agree}/{len(ids)}, clear {clear}, worst probability gap {worst:.3f}")
    assert worst <= PROB_TOL
    assert agree >= 0.99 * len(ids)
    assert clear >= 0.9 * len(ids)  # the strict comparison is not vacuous


async def test_pipeline_end_to_end(pipeline: Pipeline, unique, centroid_model):
    p = pipeline
    sc = scenario(unique)
    n_invalid = sum(sc.expected_dlq.values())
    assert n_invalid >= 5 and len(sc.expected_ids) >= 300
    p.worker("all")
    sent = await replay(sc.items, p.settings, speed=0)
    assert sent == len(sc.items)
    await wait_until_drained(p, len(sc.expected_ids), n_invalid, limit_s=300)

    # Elasticsearch: exactly the expected documents, with the model's labels
    docs = await p.es_docs()
    assert set(docs) == sc.expected_ids
    assert_labels_match_model(docs, centroid_model)

    # DLQ: every invalid message once, with its reason and original bytes
    distinct, raw = await p.dead_letters()
    assert raw == n_invalid  # no crash in this test: not even a redelivered copy
    assert Counter(d.reason for d in distinct.values()) == sc.expected_dlq
    originals = {base64.b64decode(d.original_b64) for d in distinct.values()}
    assert originals == {it.value for it in sc.items if it.meta.get("invalid")}
    assert all(d.stage == "ingest" and d.origin.topic in (p.settings.topic_news_raw,
                                                          p.settings.topic_comments_raw)
               for d in distinct.values())

    # Redis: the minute buckets count each document once, in its own minute
    async def trends_complete() -> bool:
        return sum((await p.trend_minutes(sc.start, sc.end)).values()) >= len(sc.expected_ids)

    await wait_for("trend counts", trends_complete, 60, p.workers)
    assert await p.trend_minutes(sc.start, sc.end) == expected_minutes(sc)
    for ticker in [sc.spike_ticker, *sc.calm]:
        per_entity = await p.trend_minutes(sc.start, sc.end, "entity", ticker)
        want = Counter()
        for d in docs.values():
            if ticker in d["entities"]:
                pub = datetime.fromisoformat(d["published_at"])
                want[pub.replace(second=0, microsecond=0)] += 1
        assert per_entity == want, ticker

    # Alerts: exactly what the rules give for these labels; the spike fires, calm ones do not
    cfg = rules_for(p.settings)
    possible, settled = expected_alert_windows(list(docs.values()), cfg)
    spike_docs = [d for d in docs.values() if sc.spike_ticker in d["entities"]
                  and d["sentiment"]["label"] == "negative"]
    assert len(spike_docs) >= 2 * cfg.min_count, "the test model must see the spike as negative"

    async def alerts_in() -> bool:
        got = {(a["entity"], a["topic"], rules.window_of(
            datetime.fromisoformat(a["window_start"]).timestamp(), cfg.window_s))
            for a in await p.es_alerts()}
        return settled <= got

    await wait_for("alerts", alerts_in, 60, p.workers)
    es_alerts = await p.es_alerts()
    got = {(a["entity"], a["topic"],
            rules.window_of(datetime.fromisoformat(a["window_start"]).timestamp(), cfg.window_s))
           for a in es_alerts}
    assert settled <= got <= possible, (got, possible)
    assert len(got) == len(es_alerts)  # one document per lifecycle event
    spike_alerts = [a for a in es_alerts if a["entity"] == sc.spike_ticker
                    and a["state"] == "firing"]
    assert len(spike_alerts) == 1
    assert not [a for a in es_alerts if a["entity"] in sc.calm]
    a = spike_alerts[0]
    assert a["negative_count"] >= 1 and a["evidence"]
    assert all(e["doc_id"] in sc.expected_ids for e in a["evidence"])
    # the alerts topic carries the same alerts (by id; severity may escalate within a window)
    topic_alerts = await p.alert_messages()
    assert {x.alert_id for x in topic_alerts} == {x["alert_id"] for x in es_alerts}
