"""Delivery state in Redis: pending groups, outbox items, delivery log, dead letters, leases.

Every method is one Redis transaction (or Lua call) on keys that share the subscription's
hash tag ``{<prefix>:sub:<id>}``, so it stays on one Redis Cluster slot and a crash between
two calls leaves a state the engine (``services.alerts.delivery``) can always resume from:

    route  : alert -> pending group (per entity, due after group_wait); seen ids make a
             re-read alert a no-op
    flush  : due group -> outbox item (idempotency key = group id, body frozen)
    finish : outbox item -> delivery log (or dead letter), or rescheduled with backoff
"""
from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from services.alerts.routing import (
    Decision,
    active_silence,
    alert_fingerprint,
    decide,
    group_key,
)
from services.alerts.subscriptions import Subscription
from services.core.backends import redis_errors
from services.core.schemas import Alert

log = logging.getLogger(__name__)

SEEN_TTL_S = 7 * 86400
MAX_GROUP_ALERTS = 500
# Delivery log entries kept per subscription (the API pages through them).
DELIVERY_LOG_MAX = 1000

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


def iso_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


class DeliveryState:
    """All reads and writes of delivery state; each method is one atomic Redis transaction."""

    def __init__(self, redis: Redis, prefix: str, log_max: int = DELIVERY_LOG_MAX) -> None:
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
        with redis_errors("acquire"):
            return bool(await self._lease(keys=[self.keys(sub_id).lease],
                                          args=[worker_id, int(ttl_s * 1000)]))

    async def release(self, sub_id: str, worker_id: str) -> None:
        with redis_errors("release"):
            await self._release(keys=[self.keys(sub_id).lease], args=[worker_id])

    async def route(self, sub: Subscription, alert: Alert, now: float) -> Decision:
        """Put the alert into the subscription's pending group for its entity (or log why not)."""
        k = self.keys(sub.id)
        gk, fp = group_key(alert), alert_fingerprint(alert)
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
                self._log(pipe, k, {"ts": iso_time(now), "status": d.outcome, "entity": gk,
                                    "alert_ids": [alert.alert_id], "reason": d.reason})
            return d

        with redis_errors("tx"):
            return await self._redis.transaction(tx, k.seen, k.groups, k.last,
                                                 value_from_callable=True)

    async def flush_due(self, sub: Subscription, now: float) -> list[str]:
        """Move groups whose wait is over into the outbox; returns the new delivery ids."""
        k = self.keys(sub.id)
        with redis_errors("flush due"):
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
            self._log(pipe, k, {"ts": iso_time(now), "status": "silenced", "entity": gk,
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
            "opened_at": iso_time(group["opened_at"]),
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
        self._log(pipe, k, {"ts": iso_time(now), "status": "queued", "delivery_id": delivery_id,
                            "entity": gk, "alert_ids": item["alert_ids"]})
        return delivery_id

    async def due_items(self, sub_id: str, now: float, limit: int = 20) -> list[dict[str, Any]]:
        k = self.keys(sub_id)
        with redis_errors("due items"):
            ids = await self._redis.zrangebyscore(k.outbox_due, "-inf", now, start=0, num=limit)
            if not ids:
                return []
            raws = await self._redis.hmget(k.outbox, ids)
            missing = [i for i, r in zip(ids, raws, strict=True) if r is None]
            if missing:
                await self._redis.zrem(k.outbox_due, *missing)
            return [json.loads(r) for r in raws if r is not None]

    async def begin_attempt(self, sub_id: str, item: dict[str, Any]) -> int:
        """Count the try durably before sending, so a crash loop cannot retry forever."""
        k = self.keys(sub_id)
        item["attempts"] = int(item.get("attempts", 0)) + 1
        with redis_errors("begin attempt"):
            await self._redis.hset(k.outbox, item["delivery_id"], _dumps(item))
        return item["attempts"]

    async def finish(self, sub_id: str, item: dict[str, Any], entry: dict[str, Any], *,
                     next_at: float | None = None, dead: bool = False) -> None:
        """Record the outcome of a try: delivered (default), retry at ``next_at``, or dead."""
        k = self.keys(sub_id)
        with redis_errors("finish"):
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

    async def next_wake(self, sub_id: str) -> float | None:
        k = self.keys(sub_id)
        with redis_errors("next wake"):
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zrange(k.due, 0, 0, withscores=True)
                pipe.zrange(k.outbox_due, 0, 0, withscores=True)
                a, b = await pipe.execute()
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
        with redis_errors("read list"):
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.lrange(key, offset, offset + limit - 1)
                pipe.llen(key)
                raws, total = await pipe.execute()
        return [json.loads(r) for r in raws], int(total)

    async def pending(self, sub_id: str) -> dict[str, int]:
        k = self.keys(sub_id)
        with redis_errors("pending"):
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hlen(k.groups)
                pipe.hlen(k.outbox)
                pipe.llen(k.dead)
                groups, outbox, dead = await pipe.execute()
        return {"pending_groups": int(groups), "outbox": int(outbox), "dead_letters": int(dead)}

    async def purge(self, sub_id: str) -> None:
        with redis_errors("purge"):
            await self._redis.delete(*self.keys(sub_id).all())
