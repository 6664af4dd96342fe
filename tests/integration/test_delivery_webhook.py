"""Webhook delivery end to end: Kafka alerts -> routing -> grouped, signed POSTs to a real
local receiver; retries, dead letters, silences and isolation between subscriptions."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer

from services.alerts import webhook
from services.alerts.delivery_state import DeliveryState
from services.alerts.egress import EgressPolicy
from tests.integration.api_helpers import api_client, auth, isolated_settings, make_alert, make_keys
from tests.integration.delivery_helpers import (
    LOCAL_RECEIVER,
    SECRET,
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


@pytest_asyncio.fixture
async def env(settings, redis, redis_ns, new_topic, kafka_producer, unique):
    topic = await new_topic("alerts")
    dlq = await new_topic("dlq")
    workers: list[Worker] = []

    def worker(**kw) -> Worker:
        w = Worker(redis, redis_ns, bootstrap=settings.kafka_bootstrap, topic=topic,
                   group_id=f"test-deliver-{unique}", dlq_topic=dlq, producer=kafka_producer,
                   **kw)
        workers.append(w)
        return w

    yield {"topic": topic, "dlq": dlq, "worker": worker}
    for w in workers:
        await w.crash()


async def _log(redis, ns, sub_id):
    items, _ = await DeliveryState(redis, ns).read_log(sub_id, 0, 100)
    return items


async def test_spike_becomes_one_grouped_signed_webhook(env, receiver, redis, redis_ns,
                                                        kafka_producer, settings, es_prefix):
    sub_id = await add_subscription(redis, redis_ns, f"{receiver.base_url}/hook",
                                    filters={"entities": ["ACME"]}, group_wait_s=1.5)
    await env["worker"]().start()
    spike = [make_alert("ACME", topic=t) for t in ("earnings", "legal", "management", "*")]
    await produce(kafka_producer, env["topic"], *spike[:2], make_alert("OTHER"), *spike[2:])

    await receiver.wait_for(lambda: len(receiver.at("/hook")) >= 1)
    await asyncio.sleep(1.5)  # anything else for this group would have arrived by now
    got = receiver.at("/hook")
    assert len(got) == 1
    req = got[0]
    assert req.status == 200
    assert webhook.verify(SECRET, req.body, req.headers[webhook.SIGNATURE_HEADER],
                          req.headers[webhook.TIMESTAMP_HEADER])
    assert not webhook.verify("not-the-secret-0123456789", req.body,
                              req.headers[webhook.SIGNATURE_HEADER],
                              req.headers[webhook.TIMESTAMP_HEADER])
    body = req.json
    assert sorted(alert_ids(body)) == sorted(a.alert_id for a in spike)
    assert body["group"] == {"entity": "ACME"} and body["alert_count"] == 4
    assert req.delivery_id == body["delivery_id"]
    assert req.headers[webhook.SUBSCRIPTION_HEADER] == sub_id
    assert SECRET.encode() not in req.body

    # the delivery log is readable through the API
    s = isolated_settings(settings, redis_ns)
    keys = await make_keys(redis, redis_ns)
    async with api_client(s) as client:
        r = await client.get(f"/v1/subscriptions/{sub_id}/deliveries", headers=auth(keys["read"]))
    assert r.status_code == 200
    statuses = [e["status"] for e in r.json()["items"]]
    assert statuses == ["delivered", "queued"]
    assert r.json()["items"][0]["delivery_id"] == body["delivery_id"]


async def test_receiver_failing_twice_then_ok_gets_it_once(env, receiver, redis, redis_ns,
                                                           kafka_producer):
    receiver.scripts["/flaky"] = [500, 503]
    sub_id = await add_subscription(redis, redis_ns, f"{receiver.base_url}/flaky")
    await env["worker"]().start()
    a = make_alert("ACME")
    await produce(kafka_producer, env["topic"], a)

    await receiver.wait_for(lambda: len(receiver.delivered("/flaky")) == 1)
    await asyncio.sleep(0.5)
    reqs = receiver.at("/flaky")
    assert [r.status for r in reqs] == [500, 503, 200]
    assert len({r.delivery_id for r in reqs}) == 1  # same idempotency key on every try
    assert [r.headers[webhook.ATTEMPT_HEADER] for r in reqs] == ["1", "2", "3"]
    assert len({r.body for r in reqs}) == 1  # body frozen at queue time
    log = await _log(redis, redis_ns, sub_id)
    assert [e["status"] for e in log] == ["delivered", "retry", "retry", "queued"]
    assert [e.get("http_status") for e in log[:3]] == [200, 503, 500]
    assert await DeliveryState(redis, redis_ns).pending(sub_id) == {
        "pending_groups": 0, "outbox": 0, "dead_letters": 0}


async def test_last_failed_try_becomes_a_dead_letter(env, receiver, redis, redis_ns,
                                                     kafka_producer):
    receiver.scripts["/down"] = [500, 502, 504]
    receiver.scripts["/gone"] = [410]
    down = await add_subscription(redis, redis_ns, f"{receiver.base_url}/down")
    gone = await add_subscription(redis, redis_ns, f"{receiver.base_url}/gone")
    await env["worker"](max_attempts=3).start()
    a = make_alert("ACME")
    await produce(kafka_producer, env["topic"], a)

    state = DeliveryState(redis, redis_ns)

    async def dead(sub_id):
        return (await state.pending(sub_id))["dead_letters"]

    for _ in range(200):  # state is polled from Redis: there is no event to wait on
        if await dead(down) and await dead(gone):
            break
        await asyncio.sleep(0.1)
    assert [r.status for r in receiver.at("/down")] == [500, 502, 504]
    assert [r.status for r in receiver.at("/gone")] == [410]  # 4xx: no point retrying
    items, total = await state.read_dead(down, 0, 10)
    assert total == 1 and items[0]["attempts"] == 3 and items[0]["alert_ids"] == [a.alert_id]
    assert items[0]["last_error"] == "HTTP 504"
    assert [e["status"] for e in await _log(redis, redis_ns, down)] == \
        ["dead", "retry", "retry", "queued"]
    assert (await state.pending(down))["outbox"] == 0


async def test_internal_target_is_dead_lettered_without_a_request(env, receiver, redis, redis_ns,
                                                                  kafka_producer):
    """With the default egress policy the worker never calls an internal address: a name that
    resolves (at delivery time) to the local receiver's 127.0.0.1 is refused at once."""
    port = receiver.base_url.rsplit(":", 1)[1]
    sub_id = await add_subscription(redis, redis_ns, f"http://receiver.test:{port}/in")

    async def resolve(host: str, port: int) -> list[str]:
        return ["127.0.0.1"] if host == "receiver.test" else []

    await env["worker"](egress=EgressPolicy(resolver=resolve)).start()
    await produce(kafka_producer, env["topic"], make_alert("ACME"))
    state = DeliveryState(redis, redis_ns)
    for _ in range(200):
        if (await state.pending(sub_id))["dead_letters"]:
            break
        await asyncio.sleep(0.1)
    items, total = await state.read_dead(sub_id, 0, 10)
    assert total == 1 and items[0]["attempts"] == 1  # refused targets are not retried
    assert "receiver.test resolves to a loopback address" in items[0]["last_error"]
    assert "127.0.0.1" not in items[0]["last_error"]  # logs are readable: no internal address
    assert receiver.at("/in") == []


