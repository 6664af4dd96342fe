"""Delivery state survives a restart: no duplicate burst, no lost alert."""
from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer

from services.alerts import webhook
from services.alerts.alert_consumer import AlertConsumer
from services.alerts.delivery import DeliveryEngine
from services.alerts.delivery_state import DeliveryState
from services.alerts.subscriptions import SubscriptionStore
from services.core.schemas import DeadLetter
from tests.integration.api_helpers import make_alert
from tests.integration.delivery_helpers import (
    LOCAL_RECEIVER,
    Worker,
    add_subscription,
    alert_ids,
    produce,
)
from tests.integration.webhook_receiver import Receiver

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture
async def receiver():
    r = await Receiver().start()
    yield r
    await r.stop()


async def test_crash_mid_delivery_then_restart(settings, redis, redis_ns, new_topic, unique,
                                               kafka_producer, receiver):
    topic, dlq = await new_topic("alerts"), await new_topic("dlq")
    receiver.scripts["/hook"] = ["hang"]  # the first POST never answers: the worker dies in it
    receiver.hang_s = 10
    sub_id = await add_subscription(redis, redis_ns, f"{receiver.base_url}/hook")

    def worker() -> Worker:
        return Worker(redis, redis_ns, bootstrap=settings.kafka_bootstrap, topic=topic,
                      group_id=f"test-restart-{unique}", dlq_topic=dlq, producer=kafka_producer)

    first = await worker().start()
    a1, a2 = make_alert("ACME", topic="earnings"), make_alert("ACME", topic="legal")
    await produce(kafka_producer, topic, a1, a2)
    await receiver.wait_for(lambda: len(receiver.at("/hook")) == 1)
    await first.crash()

    # alerts that arrive while no worker runs
    a3, a4 = make_alert("ACME", topic="management"), make_alert("MSFT")
    await produce(kafka_producer, topic, a3, a4)

    second = await worker().start()
    try:
        expected = {a.alert_id for a in (a1, a2, a3, a4)}

        def seen() -> set[str]:
            return {i for r in receiver.delivered("/hook").values() for i in alert_ids(r.json)}

        # the second worker takes over once the crashed one's lease lapses (timeout + 5 s)
        await receiver.wait_for(lambda: seen() == expected, within_s=45)
        await asyncio.sleep(1.0)  # a duplicate burst would arrive now
    finally:
        await second.stop()

    delivered = receiver.delivered("/hook")
    every_alert = [i for r in delivered.values() for i in alert_ids(r.json)]
    assert sorted(every_alert) == sorted(expected)  # no loss, and no alert in two deliveries
    reqs = receiver.at("/hook")
    # only the delivery cut by the crash was sent again, with the same id and body
    assert len(reqs) == len(delivered) + 1
    cut, resent = reqs[0], delivered[reqs[0].delivery_id]
    assert resent.body == cut.body and sorted(alert_ids(cut.json)) == sorted([a1.alert_id,
                                                                             a2.alert_id])
    attempts = (cut.headers[webhook.ATTEMPT_HEADER], resent.headers[webhook.ATTEMPT_HEADER])
    assert attempts == ("1", "2")
    assert await DeliveryState(redis, redis_ns).pending(sub_id) == {
        "pending_groups": 0, "outbox": 0, "dead_letters": 0}


async def test_reread_alert_is_not_routed_twice(redis, redis_ns):
    """The consumer re-reads alerts after a crash before its commit; they must not double."""
    sub_id = await add_subscription(redis, redis_ns, "http://127.0.0.1:9/never")
    async with httpx.AsyncClient() as http:
        engine = DeliveryEngine(redis, redis_ns, http=http, egress=LOCAL_RECEIVER)
        # a second worker (another process) must agree: the state is in Redis, not in memory
        other = DeliveryEngine(redis, redis_ns, http=http, egress=LOCAL_RECEIVER)
        try:
            a = make_alert("ACME")
            assert await engine.handle_alert(a) == {sub_id: "opened"}
            assert await engine.handle_alert(make_alert("ACME", topic="legal")) == {
                sub_id: "joined"}
            assert await engine.handle_alert(a) == {sub_id: "duplicate"}
            assert await other.handle_alert(a) == {sub_id: "duplicate"}
        finally:  # handle_alert started their sender tasks
            await engine.stop(grace_s=0)
            await other.stop(grace_s=0)
    sub = await SubscriptionStore(redis, redis_ns).get(sub_id)
    assert sub is not None
    state = DeliveryState(redis, redis_ns)
    group = json.loads(await redis.hget(state.keys(sub_id).groups, "ACME"))
    assert len(group["alerts"]) == 2


