"""Trend counters in Redis: idempotent writes, one-round-trip reads.

Writes: per document and per bucket (its minute and its hour) one Lua call adds the doc_id
to the bucket's ``seen`` set and, only if it was not there, bumps every counter of the
document for that bucket; all calls of a batch go in one pipeline. A redelivered document
(after a crash before the Kafka commit) therefore changes nothing, and a crash half-way
through a batch leaves each bucket either fully counted or not at all for each document.

Redis Cluster: all keys of one Lua call share the bucket's hash tag (``{m<minute>}`` or
``{h<hour>}``, see :mod:`services.trends.windows`), so every call is single-slot; the
pipeline is non-transactional, so redis-py's cluster client can split it per node. The
minute and hour calls are separate (different slots) and each is idempotent on its own.

Reads: :meth:`TrendStore.read_many` fetches every bucket hash needed for the 5 m, 1 h and 24 h
views of any number of series in one pipelined round trip, then rolls them up locally.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from services.core.backends import redis_errors
from services.core.errors import ConfigError
from services.core.schemas import ScoredDoc, utcnow
from services.trends.windows import (
    RANKED_DIMS,
    WINDOWS,
    Bucket,
    KeySpace,
    Resolution,
    TrendCounts,
    dims_of,
    event_time,
    expire_at,
    hour_bucket,
    minute_bucket,
    rollup,
    series_buckets,
    series_sentiment,
    unique_buckets,
    window_buckets,
)

# KEYS: seen, <nh count hashes>, <rank zsets>;  ARGV: doc_id, expire_at, nh, np, the np label
# names of the probabilities, then per count hash its label and np probabilities ("": none),
# then one member per rank zset. Labels are per hash: an entity's series count the document's
# sentiment towards that entity (services.trends.windows.series_sentiment).
_RECORD_LUA = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
local exp = ARGV[2]
redis.call('EXPIREAT', KEYS[1], exp)
local nh = tonumber(ARGV[3])
local np = tonumber(ARGV[4])
local base = 5 + np
for i = 1, nh do
  local k = KEYS[i + 1]
  local off = base + (i - 1) * (np + 1)
  redis.call('HINCRBY', k, 'n', 1)
  redis.call('HINCRBY', k, 'n:' .. ARGV[off], 1)
  for j = 1, np do
    local p = ARGV[off + j]
    if p ~= '' then redis.call('HINCRBYFLOAT', k, 's:' .. ARGV[4 + j], p) end
  end
  redis.call('EXPIREAT', k, exp)
end
local mbase = base + nh * (np + 1)
for i = nh + 2, #KEYS do
  redis.call('ZINCRBY', KEYS[i], 1, ARGV[mbase + i - nh - 2])
  redis.call('EXPIREAT', KEYS[i], exp)
end
return 1
"""


def _prob_arg(p: float | None) -> str:
    # A NaN would make HINCRBYFLOAT fail on every redelivery (a poison message): skip it.
    return repr(float(p)) if p is not None and math.isfinite(p) else ""


class TrendPoint(BaseModel):
    start: datetime
    counts: TrendCounts


