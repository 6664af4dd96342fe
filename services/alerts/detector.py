"""The stateful spike detector: window counts and baselines in Redis, verdicts from ``rules``.

Why Redis and not process memory: the detector must give the same alerts whether or not its
worker was killed and restarted, and whether or not Kafka redelivered a batch. So

* counts are idempotent per document: one Lua call per series adds the batch's doc ids to a
  per-window set and increments the window's counters only for ids it had not seen
  (a redelivered document changes nothing);
* the baseline (EWMA mean/variance, last closed window, last alert) is a small JSON value per
  series, written *after* the batch's alerts were delivered, and the offsets are committed
  only after that (see ``services.alerts.agent``);
* alert ids are a hash of (entity, topic, window start): a replayed window that fires again
  produces the same id, which Elasticsearch stores once (it is the ``_id``) and which Kafka
  consumers of ``yuqing.alerts`` can use to drop the rare redelivered copy. Severity can only
  escalate within a window (same id, newer figures).

Windows are in event time (``published_at``). A window closes (is absorbed into the baseline)
when the watermark passes its end plus ``lateness_s``; the watermark is the *smallest* of the
largest event times seen per input partition (partitions progress at different speeds, above
all while a backlog is replayed; one racing ahead must not close windows another has not
delivered yet). Touched windows are judged on every batch -- open ones, so an alert fires as
soon as the spike is visible rather than when its window ends, and closed ones that received
late documents.
Every key of one series shares a hash tag ``{...}`` so the Lua call stays on one Redis Cluster
slot.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.alerts import rules
from services.core.errors import BackendUnavailable
from services.core.schemas import Alert, Evidence, ScoredDoc, utcnow

log = logging.getLogger(__name__)

DETECTOR = "ewma-negative-volume/v1"

# KEYS: counts hash, totals hash, seen set, evidence zset.  ARGV: window, ttl_s, top_n, then
# triples (doc_id, is_negative 0/1, evidence json with score prefix "score|json" or "").
_COUNT_LUA = """
local window = ARGV[1]
local ttl = tonumber(ARGV[2])
local top_n = tonumber(ARGV[3])
local added = 0
for i = 4, #ARGV, 3 do
  if redis.call('SADD', KEYS[3], ARGV[i]) == 1 then
    added = added + 1
    redis.call('HINCRBY', KEYS[2], window, 1)
    if ARGV[i + 1] == '1' then
      redis.call('HINCRBY', KEYS[1], window, 1)
      local sep = string.find(ARGV[i + 2], '|', 1, true)
      local score = tonumber(string.sub(ARGV[i + 2], 1, sep - 1))
      redis.call('ZADD', KEYS[4], score, string.sub(ARGV[i + 2], sep + 1))
      redis.call('ZREMRANGEBYRANK', KEYS[4], 0, -(top_n + 1))
    end
  end
end
for k = 1, 4 do
  if redis.call('EXISTS', KEYS[k]) == 1 then redis.call('EXPIRE', KEYS[k], ttl) end