async def test_bad_alert_goes_to_dlq_and_consumption_continues(settings, redis, redis_ns,
                                                               new_topic, unique, kafka_producer,
                                                               receiver):
    topic, dlq = await new_topic("alerts"), await new_topic("dlq")
    await add_subscription(redis, redis_ns, f"{receiver.base_url}/hook")
    w = await Worker(redis, redis_ns, bootstrap=settings.kafka_bootstrap, topic=topic,
                     group_id=f"test-dlq-{unique}", dlq_topic=dlq, producer=kafka_producer).start()
    try:
        await kafka_producer.send_and_wait(topic, b'{"alert_id": "x"}', key=b"k")
        await kafka_producer.send_and_wait(topic, b"\xff not json")
        good = make_alert("ACME")
        await produce(kafka_producer, topic, good)
        await receiver.wait_for(lambda: len(receiver.delivered("/hook")) == 1)
    finally:
        await w.stop()
    consumer = AIOKafkaConsumer(dlq, bootstrap_servers=settings.kafka_bootstrap,
                                auto_offset_reset="earliest", group_id=f"test-dlqr-{unique}")
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=10_000, max_records=10)
        records = [r for rs in batch.values() for r in rs]
        while len(records) < 2:
            more = await consumer.getmany(timeout_ms=5_000, max_records=10)
            if not more:
                break
            records += [r for rs in more.values() for r in rs]
    finally:
        await consumer.stop()
    letters = [DeadLetter.model_validate_json(r.value) for r in records]
    assert [(d.reason, d.stage, d.origin.offset) for d in letters] == [
        ("schema", "deliver", 0), ("invalid_json", "deliver", 1)]


async def test_two_workers_send_each_delivery_once(settings, redis, redis_ns, new_topic, unique,
                                                   kafka_producer, receiver):
    """Scaled out (two workers, one consumer group), each delivery is still sent once: one
    worker at a time holds a subscription's send lease."""
    topic, dlq = await new_topic("alerts", partitions=2), await new_topic("dlq")
    await add_subscription(redis, redis_ns, f"{receiver.base_url}/hook", group_wait_s=0.3)
    workers = [await Worker(redis, redis_ns, bootstrap=settings.kafka_bootstrap, topic=topic,
                            group_id=f"test-pair-{unique}", dlq_topic=dlq,
                            producer=kafka_producer).start() for _ in range(2)]
    try:
        alerts = [make_alert(e, topic=t) for e in ("ACME", "MSFT", "AAPL", "TSLA")
                  for t in ("earnings", "legal")]
        await produce(kafka_producer, topic, *alerts)
        expected = {a.alert_id for a in alerts}
        await receiver.wait_for(lambda: {i for r in receiver.delivered("/hook").values()
                                         for i in alert_ids(r.json)} == expected)
        await asyncio.sleep(1.0)
    finally:
        for w in workers:
            await w.stop()
    reqs = receiver.at("/hook")
    assert len(reqs) == len({r.delivery_id for r in reqs}) == 4  # one per entity, none twice


async def test_stopped_while_joining_its_group_closes_the_consumer(settings, redis, redis_ns,
                                                                   new_topic, unique,
                                                                   kafka_producer):
    """A group consumer's start() waits for its first assignment; while another member holds
    the partitions that takes a rebalance (seconds). A stop in that window must still close
    the consumer (no heartbeat, fetcher or coordinator left behind in the group)."""
    topic, dlq = await new_topic("alerts", partitions=2), await new_topic("dlq")
    group = f"test-joining-{unique}"
    member = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap, group_id=group)
    await member.start()  # holds both partitions; rejoins only at its next heartbeat
    try:
        async with httpx.AsyncClient() as http:
            engine = DeliveryEngine(redis, redis_ns, http=http, egress=LOCAL_RECEIVER)
            joining = AlertConsumer(engine, bootstrap=settings.kafka_bootstrap, topic=topic,
                                    group_id=group, dlq_topic=dlq, producer=kafka_producer)
            task = asyncio.create_task(joining.run())
            await asyncio.sleep(0.5)
            inner = joining._consumer
            assert inner._coordinator is not None and not inner.assignment(), \
                "the consumer should be waiting for its first assignment"
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert inner._closed
    finally:
        await member.stop()
