"""The Redis-backed detector: agrees exactly with the pure replay API, and gives the same
alerts whatever the batch boundaries, partition interleaving, redelivery or restarts."""
from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from services.alerts import replay as rp
from services.alerts import rules
from services.alerts.detector import AlertDetector, Series, alert_id
from services.alerts.model import DetectorConfig
from services.core.schemas import ScoredDoc, Sentiment

pytestmark = pytest.mark.integration

CFG = DetectorConfig(window_s=300)
_now = datetime.now(UTC).timestamp()
# window-aligned and hour-aligned start, three days ago
T0 = datetime.fromtimestamp(_now - _now % 3600 - 3 * 86400, tz=UTC)
HOURS = 36
SPIKE_MIN = 30 * 60 + 7  # minute offset of the negative burst (day 2)


def doc(i: int, entity: str, minutes: float, negative: bool) -> ScoredDoc:
    label = "negative" if negative else "neutral"
    return ScoredDoc(
        doc_id=f"news:t:{entity}-{i}", kind="news", source="t", source_id=f"{entity}-{i}",
        title=f"{entity} item {i}", text=f"{entity} item {i}",
        published_at=T0 + timedelta(minutes=minutes), entities=[entity], primary_entity=entity,
        topics=[], ingested_at=T0, classified_at=T0,
        sentiment=Sentiment(label=label, probabilities={"negative": 0.9 if negative else 0.1},
                            model_version="t"))


def stream() -> list[ScoredDoc]:
    """36 hours of CALM and SPIKY (about 1.5 documents a minute, 20% negative), then a
    30-minute burst of 60 negatives for SPIKY."""
    rng = random.Random(5)
    docs: list[ScoredDoc] = []
    for e in ("CALM", "SPIKY"):
        m = 0.0
        while m < HOURS * 60:
            m += rng.expovariate(1.5)
            docs.append(doc(len(docs), e, m, rng.random() < 0.2))
    for k in range(60):
        docs.append(doc(len(docs), "SPIKY", SPIKE_MIN + k * 0.5, True))
    docs.sort(key=lambda d: d.published_at)
    return docs


async def run(det: AlertDetector, docs: list[ScoredDoc], batch: int,
              parts: list[int] | None = None) -> list:
    out = []
    for i in range(0, len(docs), batch):
        got = await det.observe(docs[i:i + batch], parts[i:i + batch] if parts else None)
        await det.commit()
        out += got
    return out


def key(alerts: list) -> list[tuple]:
    return [(a.alert_id, a.state, a.severity, a.window_start, a.score, a.peak_score,
             a.negative_count, a.episode_negatives) for a in alerts]


def pure_events(docs: list[ScoredDoc], entity: str, upto: int) -> list:
    neg: Counter[int] = Counter()
    tot: Counter[int] = Counter()
    for d in docs:
        if entity in d.entities:
            w = rules.window_of(d.published_at.timestamp(), CFG.window_s)
            tot[w] += 1
            neg[w] += d.sentiment.label == "negative"
    versions = {w: "t" for w in tot}  # the model every document carries
    return rp.replay(dict(neg), dict(tot), CFG, upto=upto, versions=versions)


def closed_upto(docs: list[ScoredDoc], lateness_s: float = 60.0) -> int:
    wm = max(d.published_at.timestamp() for d in docs)
    return rules.window_of(wm - lateness_s, CFG.window_s) - 1


async def test_redis_detector_agrees_exactly_with_the_pure_api(redis, redis_ns):
    docs = stream()
    alerts = await run(AlertDetector(redis, redis_ns, CFG), docs, batch=200)
    res = pure_events(docs, "SPIKY", closed_upto(docs))
    assert res.events and res.events[0].kind == "firing"
    spiky = [a for a in alerts if a.entity == "SPIKY"]
    assert [(a.state, a.severity, a.score) for a in spiky] == \
        [(e.kind, e.severity, round(e.score, 3)) for e in res.events]
    assert [a.window_start.timestamp() for a in spiky] == \
        [e.window * CFG.window_s for e in res.events]
    assert not [a for a in alerts if a.entity == "CALM"]
    assert not pure_events(docs, "CALM", closed_upto(docs)).events
    first = spiky[0]
    assert first.window_start >= T0 + timedelta(minutes=SPIKE_MIN - 5)
    assert first.alert_id == alert_id(Series("SPIKY", "*"), first.episode_start, "firing")
    assert first.evidence and first.evidence[0].negative == pytest.approx(0.9)
    # the saved state is the pure API's state
    raw = await redis.get(f"{redis_ns}:alerts:{{SPIKY|*}}:model")
    import json
    assert json.loads(raw) == json.loads(json.dumps(res.state.to_dict()))


async def test_batch_boundaries_do_not_change_alerts(redis, redis_ns):
    docs = stream()
    a = await run(AlertDetector(redis, redis_ns + ":a", CFG), docs, batch=37)
    b = await run(AlertDetector(redis, redis_ns + ":b", CFG), docs, batch=500)
    assert key(a) == key(b) and a


async def test_partition_interleaving_does_not_change_alerts(redis, redis_ns):
    docs = stream()
    calm = [d for d in docs if d.primary_entity == "CALM"]
    spiky = [d for d in docs if d.primary_entity == "SPIKY"]
    in_order = await run(AlertDetector(redis, redis_ns + ":a", CFG), docs, batch=100,
                         parts=[0 if d.primary_entity == "CALM" else 1 for d in docs])
    # partition 0 (CALM) is delivered completely before partition 1 (SPIKY) starts
    ordered = calm + spiky
    parts = [0] * len(calm) + [1] * len(spiky)
    raced = await run(AlertDetector(redis, redis_ns + ":b", CFG), ordered, batch=100,
                      parts=parts)
    assert key(in_order) == key(raced) and {a.entity for a in raced} == {"SPIKY"}


async def test_redelivery_and_restart_change_nothing(redis, redis_ns):
    docs = stream()
    clean = await run(AlertDetector(redis, redis_ns + ":clean", CFG), docs, batch=100)
    ns = redis_ns + ":crash"
    half = len(docs) * 9 // 10
    a1 = await run(AlertDetector(redis, ns, CFG), docs[:half], batch=100)
    # crash after counting a batch but before commit: that batch is redelivered
    crashed = AlertDetector(redis, ns, CFG)
    await crashed.observe(docs[half:half + 80])
    # a fresh detector (no memory) sees the last 300 documents again, then the rest
    a2 = await run(AlertDetector(redis, ns, CFG), docs[half - 300:], batch=100)
    # and a full replay of everything afterwards fires nothing new
    a3 = await run(AlertDetector(redis, ns, CFG), docs, batch=250)
    assert key(a1 + a2) == key(clean) and clean
    assert a3 == []
