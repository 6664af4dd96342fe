"""Escalations reach a subscriber that was already notified, exactly once, also across a
restart of the delivery worker; the resolution only when the subscription asks for it.

With the alert lifecycle every event is its own message with its own ``alert_id`` (firing,
escalated, resolved of one episode: same entity and topic). Before, an escalation landed
within ``repeat_interval`` of the first notification and was swallowed as a ``repeat``.
"""
from __future__ import annotations

import asyncio

import pytest
import pytest_asyncio

from services.core.schemas import Alert
from tests.integration.api_helpers import make_alert
from tests.integration.delivery_helpers import Worker, add_subscription, alert_ids, produce
from tests.integration.webhook_receiver import Receiver

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture
async def receiver():
    r = await Receiver().start()
    yield r
    await r.stop()


def episode(entity: str = "ACME") -> tuple[Alert, Alert, Alert, Alert]:
    """firing (info) -> escalated (warning) -> escalated (critical) -> resolved."""
    first = make_alert(entity, topic="*", severity="info")
    start = first.window_start
    esc1 = make_alert(entity, topic="*", severity="warning").model_copy(
        update={"state": "escalated", "episode_start": start})
    esc2 = make_alert(entity, topic="*", severity="critical").model_copy(
        update={"state": "escalated", "episode_start": start})
    res = make_alert(entity, topic="*", severity="critical").model_copy(
        update={"state": "resolved", "episode_start": start})
    return first.model_copy(update={"episode_start": start}), esc1, esc2, res


async def test_first_notification_and_each_escalation_exactly_once_across_restart(
        settings, redis, redis_ns, new_topic, unique, kafka_producer, receiver):
    topic, dlq = await new_topic("alerts"), await new_topic("dlq")
    # an `info` subscriber with the default 4 h repeat_interval, and one that wants resolutions
    plain = await add_subscription(redis, redis_ns, f"{receiver.base_url}/plain",
                                   repeat_interval_s=4 * 3600, group_wait_s=0)
    with_res = await add_subscription(redis, redis_ns, f"{receiver.base_url}/res",
                                      repeat_interval_s=4 * 3600, group_wait_s=0,
                                      notify_resolved=True)
    assert plain != with_res
    firing, esc1, esc2, resolved = episode()

    def worker() -> Worker:
        return Worker(redis, redis_ns, bootstrap=settings.kafka_bootstrap, topic=topic,
                      group_id=f"test-esc-{unique}", dlq_topic=dlq, producer=kafka_producer)

    def seen(path: str) -> list[str]:
        return [i for r in receiver.delivered(path).values() for i in alert_ids(r.json)]

    first = await worker().start()
    try:
        await produce(kafka_producer, topic, firing)
        await receiver.wait_for(lambda: seen("/plain") == [firing.alert_id]
                                and seen("/res") == [firing.alert_id], within_s=20)
        await produce(kafka_producer, topic, esc1)
        await receiver.wait_for(lambda: esc1.alert_id in seen("/plain")
                                and esc1.alert_id in seen("/res"), within_s=20)
    finally:
        await first.crash()  # like kill -9: nothing flushed

    # the second escalation and the resolution arrive while no worker runs; the restarted
    # worker re-reads from its last commit (firing/esc1 again: already routed, no-ops)
    await produce(kafka_producer, topic, esc2, resolved)
    second = await worker().start()
    try:
        want_plain = [firing.alert_id, esc1.alert_id, esc2.alert_id]
        want_res = [*want_plain, resolved.alert_id]
        await receiver.wait_for(lambda: sorted(seen("/plain")) == sorted(want_plain)
                                and sorted(seen("/res")) == sorted(want_res), within_s=45)
        await asyncio.sleep(1.5)  # a duplicate (or the resolution to /plain) would arrive now
    finally:
        await second.stop()
    assert sorted(seen("/plain")) == sorted(want_plain)  # each once, no resolution
    assert sorted(seen("/res")) == sorted(want_res)
    bodies = {a["alert_id"]: a for r in receiver.delivered("/res").values()
              for a in r.json["alerts"]}
    assert [bodies[i]["state"] for i in want_res] == ["firing", "escalated", "escalated",
                                                      "resolved"]
    assert bodies[esc2.alert_id]["severity"] == "critical"
