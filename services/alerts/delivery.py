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
import contextlib
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, Counter, Histogram
from redis.asyncio import Redis

from services.alerts import webhook
from services.alerts.delivery_state import DELIVERY_LOG_MAX, DeliveryState, iso_time
from services.alerts.egress import EgressPolicy, WebhookTargetRefused, WebhookTargetUnresolved
from services.alerts.routing import (
    matches,
    retryable_status,
)
from services.alerts.subscriptions import Subscription, SubscriptionStore, WebhookChannelIn
from services.core.aio import wait_event
from services.core.backoff import backoff_s
from services.core.errors import BackendError
from services.core.schemas import Alert

log = logging.getLogger(__name__)

# Retries: 2 s, 4 s, ... capped at 10 minutes (with jitter, services.core.backoff), so six
# tries span about a minute and a receiver down for a deploy still gets its deliveries.
BACKOFF_BASE_S = 2.0
BACKOFF_MAX_S = 600.0
# Longest a subscription's sender sleeps before re-checking due work (it is also woken at
# once when an alert is routed to it).
POLL_S = 1.0


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
                 backoff_base_s: float = BACKOFF_BASE_S, backoff_max_s: float = BACKOFF_MAX_S,
                 timeout_s: float = 10.0, poll_s: float = POLL_S,
                 log_max: int = DELIVERY_LOG_MAX,
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
        entry: dict[str, Any] = {"ts": iso_time(now), "delivery_id": item["delivery_id"],
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
                                                   "next_try_at": iso_time(now + delay)},
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