class TrendStore:
    """Per-series sentiment counters. ``retention_s``: minute buckets; ``hour_retention_s``:
    hour buckets (default: a week, or ``retention_s`` if longer)."""

    def __init__(self, redis: Redis, prefix: str, retention_s: int,
                 hour_retention_s: int | None = None) -> None:
        if retention_s < 24 * 3600:
            # The 24 h view reads minute buckets at its start edge.
            raise ConfigError(f"trends retention is {retention_s // 3600} h; the 24h view needs "
                              "at least 24 (YUQING_TRENDS_RETENTION_H)")
        self.redis = redis
        self.keys = KeySpace(prefix)
        self.retention_s = int(retention_s)
        self.hour_retention_s = int(hour_retention_s or max(retention_s, 7 * 24 * 3600))
        self._sha: str | None = None

    def _call_args(self, doc: ScoredDoc, b: Bucket, exp: int) -> tuple[list[str], list[Any]]:
        dims = dims_of(doc)
        names = sorted(doc.sentiment.probabilities)
        keys = [self.keys.seen(b)] + [self.keys.counts(b, d, v) for d, v in dims]
        per_hash: list[Any] = []
        members: list[str] = []
        for d, v in dims:
            label, probs = series_sentiment(doc, d, v)
            per_hash.append(label)
            per_hash += [_prob_arg(probs.get(n)) for n in names]
            if d in RANKED_DIMS:
                keys += [self.keys.rank(b, d), self.keys.rank(b, d, label)]
                members += [v, v]
        return keys, [doc.doc_id, exp, len(dims), len(names), *names, *per_hash, *members]

    async def record(self, docs: Sequence[ScoredDoc], now: datetime | None = None) -> int:
        """Count ``docs`` (each at most once, ever); returns how many were newly counted.

        Documents whose minute bucket is already past the retention are skipped (their keys
        would expire on arrival) and not counted.
        """
        now_s = int((now or utcnow()).timestamp())
        calls: list[tuple[list[str], list[Any]]] = []
        for doc in docs:
            t = event_time(doc)
            mb, hb = minute_bucket(t), hour_bucket(t)
            m_exp = expire_at(mb, self.retention_s)
            if m_exp <= now_s:
                continue
            calls.append(self._call_args(doc, mb, m_exp))
            calls.append(self._call_args(doc, hb, expire_at(hb, self.hour_retention_s)))
        if not calls:
            return 0
        with redis_errors("trend record"):
            try:
                results = await self._run(calls)
            except NoScriptError:  # Redis restarted or SCRIPT FLUSH: load again, re-run
                self._sha = None  # (safe: every call is idempotent)
                results = await self._run(calls)
        # Minute results are at even positions; the hour call of a doc mirrors its minute call
        # except after a crash between the two, which its redelivery completes.
        return sum(int(r) for r in results[0::2])

    async def _run(self, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        # SCRIPT LOAD then EVALSHA in a plain pipeline (not redis-py's Script objects): the
        # cluster client loads a script on every primary and can pipeline EVALSHA per slot.
        if self._sha is None:
            self._sha = str(await self.redis.script_load(_RECORD_LUA))
        async with self.redis.pipeline(transaction=False) as pipe:
            for keys, args in calls:
                pipe.evalsha(self._sha, len(keys), *keys, *args)
            return await pipe.execute()

    async def read_many(self, series: Sequence[tuple[str, str]], now: datetime | None = None
                        ) -> dict[tuple[str, str], dict[str, TrendCounts]]:
        """5m / 1h / 24h counts for several (dim, value) series, in one round trip."""
        wb = window_buckets(now or utcnow())
        buckets = unique_buckets(wb.values())
        if not series:
            return {}
        with redis_errors("trend read"):
            async with self.redis.pipeline(transaction=False) as pipe:
                for d, v in series:
                    for b in buckets:
                        pipe.hgetall(self.keys.counts(b, d, v))
                replies = await pipe.execute()
        out: dict[tuple[str, str], dict[str, TrendCounts]] = {}
        n = len(buckets)
        for i, s in enumerate(series):
            by_bucket = dict(zip(buckets, replies[i * n:(i + 1) * n], strict=True))
            out[s] = {w: rollup(by_bucket[b] for b in bs) for w, bs in wb.items()}
        return out

    async def read(self, dim: str, value: str, now: datetime | None = None
                   ) -> dict[str, TrendCounts]:
        """``{"5m": TrendCounts, "1h": ..., "24h": ...}`` for one series, in one round trip."""
        return (await self.read_many([(dim, value)], now))[(dim, value)]

    async def series(self, dim: str, value: str, start: datetime, end: datetime,
                     resolution: Resolution = "minute") -> list[TrendPoint]:
        """One point per bucket in ``[start, end)`` (empty buckets included, as zeros)."""
        buckets = series_buckets(start, end, resolution)
        if not buckets:
            return []
        with redis_errors("trend series"):
            async with self.redis.pipeline(transaction=False) as pipe:
                for b in buckets:
                    pipe.hgetall(self.keys.counts(b, dim, value))
                replies = await pipe.execute()
        return [TrendPoint(start=b.start, counts=rollup([h])) for b, h in
                zip(buckets, replies, strict=True)]

    async def top(self, dim: str, window: str = "1h", n: int = 10, label: str | None = None,
                  now: datetime | None = None) -> list[tuple[str, int]]:
        """Most-mentioned values of ``dim`` ("entity" or "topic") in a window, optionally only
        counting documents with ``label``; one round trip."""
        if dim not in RANKED_DIMS:
            raise ValueError(f"top() supports {RANKED_DIMS}, not {dim!r}")
        if window not in WINDOWS:
            raise ValueError(f"window must be one of {list(WINDOWS)}")
        buckets = window_buckets(now or utcnow(), {window: WINDOWS[window]})[window]
        with redis_errors("trend top"):
            async with self.redis.pipeline(transaction=False) as pipe:
                for b in buckets:
                    pipe.zrange(self.keys.rank(b, dim, label), 0, -1, withscores=True)
                replies = await pipe.execute()
        totals: dict[str, float] = {}
        for reply in replies:
            for member, score in reply:
                m = member.decode() if isinstance(member, bytes) else member
                totals[m] = totals.get(m, 0.0) + score
        ranked = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
        return [(m, int(s)) for m, s in ranked]
