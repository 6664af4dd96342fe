"""Delivery engine: alerts from ``yuqing.alerts`` to subscribers, at least once, never in a burst.

Flow (every arrow is a Redis transaction on keys that share the subscription's hash tag)::

    Kafka alert ──route──▶ pending group (per entity, due after group_wait)
                ──flush──▶ outbox item (idempotency key = group id, body frozen)
                ──send───▶ webhook / Kafka topic ──▶ delivery log (or dead letter)

* The consumer commits a Kafka offset only after the alert is in every matching subscription's
  group (durable with Redis AOF); a re-read alert is recognised by its id (``seen``) and ignored,
  so a restart neither loses nor doubles an alert.
* Groups and outbox items live in Redis, so a restarted worker sends what was due and resends
  only what was not confirmed, with the same ``X-Yuqing-Delivery`` id for the receiver to dedupe.
* Each subscription has its own sender task and every request its own timeout: one slow or
  failing webhook never delays the others. With several workers, a per-subscription lease in
  Redis lets exactly one of them send for a subscription at a time.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, Counter, Histogram
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.alerts import webhook
from services.alerts.egress import EgressPolicy, WebhookTargetRefused, WebhookTargetUnresolved
from services.alerts.routing import (
    Decision,
    active_silence,
    backoff_s,
    decide,
    fingerprint,
    group_key,
    matches,
    retryable_status,
)
from services.alerts.subscriptions import Subscription, SubscriptionStore, WebhookChannelIn
from services.core.aio import finish_despite_cancel, wait_event
from services.core.errors import BackendError, BackendUnavailable
from services.core.schemas import Alert, DeadLetter, SourceRef

log = logging.getLogger(__name__)

SEEN_TTL_S = 7 * 86400
MAX_GROUP_ALERTS = 500

# Take the lease if free, extend it if ours; 1 = we hold it.
_LEASE_LUA = """
local v = redis.call('GET', KEYS[1])
if (not v) or v == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class SubKeys:
    """Redis keys of one subscription's delivery state; ``{sub:<id>}`` keeps them in one slot."""

    groups: str       # hash entity -> pending group JSON
    due: str          # zset entity -> epoch seconds the group is due
    last: str         # hash "g:<entity>" / "f:<entity>|<topic>" -> epoch seconds of last send
    seen: str         # zset alert_id -> epoch seconds routed (dedupe on Kafka re-read)
    outbox: str       # hash delivery_id -> outbox item JSON (body, attempts)
    outbox_due: str   # zset delivery_id -> epoch seconds of next try
    log: str          # list of delivery log entries, newest first (capped)
    dead: str         # list of dead-lettered outbox items, newest first (capped)
    lease: str        # worker id holding the right to send for this subscription (PX ttl)

    @classmethod
    def of(cls, prefix: str, sub_id: str) -> SubKeys:
        base = f"{prefix}:{{sub:{sub_id}}}"
        return cls(*(f"{base}:{n}" for n in ("groups", "due", "last", "seen", "outbox",
                                               "outbox:due", "log", "dead", "lease")))

    def all(self) -> list[str]:
        return [self.groups, self.due, self.last, self.seen, self.outbox, self.outbox_due,
                self.log, self.dead, self.lease]


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), default=str)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