async def test_delivery_goes_to_the_address_that_was_checked(env, receiver, redis, redis_ns,
                                                             kafka_producer):
    """The name is resolved once, by the guard; the request is sent to that address with the
    name in Host. ``receiver.test`` exists only in the guard's resolver, so a delivery that
    arrives proves the HTTP client did not resolve the name again (no DNS-rebinding window)."""
    port = int(receiver.base_url.rsplit(":", 1)[1])
    await add_subscription(redis, redis_ns, f"http://receiver.test:{port}/pinned")

    async def resolve(host: str, port: int) -> list[str]:
        return ["127.0.0.1"] if host == "receiver.test" else []

    policy = EgressPolicy(allowed=LOCAL_RECEIVER.allowed, resolver=resolve)
    await env["worker"](egress=policy).start()
    a = make_alert("ACME")
    await produce(kafka_producer, env["topic"], a)
    await receiver.wait_for(lambda: len(receiver.delivered("/pinned")) == 1, within_s=30)
    req = next(iter(receiver.delivered("/pinned").values()))
    assert req.headers["Host"] == f"receiver.test:{port}"
    assert alert_ids(req.json) == [a.alert_id]


async def test_api_refuses_internal_webhook_targets(settings, redis, redis_ns, es_prefix):
    s = isolated_settings(settings, redis_ns, webhook_allow_networks="")
    keys = await make_keys(redis, redis_ns)
    body = {"name": "n", "channel": {"type": "webhook", "url": "https://hooks.example/x",
                                     "secret": SECRET}}
    async with api_client(s) as client:
        for url in ("http://169.254.169.254/latest/meta-data/", "http://127.0.0.1:9200/_bulk",
                    "https://10.0.0.5/hook", "http://localhost:6379/"):
            r = await client.post("/v1/subscriptions", headers=auth(keys["subscribe"]),
                                  json={**body, "channel": {**body["channel"], "url": url}})
            assert r.status_code == 422, (url, r.text)
            assert "YUQING_WEBHOOK_ALLOW_NETWORKS" in r.json()["detail"]
        for topic in (s.topic_labels, s.topic_docs_clean, s.topic_news_raw):
            r = await client.post("/v1/subscriptions", headers=auth(keys["subscribe"]),
                                  json={**body, "channel": {"type": "kafka", "topic": topic}})
            assert r.status_code == 422 and "pipeline topics" in r.json()["detail"], topic
        r = await client.post("/v1/subscriptions", headers=auth(keys["subscribe"]), json=body)
        assert r.status_code == 201, r.text
        r = await client.patch(f"/v1/subscriptions/{r.json()['id']}",
                               headers=auth(keys["subscribe"]),
                               json={"channel": {**body["channel"], "url": "http://[::1]/"}})
        assert r.status_code == 422 and "loopback" in r.json()["detail"]