end
return added
"""


@dataclass(frozen=True)
class Series:
    """One monitored series: an entity (all topics) or a topic (all entities)."""

    entity: str
    topic: str

    @property
    def tag(self) -> str:
        return f"{self.entity}|{self.topic}"


def series_of(doc: ScoredDoc) -> list[Series]:
    out = [Series(e, "*") for e in dict.fromkeys(doc.entities)]
    out += [Series("*", t) for t in dict.fromkeys(doc.topics)]
    return out


def alert_id(series: Series, window_start: datetime) -> str:
    raw = f"{series.entity}|{series.topic}|{window_start.isoformat()}"
    return "al-" + hashlib.sha1(raw.encode()).hexdigest()[:20]


def _ts(doc: ScoredDoc) -> float:
    return doc.published_at.timestamp()


def _negative(doc: ScoredDoc) -> bool:
    return doc.sentiment.label == "negative"


def _evidence_json(doc: ScoredDoc) -> str:
    ev = Evidence(doc_id=doc.doc_id, title=(doc.title or doc.text)[:300], url=doc.url,
                  negative=round(float(doc.sentiment.probabilities.get("negative", 0.0)), 4),
                  published_at=doc.published_at)
    return f"{ev.negative}|{ev.model_dump_json()}"


class AlertDetector:
    """Feed it scored batches (``observe``); it returns the alerts to emit, then ``commit``
    saves the baselines once those alerts are delivered."""

    def __init__(self, redis: Redis, prefix: str, cfg: rules.RuleConfig, *,
                 lateness_s: float = 60.0, ttl_s: int = 48 * 3600, top_n: int = 5) -> None:
        self.redis = redis
        self.prefix = prefix
        self.cfg = cfg
        self.lateness_s = lateness_s
        self.ttl_s = ttl_s
        self.top_n = top_n
        self._count = redis.register_script(_COUNT_LUA)
        self.late_windows = max(1, (24 * 3600) // cfg.window_s)  # judge late data up to a day
        self._high: dict[int, float] = {}  # partition -> largest event time seen
        self._pending: dict[Series, rules.Baseline] = {}

    # -- keys
    def _key(self, s: Series, what: str, window: int | None = None) -> str:
        suffix = f":{window}" if window is not None else ""
        return f"{self.prefix}:alerts:{{{s.tag}}}:{what}{suffix}"

    def _window_start(self, w: int) -> datetime:
        return datetime.fromtimestamp(w * self.cfg.window_s, tz=UTC)

    # -- main entry points
    async def observe(self, docs: Sequence[ScoredDoc],
                      partitions: Sequence[int] | None = None) -> list[Alert]:
        """Count ``docs`` (idempotently) and judge every series they touch. ``partitions``:
        the input partition of each document (for the watermark); default: all one."""
        if not docs:
            return []
        self._pending.clear()  # judged from the saved baselines, so a retry judges afresh
        parts = list(partitions) if partitions is not None else [0] * len(docs)
        for d, part in zip(docs, parts, strict=True):
            ts = _ts(d)
            if ts > self._high.get(part, float("-inf")):
                self._high[part] = ts
        try:
            return await self._observe(docs)
        except RedisError as exc:
            self._pending.clear()
            raise BackendUnavailable(f"alert state: {exc}", "redis") from exc
        except BaseException:
            self._pending.clear()
            raise

    async def commit(self) -> None:
        """Persist baselines judged by the last ``observe`` (call after its alerts are out)."""
        if not self._pending:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for s, b in self._pending.items():
                    pipe.set(self._key(s, "state"), json.dumps(b.to_dict()), ex=self.ttl_s)
                await pipe.execute()
        except RedisError as exc:
            raise BackendUnavailable(f"alert state: {exc}", "redis") from exc
        self._pending.clear()

    async def _observe(self, docs: Sequence[ScoredDoc]) -> list[Alert]:
        w_s = self.cfg.window_s
        groups: dict[tuple[Series, int], list[ScoredDoc]] = defaultdict(list)
        for d in docs:
            for s in series_of(d):
                groups[(s, rules.window_of(_ts(d), w_s))].append(d)
        # 1. idempotent counting, one Lua call per (series, window), pipelined
        async with self.redis.pipeline(transaction=False) as pipe:
            for (s, w), group in groups.items():
                argv: list[str | int] = [w, self.ttl_s, self.top_n]
                for d in group:
                    argv += [d.doc_id, "1" if _negative(d) else "0",
                             _evidence_json(d) if _negative(d) else ""]
                keys = [self._key(s, "neg"), self._key(s, "tot"), self._key(s, "seen", w),
                        self._key(s, "ev", w)]
                await self._count(keys=keys, args=argv, client=pipe)
            await pipe.execute()
        # 2. watermark (event time): the slowest partition's progress. After a restart it
        # starts again from what arrives; baselines never absorb a window twice (last_closed)
        watermark = min(self._high.values())
        closed_upto = rules.window_of(watermark - self.lateness_s, w_s) - 1
        # 3. judge each touched series
        touched: dict[Series, set[int]] = defaultdict(set)
        for s, w in groups:
            touched[s].add(w)
        alerts: list[Alert] = []
        for s, windows in touched.items():
            alerts += await self._judge_series(s, windows, closed_upto)
        return alerts

    async def _load(self, s: Series, first_window: int) -> rules.Baseline:
        if s in self._pending:
            return self._pending[s]
        raw = await self.redis.get(self._key(s, "state"))
        if raw:
            return rules.Baseline.from_dict(json.loads(raw))
        return rules.Baseline(last_closed=first_window - 1)

    async def _counts(self, s: Series, windows: Iterable[int]) -> dict[int, tuple[int, int]]:
        ws = sorted(set(windows))
        if not ws:
            return {}
        neg = await self.redis.hmget(self._key(s, "neg"), [str(w) for w in ws])
        tot = await self.redis.hmget(self._key(s, "tot"), [str(w) for w in ws])
        return {w: (int(n or 0), int(t or 0)) for w, n, t in zip(ws, neg, tot, strict=True)}

    async def _judge_series(self, s: Series, windows: set[int], closed_upto: int) -> list[Alert]:
        b = await self._load(s, min(windows))
        last = b.last_closed if b.last_closed is not None else min(windows) - 1
        to_close = range(max(last + 1, closed_upto - 2000), closed_upto + 1)
        open_windows = sorted(w for w in windows if w > closed_upto)
        counts = await self._counts(s, list(to_close) + open_windows)
        alerts: list[Alert] = []
        # windows that close now get a last verdict before they are absorbed (a spike that
        # filled up between two batches), then become baseline
        for w in to_close:
            neg, tot = counts.get(w, (0, 0))
            if w in windows:
                v = rules.judge(b, w, neg, self.cfg)
                if v is not None:
                    alerts.append(await self._alert(s, v, tot))
                    b = rules.fired(b, v)
            b = rules.absorb(b, w, neg, self.cfg)
        # late documents for windows closed earlier, then the open windows
        late = sorted(w for w in windows if w <= last and w >= last - self.late_windows)
        if late:
            counts.update(await self._counts(s, late))
        for w in late + open_windows:
            neg, tot = counts.get(w, (0, 0))
            v = rules.judge(b, w, neg, self.cfg)
            if v is not None:
                alerts.append(await self._alert(s, v, tot))
                b = rules.fired(b, v)
        self._pending[s] = b
        return alerts

    async def _alert(self, s: Series, v: rules.Verdict, total: int) -> Alert:
        start = self._window_start(v.window)
        end = self._window_start(v.window + 1)
        raw = await self.redis.zrevrange(self._key(s, "ev", v.window), 0, self.top_n - 1)
        evidence = [Evidence.model_validate_json(r) for r in raw]
        return Alert(alert_id=alert_id(s, start), entity=s.entity, topic=s.topic,
                     severity=v.severity, window_start=start, window_end=end,
                     negative_count=v.count, total_count=max(total, v.count),
                     negative_share=round(v.count / max(total, v.count, 1), 4),
                     baseline_mean=round(v.mean, 4), baseline_std=round(v.std, 4),
                     score=round(v.score, 3), evidence=evidence, detector=DETECTOR,
                     created_at=utcnow())
