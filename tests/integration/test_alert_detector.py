"""The Redis-backed spike detector: idempotent under redelivery, same alerts after a restart,
robust to partitions delivering at different speeds."""
from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from services.alerts import rules
from services.alerts.detector import AlertDetector, Series, alert_id
from services.core.schemas import ScoredDoc, Sentiment

pytestmark = pytest.mark.integration

CFG = rules.RuleConfig(window_s=300, warmup_windows=6, min_count=5, cooldown_s=900)
_now = datetime.now(UTC).timestamp()
T0 = datetime.fromtimestamp(_now - _now % CFG.window_s - 4 * 3600, tz=UTC)  # window-aligned


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
    """Two hours of calm for CALM and SPIKY, then 12 negatives for SPIKY in one window."""
    rng = random.Random(5)
    docs: list[ScoredDoc] = []
    for e in ("CALM", "SPIKY"):
        for m in range(0, 180, 3):
            docs.append(doc(len(docs), e, m + rng.random(), rng.random() < 0.2))
    for k in range(12):
        docs.append(doc(len(docs), "SPIKY", 150 + k * 0.3, True))
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


def spike_window() -> int:
    return rules.window_of((T0 + timedelta(minutes=150)).timestamp(), CFG.window_s)


async def test_fires_once_for_the_spike_and_never_for_calm(redis, redis_ns):
    alerts = await run(AlertDetector(redis, redis_ns, CFG), stream(), batch=25)
    ids = {a.alert_id for a in alerts}
    start = datetime.fromtimestamp(spike_window() * CFG.window_s, tz=UTC)
    assert ids == {alert_id(Series("SPIKY", "*"), start)}
    final = max(alerts, key=lambda a: rules._RANK[a.severity])
    assert final.negative_count >= 12 and final.evidence
    assert final.evidence[0].negative == pytest.approx(0.9)


async def test_redelivery_and_restart_change_nothing(redis, redis_ns):
    docs = stream()
    first = AlertDetector(redis, redis_ns, CFG)
    half = len(docs) // 2 + 20  # the spike is in the second half
    a1 = await run(first, docs[:half], batch=25)
    # crash: a fresh detector (no memory) sees the last 40 documents again, then the rest
    second = AlertDetector(redis, redis_ns, CFG)
    a2 = await run(second, docs[half - 40:], batch=25)
    # and a full replay of everything afterwards fires nothing new
    third = AlertDetector(redis, redis_ns, CFG)
    a3 = await run(third, docs, batch=50)
    ids = {a.alert_id for a in a1 + a2}
    assert len(ids) == 1 and not a1
    assert a3 == []
    neg = await redis.hget(f"{redis_ns}:alerts:{{SPIKY|*}}:neg", str(spike_window()))
    assert int(neg) == sum(1 for d in docs if "SPIKY" in d.entities
                           and d.sentiment.label == "negative"
                           and rules.window_of(d.published_at.timestamp(), 300) == spike_window())


async def test_a_partition_racing_ahead_does_not_hide_the_spike(redis, redis_ns):
    docs = stream()
    calm = [d for d in docs if d.primary_entity == "CALM"]
    spiky = [d for d in docs if d.primary_entity == "SPIKY"]
    # partition 0 (CALM) is delivered completely before partition 1 (SPIKY) starts
    ordered = calm + spiky
    parts = [0] * len(calm) + [1] * len(spiky)
    alerts = await run(AlertDetector(redis, redis_ns, CFG), ordered, batch=30, parts=parts)
    assert {a.entity for a in alerts} == {"SPIKY"}