async def test_silence_suppresses(env, receiver, redis, redis_ns, kafka_producer):
    until = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    sub_id = await add_subscription(redis, redis_ns, f"{receiver.base_url}/quiet",
                                    silences=[{"entity": "ACME", "until": until}])
    await env["worker"]().start()
    muted, heard = make_alert("ACME"), make_alert("MSFT")
    await produce(kafka_producer, env["topic"], muted, heard)

    await receiver.wait_for(lambda: len(receiver.delivered("/quiet")) >= 1)
    await asyncio.sleep(1.0)
    got = receiver.delivered("/quiet")
    assert [alert_ids(r.json) for r in got.values()] == [[heard.alert_id]]
    log = await _log(redis, redis_ns, sub_id)
    silenced = [e for e in log if e["status"] == "silenced"]
    assert [e["alert_ids"] for e in silenced] == [[muted.alert_id]]


async def test_repeat_interval_suppresses_renotification(env, receiver, redis, redis_ns,
                                                        kafka_producer):
    sub_id = await add_subscription(redis, redis_ns, f"{receiver.base_url}/rep",
                                    group_wait_s=0.2, group_interval_s=0, repeat_interval_s=3600)
    await env["worker"]().start()
    first = make_alert("ACME", topic="legal")
    await produce(kafka_producer, env["topic"], first)
    await receiver.wait_for(lambda: len(receiver.delivered("/rep")) == 1)
    again, other_topic = make_alert("ACME", topic="legal"), make_alert("ACME", topic="earnings")
    await produce(kafka_producer, env["topic"], again, other_topic)
    await receiver.wait_for(lambda: len(receiver.delivered("/rep")) == 2)
    await asyncio.sleep(1.0)
    sent = [alert_ids(r.json) for r in receiver.delivered("/rep").values()]
    assert sent == [[first.alert_id], [other_topic.alert_id]]
    log = await _log(redis, redis_ns, sub_id)
    assert [e["alert_ids"] for e in log if e["status"] == "repeat"] == [[again.alert_id]]


async def test_slow_webhook_does_not_delay_others(env, receiver, redis, redis_ns,
                                                  kafka_producer):
    receiver.scripts["/slow"] = ["hang"]
    receiver.hang_s = 30
    slow = await add_subscription(redis, redis_ns, f"{receiver.base_url}/slow", group_wait_s=0.2)
    await add_subscription(redis, redis_ns, f"{receiver.base_url}/fast", group_wait_s=1.0)
    await env["worker"](timeout_s=8.0).start()
    await produce(kafka_producer, env["topic"], make_alert("ACME"))

    await receiver.wait_for(lambda: len(receiver.delivered("/fast")) == 1)
    # the slow request started first and is still hanging: nothing recorded for it yet
    assert len(receiver.at("/slow")) == 1
    fast = next(iter(receiver.delivered("/fast").values()))
    assert receiver.at("/slow")[0].arrived < fast.arrived
    assert [e["status"] for e in await _log(redis, redis_ns, slow)] == ["queued"]


async def test_kafka_channel(env, redis, redis_ns, kafka_producer, new_topic, settings, unique):
    out_topic = await new_topic("desk")
    await add_subscription(redis, redis_ns, "http://unused", group_wait_s=0.2,
                           channel={"type": "kafka", "topic": out_topic})
    await env["worker"]().start()
    a = make_alert("ACME")
    await produce(kafka_producer, env["topic"], a)
    consumer = AIOKafkaConsumer(out_topic, bootstrap_servers=settings.kafka_bootstrap,
                                auto_offset_reset="earliest", group_id=f"test-desk-{unique}")
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=20_000, max_records=5)
    finally:
        await consumer.stop()
    msgs = [m for ms in batch.values() for m in ms]
    assert len(msgs) == 1
    body = json.loads(msgs[0].value)
    assert alert_ids(body) == [a.alert_id] and msgs[0].key == b"ACME"
    assert dict(msgs[0].headers)[webhook.DELIVERY_HEADER].decode() == body["delivery_id"]


async def test_deliver_command_runs_and_stops_on_sigterm(receiver, redis, redis_ns, new_topic,
                                                         kafka_producer, unique):
    topic = await new_topic("alerts")
    await add_subscription(redis, redis_ns, f"{receiver.base_url}/cli", group_wait_s=0.2)
    # the namespace names the alerts topic, the consumer group and the Redis prefix
    assert topic == f"{redis_ns}.alerts"
    env = {**os.environ, "YUQING_NAMESPACE": redis_ns,
           "YUQING_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8"}  # the receiver is local
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        ".venv/bin/yuqing", "deliver", "--from-beginning", "--metrics-port", str(port), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        a = make_alert("ACME")
        await produce(kafka_producer, topic, a)
        await receiver.wait_for(lambda: len(receiver.delivered("/cli")) == 1, within_s=60)
        assert alert_ids(next(iter(receiver.delivered("/cli").values())).json) == [a.alert_id]
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
        assert 'yuqing_deliver_tries_total{result="delivered"} 1.0' in text
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert "delivery worker stopped" in err.decode()
    assert SECRET not in err.decode()