class DeliveryState:
    """All reads and writes of delivery state; each method is one atomic Redis transaction."""

    def __init__(self, redis: Redis, prefix: str, log_max: int = 1000) -> None:
        self._redis = redis
        self._prefix = prefix
        self._log_max = log_max
        self._lease = redis.register_script(_LEASE_LUA)
        self._release = redis.register_script(_RELEASE_LUA)

    def keys(self, sub_id: str) -> SubKeys:
        return SubKeys.of(self._prefix, sub_id)

    def _log(self, pipe: Any, k: SubKeys, entry: dict[str, Any]) -> None:
        pipe.lpush(k.log, _dumps(entry))
        pipe.ltrim(k.log, 0, self._log_max - 1)

    async def acquire(self, sub_id: str, worker_id: str, ttl_s: float) -> bool:
        """Hold (or keep holding) the right to send for a subscription: with several delivery
        workers only one sends a given subscription's deliveries at a time. A crashed holder's
        lease lapses after ``ttl_s``."""
        try:
            return bool(await self._lease(keys=[self.keys(sub_id).lease],
                                          args=[worker_id, int(ttl_s * 1000)]))
        except RedisError as exc:
            raise BackendUnavailable(str(exc), "redis") from exc

    async def release(self, sub_id: str, worker_id: str) -> None:
        try:
            await self._release(keys=[self.keys(sub_id).lease], args=[worker_id])
        except RedisError as exc:
            raise BackendUnavailable(str(exc), "redis") from exc

    async def route(self, sub: Subscription, alert: Alert, now: float) -> Decision:
        """Put the alert into the subscription's pending group for its entity (or log why not)."""
        k = self.keys(sub.id)
        gk, fp = group_key(alert), fingerprint(alert)
        alert_json = alert.model_dump(mode="json")

        async def tx(pipe: Any) -> Decision:
            seen = await pipe.zscore(k.seen, alert.alert_id) is not None
            raw_group = await pipe.hget(k.groups, gk)
            last_g, last_fp = await pipe.hmget(k.last, f"g:{gk}", f"f:{fp}")
            group = json.loads(raw_group) if raw_group else None
            d = decide(sub, alert, datetime.fromtimestamp(now, UTC), seen=seen,
                       group_due_at=group["due_at"] if group else None,
                       last_group_sent=float(last_g) if last_g else None,
                       last_fingerprint_sent=float(last_fp) if last_fp else None)
            pipe.multi()
            if d.outcome == "duplicate":
                pipe.zscore(k.seen, alert.alert_id)
                return d
            pipe.zadd(k.seen, {alert.alert_id: now})
            pipe.zremrangebyscore(k.seen, "-inf", now - SEEN_TTL_S)
            if d.outcome == "opened":
                group = {"group_id": uuid.uuid4().hex, "entity": gk, "opened_at": now,
                         "due_at": d.due_at, "alerts": [alert_json], "dropped": 0}
                pipe.hset(k.groups, gk, _dumps(group))
                pipe.zadd(k.due, {gk: d.due_at})
            elif d.outcome == "joined" and group is not None:
                if len(group["alerts"]) < MAX_GROUP_ALERTS:
                    group["alerts"].append(alert_json)
                else:
                    group["dropped"] = group.get("dropped", 0) + 1
                pipe.hset(k.groups, gk, _dumps(group))
            else:
                self._log(pipe, k, {"ts": _iso(now), "status": d.outcome, "entity": gk,
                                    "alert_ids": [alert.alert_id], "reason": d.reason})
            return d

        try:
            return await self._redis.transaction(tx, k.seen, k.groups, k.last,
                                                 value_from_callable=True)
        except RedisError as exc:
            raise BackendUnavailable(str(exc), "redis") from exc

    async def flush_due(self, sub: Subscription, now: float) -> list[str]:
        """Move groups whose wait is over into the outbox; returns the new delivery ids."""
        k = self.keys(sub.id)
        try:
            due = await self._redis.zrangebyscore(k.due, "-inf", now, start=0, num=100)
            out = []
            for raw_gk in due:
                gk = raw_gk.decode() if isinstance(raw_gk, bytes) else raw_gk
                delivery_id = await self._redis.transaction(
                    lambda pipe, gk=gk: self._flush_one(pipe, sub, k, gk, now), k.groups, k.due,
                    value_from_callable=True)
                if delivery_id:
                    out.append(delivery_id)
            return out
        except RedisError as exc:
            raise BackendUnavailable(str(exc), "redis") from exc

    async def _flush_one(self, pipe: Any, sub: Subscription, k: SubKeys, gk: str,
                         now: float) -> str | None:
        raw = await pipe.hget(k.groups, gk)
        pipe.multi()
        pipe.zrem(k.due, gk)
        if not raw:
            return None
        pipe.hdel(k.groups, gk)
        group = json.loads(raw)
        when = datetime.fromtimestamp(now, UTC)
        keep, muted = [], []
        for a in group["alerts"]:
            silenced = active_silence(sub.silences, Alert.model_validate(a), when)
            (muted if silenced else keep).append(a)
        if muted:  # a silence created while the group was waiting still applies
            self._log(pipe, k, {"ts": _iso(now), "status": "silenced", "entity": gk,
                                "alert_ids": [a["alert_id"] for a in muted],
                                "reason": "silenced before the group was sent"})
        if not keep:
            return None
        delivery_id = group["group_id"]
        body = {
            "version": "1",
            "delivery_id": delivery_id,
            "subscription": {"id": sub.id, "name": sub.name},
            "group": {"entity": gk},
            "opened_at": _iso(group["opened_at"]),
            "alert_count": len(keep) + group.get("dropped", 0),
            "alerts": keep,
        }
        item = {"delivery_id": delivery_id, "entity": gk,
                "alert_ids": [a["alert_id"] for a in keep],
                "body": _dumps(body), "attempts": 0, "created_at": now, "last_error": None}
        pipe.hset(k.outbox, delivery_id, _dumps(item))
        pipe.zadd(k.outbox_due, {delivery_id: now})
        last = {f"g:{gk}": now}
        for a in keep:
            last[f"f:{gk}|{a.get('topic', '*')}"] = now
        pipe.hset(k.last, mapping=last)
        self._log(pipe, k, {"ts": _iso(now), "status": "queued", "delivery_id": delivery_id,
                            "entity": gk, "alert_ids": item["alert_ids"]})
        return delivery_id

    async def due_items(self, sub_id: str, now: float, limit: int = 20) -> list[dict[str, Any]]:
        k = self.keys(sub_id)
        try:
            ids = await self._redis.zrangebyscore(k.outbox_due, "-inf", now, start=0, num=limit)
            if not ids:
                return []
            raws = await self._redis.hmget(k.outbox, ids)
            missing = [i for i, r in zip(ids, raws, strict=True) if r is None]
            if missing:
                await self._redis.zrem(k.outbox_due, *missing)
            return [json.loads(r) for r in raws if r is not None]
        except RedisError as exc:
            raise BackendUnavailable(str(exc), "redis") from exc

    async def begin_attempt(self, sub_id: str, item: dict[str, Any]) -> int:
        """Count the try durably before sending, so a crash loop cannot retry forever."""
        k = self.keys(sub_id)
        item["attempts"] = int(item.get("attempts", 0)) + 1
        try:
            await self._redis.hset(k.outbox, item["delivery_id"], _dumps(item))
        except RedisError as exc:
            raise BackendUnavailable(str(exc), "redis") from exc
        return item["attempts"]

    async def finish(self, sub_id: str, item: dict[str, Any], entry: dict[str, Any], *,
                     next_at: float | None = None, dead: bool = False) -> None:
        """Record the outcome of a try: delivered (default), retry at ``next_at``, or dead."""
        k = self.keys(sub_id)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                if next_at is not None:
                    item["last_error"] = entry.get("error")
                    pipe.hset(k.outbox, item["delivery_id"], _dumps(item))
                    pipe.zadd(k.outbox_due, {item["delivery_id"]: next_at})
                else:
                    pipe.hdel(k.outbox, item["delivery_id"])
                    pipe.zrem(k.outbox_due, item["delivery_id"])
                    if dead:
                        pipe.lpush(k.dead, _dumps({**item, "dead_at": entry["ts"],
                                                   "last_error": entry.get("error")}))
                        pipe.ltrim(k.dead, 0, self._log_max - 1)
                self._log(pipe, k, entry)
                await pipe.execute()
        except RedisError as exc:
            raise BackendUnavailable(str(exc), "redis") from exc

    async def next_wake(self, sub_id: str) -> float | None:
        k = self.keys(sub_id)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zrange(k.due, 0, 0, withscores=True)
                pipe.zrange(k.outbox_due, 0, 0, withscores=True)
                a, b = await pipe.execute()
        except RedisError as exc:
            raise BackendUnavailable(str(exc), "redis") from exc
        times = [s for _, s in a + b]
        return min(times) if times else None

    async def read_log(self, sub_id: str, offset: int, limit: int) -> tuple[list[dict], int]:
        return await self._read_list(self.keys(sub_id).log, offset, limit)

    async def read_dead(self, sub_id: str, offset: int, limit: int) -> tuple[list[dict], int]:
        items, total = await self._read_list(self.keys(sub_id).dead, offset, limit)
        for it in items:  # the body is what was sent; keep the response small
            it.pop("body", None)
        return items, total

    async def _read_list(self, key: str, offset: int, limit: int) -> tuple[list[dict], int]:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.lrange(key, offset, offset + limit - 1)
                pipe.llen(key)
                raws, total = await pipe.execute()
        except RedisError as exc:
            raise BackendUnavailable(str(exc), "redis") from exc
        return [json.loads(r) for r in raws], int(total)

    async def pending(self, sub_id: str) -> dict[str, int]:
        k = self.keys(sub_id)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hlen(k.groups)
                pipe.hlen(k.outbox)
                pipe.llen(k.dead)
                groups, outbox, dead = await pipe.execute()
        except RedisError as exc:
            raise BackendUnavailable(str(exc), "redis") from exc
        return {"pending_groups": int(groups), "outbox": int(outbox), "dead_letters": int(dead)}

    async def purge(self, sub_id: str) -> None:
        try:
            await self._redis.delete(*self.keys(sub_id).all())
        except RedisError as exc:
            raise BackendUnavailable(str(exc), "redis") from exc


