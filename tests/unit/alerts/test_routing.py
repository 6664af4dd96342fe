"""Routing and timing decisions (Alertmanager-style), without Redis or clocks."""
from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from services.alerts.routing import (
    active_silence,
    alert_fingerprint,
    alert_sources,
    decide,
    first_send_at,
    group_key,
    matches,
    retryable_status,
)
from services.alerts.subscriptions import (
    Filters,
    KafkaChannel,
    Silence,
    Subscription,
)
from services.core.backoff import backoff_s
from services.core.schemas import Alert, Evidence

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def alert(entity: str = "ACME", topic: str = "earnings", severity: str = "warning",
          sources: tuple[str, ...] = ("reuters",), alert_id: str = "a1") -> Alert:
    return Alert(alert_id=alert_id, entity=entity, topic=topic, severity=severity,
                 window_start=NOW - timedelta(minutes=5), window_end=NOW, negative_count=9,
                 total_count=12, negative_share=0.75, baseline_mean=1.0, baseline_std=0.5,
                 score=6.0, detector="test", created_at=NOW,
                 evidence=[Evidence(doc_id=f"news:{s}:{i}", title="t", negative=0.9,
                                    published_at=NOW) for i, s in enumerate(sources)])


def sub(**kw) -> Subscription:
    base = dict(id="s1", name="n", filters=Filters(), channel=KafkaChannel(topic="t"),
                created_at=NOW, updated_at=NOW, group_wait_s=30, group_interval_s=300,
                repeat_interval_s=3600)
    base.update(kw)
    return Subscription(**base)


def test_empty_filters_match_everything():
    assert matches(sub(), alert())


@pytest.mark.parametrize("filters,expected", [
    (Filters(entities=["acme"]), True),          # normalised to upper case
    (Filters(entities=["$ACME"]), True),         # cashtag form accepted
    (Filters(entities=["MSFT"]), False),
    (Filters(topics=["earnings", "legal"]), True),
    (Filters(topics=["legal"]), False),
    (Filters(sources=["reuters"]), True),
    (Filters(sources=["stocktwits"]), False),
    (Filters(min_severity="warning"), True),
    (Filters(min_severity="critical"), False),
])
def test_filters(filters, expected):
    assert matches(sub(filters=filters), alert()) is expected


def test_sources_come_from_evidence_doc_ids():
    assert alert_sources(alert(sources=("reuters", "bloomberg"))) == {"reuters", "bloomberg"}


def test_silence_matches_entity_topic_and_expires():
    s_entity = Silence(entity="acme", until=NOW + timedelta(hours=1))
    s_topic = Silence(topic="legal", until=NOW + timedelta(hours=1))
    s_both = Silence(entity="ACME", topic="legal", until=NOW + timedelta(hours=1))
    s_past = Silence(entity="ACME", until=NOW - timedelta(seconds=1))
    a = alert()
    assert active_silence([s_entity], a, NOW) is s_entity
    assert active_silence([s_topic], a, NOW) is None
    assert active_silence([s_both], a, NOW) is None  # both given: both must match
    assert active_silence([s_past], a, NOW) is None
    assert active_silence([s_entity], a, NOW + timedelta(hours=2)) is None


def test_silence_needs_entity_or_topic():
    with pytest.raises(ValueError, match="entity, a topic or both"):
        Silence(until=NOW)


def _decide(s, a, **kw):
    args = dict(seen=False, group_due_at=None, last_group_sent=None, last_fingerprint_sent=None)
    args.update(kw)
    return decide(s, a, NOW, **args)


def test_first_alert_opens_group_due_after_group_wait():
    d = _decide(sub(), alert())
    assert d.outcome == "opened"
    assert d.due_at == NOW.timestamp() + 30


def test_later_alert_joins_pending_group_keeping_its_due_time():
    d = _decide(sub(), alert(topic="legal"), group_due_at=NOW.timestamp() + 12)
    assert (d.outcome, d.due_at) == ("joined", NOW.timestamp() + 12)


def test_group_interval_delays_next_group_after_a_send():
    last = NOW.timestamp() - 100  # sent 100 s ago, group_interval 300 s
    d = _decide(sub(), alert(topic="legal"), last_group_sent=last)
    assert d.outcome == "opened"
    assert d.due_at == last + 300
    # long after the last send, group_wait alone decides
    d = _decide(sub(), alert(topic="legal"), last_group_sent=NOW.timestamp() - 10_000)
    assert d.due_at == NOW.timestamp() + 30


def test_repeat_interval_suppresses_same_entity_and_topic():
    d = _decide(sub(), alert(), last_fingerprint_sent=NOW.timestamp() - 60)
    assert d.outcome == "repeat"
    assert "repeat_interval" in d.reason
    d = _decide(sub(), alert(), last_fingerprint_sent=NOW.timestamp() - 3601)
    assert d.outcome == "opened"


def test_escalation_and_resolution_are_never_a_repeat():
    """Each lifecycle event has its own alert_id; an escalation (and a resolution the
    subscriber asked for) right after the first notification is news, not a repeat."""
    recent = NOW.timestamp() - 60
    esc = alert(alert_id="a2").model_copy(update={"state": "escalated", "severity": "critical"})
    assert _decide(sub(), esc, last_fingerprint_sent=recent).outcome == "opened"
    res = alert(alert_id="a3").model_copy(update={"state": "resolved"})
    assert _decide(sub(notify_resolved=True), res,
                   last_fingerprint_sent=recent).outcome == "opened"
    # a new episode (firing again) of the same entity+topic within repeat_interval is muted
    assert _decide(sub(), alert(alert_id="a4"), last_fingerprint_sent=recent).outcome == "repeat"


def test_resolutions_only_when_asked():
    res = alert().model_copy(update={"state": "resolved"})
    assert not matches(sub(), res)
    assert matches(sub(notify_resolved=True), res)
    assert _decide(sub(), res).outcome == "filtered"
    assert matches(sub(), alert().model_copy(update={"state": "escalated"}))


def test_silenced_duplicate_disabled():
    muted = sub(silences=[Silence(entity="ACME", until=NOW + timedelta(minutes=5))])
    assert _decide(muted, alert()).outcome == "silenced"
    assert _decide(sub(), alert(), seen=True).outcome == "duplicate"
    assert _decide(sub(enabled=False), alert()).outcome == "disabled"
    assert _decide(sub(filters=Filters(entities=["MSFT"])), alert()).outcome == "filtered"


def test_group_key_and_fingerprint():
    assert group_key(alert(entity="acme")) == "ACME"
    assert alert_fingerprint(alert(entity="acme", topic="legal")) == "ACME|legal"


def test_first_send_at():
    assert first_send_at(1000, 30, 300, None) == 1030
    assert first_send_at(1000, 30, 300, 900) == 1200


def test_backoff_grows_exponentially_with_bounded_jitter():
    rng = random.Random(7)
    for attempt in range(1, 8):
        cap = min(60.0, 2.0 * 2 ** (attempt - 1))
        for _ in range(50):
            d = backoff_s(attempt, 2.0, 60.0, rng)
            assert cap / 2 <= d <= cap
    samples = {round(backoff_s(3, 2.0, 60.0, rng), 6) for _ in range(20)}
    assert len(samples) > 1  # jittered, not a fixed delay
    assert backoff_s(0, 2.0, 60.0, rng) == 0.0


@pytest.mark.parametrize("status,retry", [(500, True), (502, True), (503, True), (429, True),
                                          (408, True), (400, False), (401, False), (404, False),
                                          (410, False), (301, False)])
def test_retryable_status(status, retry):
    assert retryable_status(status) is retry