class DeliveryMetrics:
    """Prometheus counters of the delivery worker (served by ``yuqing deliver --metrics-port``)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.routed = Counter("yuqing_deliver_alerts_routed_total",
                              "Alerts routed to a subscription, by outcome.", ["outcome"],
                              registry=self.registry)
        self.tries = Counter("yuqing_deliver_tries_total",
                             "Delivery tries, by result (delivered, retry, dead).", ["result"],
                             registry=self.registry)
        self.seconds = Histogram("yuqing_deliver_request_seconds",
                                 "Duration of one delivery try.", registry=self.registry)


@dataclass
class SendResult:
    ok: bool
    retry: bool
    status: int | None = None
    error: str | None = None


class DeliveryEngine:
    """Routes alerts into delivery state and runs one sender task per subscription."""

    def __init__(self, redis: Redis, prefix: str, *, http: httpx.AsyncClient,
                 producer: AIOKafkaProducer | None = None, max_attempts: int = 6,
                 backoff_base_s: float = 2.0, backoff_max_s: float = 600.0,
                 timeout_s: float = 10.0, poll_s: float = 1.0, log_max: int = 1000,
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None,
                 metrics: DeliveryMetrics | None = None,
                 egress: EgressPolicy | None = None,
                 reserved_topics: frozenset[str] = frozenset()) -> None:
        self.metrics = metrics or DeliveryMetrics()
        self._egress = egress or EgressPolicy()  # default: no internal networks
        self._reserved_topics = reserved_topics  # the pipeline's own topics: never a channel
        self.store = SubscriptionStore(redis, prefix)
        self.state = DeliveryState(redis, prefix, log_max)
        self._http = http
        self._producer = producer
        self._max_attempts = max_attempts
        self._backoff = (backoff_base_s, backoff_max_s)
        self._timeout_s = timeout_s
        self._poll_s = poll_s
        self._clock = clock
        self._rng = rng or random.Random()
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # A send holds the lease for at most timeout_s, so it cannot lapse mid-request.
        self._lease_s = timeout_s + max(5.0, 3 * poll_s)
        self._subs: dict[str, Subscription] = {}
        self._version: int | None = None
        self._tasks: dict[str, asyncio.Task] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._stopping = asyncio.Event()

    # -- subscriptions
    async def refresh(self) -> None:
        """Reload subscriptions when the store's version moved; start/stop sender tasks."""
        version = await self.store.version()
        if version == self._version:
            return
        subs = {s.id: s for s in await self.store.all()}
        self._subs, self._version = subs, version
        if self._stopping.is_set():
            return
        for sub_id in subs:
            if sub_id not in self._tasks or self._tasks[sub_id].done():
                self._wake[sub_id] = asyncio.Event()
                self._tasks[sub_id] = asyncio.create_task(self._sender(sub_id),
                                                          name=f"deliver:{sub_id}")
        for sub_id in list(self._tasks):
            if sub_id not in subs:
                self._tasks.pop(sub_id).cancel()
                self._wake.pop(sub_id, None)

    async def handle_alert(self, alert: Alert) -> dict[str, str]:
        """Route one alert to every matching subscription; returns sub id -> outcome."""
        await self.refresh()
        now = self._clock()
        outcomes: dict[str, str] = {}
        for sub in self._subs.values():
            if not sub.enabled or not matches(sub, alert):
                continue
            d = await self.state.route(sub, alert, now)
            outcomes[sub.id] = d.outcome
            self.metrics.routed.labels(d.outcome).inc()
            if d.outcome in ("opened", "joined") and sub.id in self._wake:
                self._wake[sub.id].set()
        return outcomes

    # -- running
    async def run(self) -> None:
        """Supervise sender tasks until :meth:`stop`."""
        while not self._stopping.is_set():
            try:
                await self.refresh()
            except BackendError as exc:
                log.warning("subscriptions unavailable: %s", exc)
            await wait_event(self._stopping, self._poll_s)

    async def stop(self, grace_s: float = 5.0) -> None:
        """Let in-flight requests finish (up to ``grace_s``), cancel the senders, and hand
        their leases back so another worker can take over at once."""
        self._stopping.set()
        for ev in self._wake.values():
            ev.set()
        tasks = list(self._tasks.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace_s)
            for t in pending:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for sub_id in list(self._tasks):
            with contextlib.suppress(BackendError):
                await self.state.release(sub_id, self.worker_id)
        self._tasks.clear()

    def abort(self) -> None:
        """Cancel everything at once, as a crash would (used by tests of restart safety)."""
        self._stopping.set()
        for t in self._tasks.values():
            t.cancel()
        self._tasks.clear()

    async def _sender(self, sub_id: str) -> None:
        wake = self._wake[sub_id]
        while not self._stopping.is_set():
            sub = self._subs.get(sub_id)
            if sub is None:
                return
            wake.clear()
            try:
                if await self.state.acquire(sub_id, self.worker_id, self._lease_s):
                    now = self._clock()
                    await self.state.flush_due(sub, now)
                    for item in await self.state.due_items(sub_id, now):
                        if self._stopping.is_set() or not await self.state.acquire(
                                sub_id, self.worker_id, self._lease_s):
                            break
                        await self._deliver(sub, item)
                    next_at = await self.state.next_wake(sub_id)
                else:  # another worker sends for this subscription
                    next_at = None
            except BackendError as exc:
                log.warning("delivery for subscription %s paused: %s", sub_id, exc)
                next_at = None
            except asyncio.CancelledError:
                raise
            except Exception:  # keep the sender alive; the item stays in the outbox
                log.exception("delivery loop error for subscription %s", sub_id)
                next_at = None
            wait = self._poll_s if next_at is None else min(self._poll_s,
                                                             max(0.0, next_at - self._clock()))
            if wait > 0:
                await wait_event(wake, wait)

    async def _deliver(self, sub: Subscription, item: dict[str, Any]) -> None:
        attempt = await self.state.begin_attempt(sub.id, item)
        started = self._clock()
        result = await self._send(sub, item, attempt)
        now = self._clock()
        self.metrics.seconds.observe(max(0.0, now - started))
        entry: dict[str, Any] = {"ts": _iso(now), "delivery_id": item["delivery_id"],
                                 "entity": item["entity"], "alert_ids": item["alert_ids"],
                                 "attempt": attempt, "http_status": result.status,
                                 "error": result.error,
                                 "duration_ms": round((now - started) * 1000, 1)}
        if result.ok:
            self.metrics.tries.labels("delivered").inc()
            await self.state.finish(sub.id, item, {**entry, "status": "delivered"})
        elif result.retry and attempt < self._max_attempts:
            self.metrics.tries.labels("retry").inc()
            delay = backoff_s(attempt, *self._backoff, rng=self._rng)
            await self.state.finish(sub.id, item, {**entry, "status": "retry",
                                                   "next_try_at": _iso(now + delay)},
                                    next_at=now + delay)
        else:
            self.metrics.tries.labels("dead").inc()
            log.warning("delivery %s to subscription %s dead after %d tries: %s",
                        item["delivery_id"], sub.id, attempt, result.error)
            await self.state.finish(sub.id, item, {**entry, "status": "dead"}, dead=True)

    async def _send(self, sub: Subscription, item: dict[str, Any], attempt: int) -> SendResult:
        body = item["body"].encode()
        channel = sub.channel
        if isinstance(channel, WebhookChannelIn):
            try:  # resolved and checked here; the request goes to the checked address
                target = await self._egress.pin(channel.url)
            except WebhookTargetRefused as exc:  # never retried: the target itself is refused
                return SendResult(False, False, error=str(exc))
            except WebhookTargetUnresolved as exc:  # DNS down or slow: like a network error
                return SendResult(False, True, error=str(exc))
            hdrs = webhook.headers(channel.secret.get_secret_value(), body, item["delivery_id"],
                                   attempt, sub.id, now=self._clock())
            try:
                r = await self._http.post(target.url, content=body,
                                          headers={**hdrs, **target.headers},
                                          extensions=target.extensions, timeout=self._timeout_s)
            except httpx.TimeoutException:
                return SendResult(False, True, error="timeout")
            except httpx.HTTPError as exc:  # the class only: messages may echo the URL
                return SendResult(False, True, error=type(exc).__name__)
            if 200 <= r.status_code < 300:
                return SendResult(True, False, r.status_code)
            return SendResult(False, retryable_status(r.status_code), r.status_code,
                              f"HTTP {r.status_code}")
        if channel.topic in self._reserved_topics:  # never retried: the target is refused
            return SendResult(False, False, error=f"topic {channel.topic!r} is one of yuqing's "
                                                  "own pipeline topics")
        if self._producer is None:
            return SendResult(False, True, error="no Kafka producer configured")
        try:
            await asyncio.wait_for(self._producer.send_and_wait(
                channel.topic, body, key=item["entity"].encode(),
                headers=[(webhook.DELIVERY_HEADER, item["delivery_id"].encode())]),
                self._timeout_s)
        except (KafkaError, TimeoutError) as exc:
            return SendResult(False, True, error=type(exc).__name__)
        return SendResult(True, False)


class AlertConsumer:
    """Consumes alerts and routes them; commits offsets only after routing is durable.

    A message that is not a valid :class:`Alert` is kept as a :class:`DeadLetter` on the DLQ
    topic (stage ``deliver``) before its offset is committed.
    """

    def __init__(self, engine: DeliveryEngine, *, bootstrap: str, topic: str, group_id: str,
                 dlq_topic: str, producer: AIOKafkaProducer, from_beginning: bool = False,
                 retry_s: float = 2.0) -> None:
        self._engine = engine
        self._producer = producer
        self._dlq_topic = dlq_topic
        self._topic = topic
        self._retry_s = retry_s
        self._consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False,
            auto_offset_reset="earliest" if from_beginning else "latest")
        self._stopping = asyncio.Event()
        self.routed = 0

    async def run(self) -> None:
        try:
            # inside the try: a group consumer's start() waits for its first assignment, and a
            # stop during that wait must still close what start() had opened
            await self._consumer.start()
            while not self._stopping.is_set():
                batch = await self._consumer.getmany(timeout_ms=500, max_records=200)
                if not batch:
                    continue
                try:
                    for records in batch.values():
                        for rec in records:
                            await self._handle(rec)
                    await self._consumer.commit()
                except (BackendError, KafkaError) as exc:
                    log.warning("routing failed, will re-read from the last commit: %s", exc)
                    await self._rewind()
                    await wait_event(self._stopping, self._retry_s)
        finally:
            await finish_despite_cancel(self._consumer.stop())

    def stop(self) -> None:
        self._stopping.set()

    async def _rewind(self) -> None:
        for tp in self._consumer.assignment():
            committed = await self._consumer.committed(tp)
            if committed is None:
                await self._consumer.seek_to_beginning(tp)
            else:
                self._consumer.seek(tp, committed)

    async def _handle(self, rec: Any) -> None:
        try:
            alert = Alert.model_validate_json(rec.value)
        except ValidationError as exc:
            bad_json = any(e["type"] == "json_invalid" for e in exc.errors())
            await self._dead_letter(rec, "invalid_json" if bad_json else "schema", str(exc))
            return
        await self._engine.handle_alert(alert)
        self.routed += 1

    async def _dead_letter(self, rec: Any, reason: str, error: str) -> None:
        dl = DeadLetter(reason=reason, error=error[:2000], stage="deliver",
                        original_b64=base64.b64encode(rec.value or b"").decode(),
                        key_b64=base64.b64encode(rec.key).decode() if rec.key else None,
                        origin=SourceRef(topic=rec.topic, partition=rec.partition,
                                         offset=rec.offset),
                        failed_at=datetime.now(UTC))
        await self._producer.send_and_wait(self._dlq_topic, dl.model_dump_json().encode(),
                                           key=rec.key)
