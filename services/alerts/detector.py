"""The stateful stream detector: window counts and per-series model state in Redis, verdicts
from the seasonal model (``services.alerts.model``), exactly as ``services.alerts.replay``.

Same input, same alerts -- whatever the batch boundaries, the replay speed, the arrival order
across partitions, redelivery or a kill -9:

* counts are idempotent per document: one Lua call per (series, window) adds the batch's doc
  ids to a per-window set and increments the window's counters only for ids it had not seen;
* a window is judged once, when it is *closed*: the event-time watermark (the smallest of
  the largest event times seen per input partition, persisted with the state so a restart
  does not forget a slow partition) has passed its end plus ``lateness_s``. Its counts are
  then final (a document more than ``lateness_s`` behind its own partition's progress is
  counted but no longer judged), so its verdict is a function of the documents and their
  event times only. There are no early verdicts on open windows: they would depend on how
  much of a window a batch happened to contain;
* closed windows are stepped in order (windows without documents as zeros) through the same
  ``model.step`` the offline replay uses; a series starts at its earliest counted window;
* every batch judges every series that is *due* -- it has counted windows not yet judged, or
  an open episode (whose quiet windows must be stepped to resolve it) -- not only the series
  the batch touched: otherwise a spike would wait for its company's next document, and
  whether it was judged at a given moment would depend on batch boundaries. The due set is
  a sorted set (series -> first unjudged window), updated with the counts and in ``commit``;
* the state (profiles, dispersion, lifecycle, last closed window) is one JSON value per
  series, written by ``commit`` *after* the batch's alerts were delivered; offsets are
  committed after that. A crash before ``commit`` re-judges the same closed windows from the
  same saved state with the same counts, so it produces the same events;
* alert ids hash (entity, topic, episode start, event kind, severity): a repeated event has
  the same id, which Elasticsearch stores once (``_id``) and consumers can deduplicate.

Work per document stays O(1): one pipelined Lua round trip per batch for the counts; per
touched series a state read and a range read of the windows that close.
Every key of one series shares a hash tag ``{...}`` so the Lua call stays on one slot.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.alerts import model, rules
from services.core.errors import BackendUnavailable
from services.core.schemas import Alert, Evidence, ScoredDoc, utcnow

log = logging.getLogger(__name__)

DETECTOR = model.VERSION

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
if added > 0 then  -- remember the earliest window that got new documents (late data)
  local cur = redis.call('GET', KEYS[5])
  if not cur or tonumber(cur) > tonumber(window) then
    redis.call('SET', KEYS[5], window, 'EX', ttl)
  end
end
return added
"""


# Drop a series from the due set if nothing newer than its last judged window was counted.
_UNDUE_LUA = """
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and tonumber(s) <= tonumber(ARGV[2]) then redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0
"""


@dataclass(frozen=True)
class Series:
    """One monitored series: an entity (all topics) or a topic (all entities)."""

    entity: str
    topic: str

    @property
    def tag(self) -> str:
        return f"{self.entity}|{self.topic}"


def _series_of_tag(tag: bytes | str) -> Series:
    entity, topic = (tag.decode() if isinstance(tag, bytes) else tag).split("|", 1)
    return Series(entity, topic)


def series_of(doc: ScoredDoc) -> list[Series]:
    out = [Series(e, "*") for e in dict.fromkeys(doc.entities)]
    out += [Series("*", t) for t in dict.fromkeys(doc.topics)]
    return out


def alert_id(series: Series, episode_start: datetime, kind: str = "firing",
             severity: str | None = None) -> str:
    """Deterministic id of one lifecycle event (escalations differ by their severity)."""
    raw = f"{series.entity}|{series.topic}|{episode_start.isoformat()}|{kind}"
    if kind == "escalated":
        raw += f"|{severity}"
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
    saves the states once those alerts are delivered. ``cfg``: a ``model.DetectorConfig``
    (a legacy ``rules.RuleConfig`` is taken for its ``window_s`` and ``min_count``)."""

    def __init__(self, redis: Redis, prefix: str,
                 cfg: model.DetectorConfig | rules.RuleConfig | None = None, *,
                 lateness_s: float = 60.0, ttl_s: int = 48 * 3600, top_n: int = 5) -> None:
        if isinstance(cfg, rules.RuleConfig):
            cfg = model.DetectorConfig(window_s=cfg.window_s, min_count=cfg.min_count)
        self.cfg: model.DetectorConfig = cfg or model.DetectorConfig()
        self.redis = redis
        self.prefix = prefix
        self.lateness_s = lateness_s
        # the profile needs weeks of window counts: keep them at least as long as it learns
        self.ttl_s = max(ttl_s, (self.cfg.weeks * 7 + 1) * 86400)
        self.top_n = top_n
        self._holding: set[int] | None = None
        self._count = redis.register_script(_COUNT_LUA)
        self._undue = redis.register_script(_UNDUE_LUA)
        self._high: dict[int, float] | None = None  # partition -> largest event time seen
        self._pending: dict[Series, model.SeriesState] = {}

    # -- keys
    def _key(self, s: Series, what: str, window: int | None = None) -> str:
        suffix = f":{window}" if window is not None else ""
        return f"{self.prefix}:alerts:{{{s.tag}}}:{what}{suffix}"

    @property
    def _wm_key(self) -> str:
        return f"{self.prefix}:alerts:watermark"

    @property
    def _due_key(self) -> str:
        return f"{self.prefix}:alerts:due"

    def _window_start(self, w: int) -> datetime:
        return datetime.fromtimestamp(w * self.cfg.window_s, tz=UTC)

    # -- main entry points
    async def observe(self, docs: Sequence[ScoredDoc],
                      partitions: Sequence[int] | None = None,
                      holding: set[int] | None = None) -> list[Alert]:
        """Count ``docs`` (idempotently) and judge the windows the watermark closes for every
        due series. ``partitions``: the input partition of each document (for the
        watermark); default: all one. ``holding``: the partitions that bound the watermark
        now (``services.alerts.progress``); one not seen yet closes nothing; default: every
        partition seen."""
        self._holding = holding
        if not docs:
            return []
        self._pending.clear()  # judged from the saved states, so a retry judges afresh
        parts = list(partitions) if partitions is not None else [0] * len(docs)
        try:
            if self._high is None:
                raw = await self.redis.hgetall(self._wm_key)
                self._high = {int(k): float(v) for k, v in raw.items()}
            for d, part in zip(docs, parts, strict=True):
                ts = _ts(d)
                if ts > self._high.get(part, float("-inf")):
                    self._high[part] = ts
            return await self._observe(docs)
        except RedisError as exc:
            self._pending.clear()
            raise BackendUnavailable(f"alert state: {exc}", "redis") from exc
        except BaseException:
            self._pending.clear()
            raise

    async def commit(self) -> None:
        """Persist the states judged by the last ``observe`` (call after its alerts are out)."""
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for s, st in self._pending.items():
                    pipe.set(self._key(s, "model"), json.dumps(st.to_dict()), ex=self.ttl_s)
                    pipe.delete(self._key(s, "new"))
                    if st.life.episode is not None:  # its quiet windows must be stepped
                        pipe.zadd(self._due_key, {s.tag: (st.last_window or 0) + 1})
                    else:  # judged up to last_window; newer counts re-add it (zadd lt)
                        await self._undue(keys=[self._due_key],
                                          args=[s.tag, st.last_window or 0], client=pipe)
                if self._high:
                    pipe.hset(self._wm_key, mapping={str(k): repr(v)
                                                     for k, v in self._high.items()})
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
                        self._key(s, "ev", w), self._key(s, "new")]
                await self._count(keys=keys, args=argv, client=pipe)
                pipe.zadd(self._due_key, {s.tag: w}, lt=True)  # first unjudged window
            await pipe.execute()
        # 2. watermark (event time): the slowest partition's progress
        assert self._high is not None
        bound = self._high.keys() if self._holding is None else self._holding & self._high.keys()
        if self._holding and not self._holding <= self._high.keys():
            return []  # a partition with unread data has not delivered yet: wait for it
        watermark = min(self._high[p] for p in bound) if bound else max(self._high.values())
        closed_upto = rules.window_of(watermark - self.lateness_s, w_s) - 1
        # 3. step every due series through the windows that are now closed
        due = await self.redis.zrangebyscore(self._due_key, "-inf", closed_upto)
        series = dict.fromkeys([s for s, _ in groups] + [_series_of_tag(t) for t in due])
        alerts: list[Alert] = []
        for s in sorted(series, key=lambda x: x.tag):
            alerts += await self._close_series(s, closed_upto)
        return alerts

    async def _load(self, s: Series) -> model.SeriesState | None:
        raw = await self.redis.get(self._key(s, "model"))
        return model.SeriesState.from_dict(json.loads(raw)) if raw else None

    async def _close_series(self, s: Series, closed_upto: int) -> list[Alert]:
        st = await self._load(s)
        # the earliest window that got new documents since the series was last judged
        # (set by the counting script with the counts, so it survives a crash)
        new = await self.redis.get(self._key(s, "new"))
        late_from = int(new) if new is not None else None
        emit_from = None
        if (st is not None and st.last_window is not None and late_from is not None
                and late_from <= st.last_window):
            # documents arrived for windows already judged (upstream reordering, e.g. a
            # fast replay through several classify actors): judge the series again from its
            # first window, so its verdicts are those of the complete counts; events before
            # the late window are unchanged (the model is causal) and are not re-sent
            log.info("alerts %s: late documents for window %d (judged up to %d); re-judging",
                     s.tag, late_from, st.last_window)
            st, emit_from = None, late_from
        if st is None or st.last_window is None:
            # a new series starts at its earliest counted window (not at whichever window
            # the first batch happened to hold)
            known = [int(k) for k in await self.redis.hkeys(self._key(s, "tot"))]
            first = min(known, default=closed_upto + 1)
            st = st or model.SeriesState()
            st.last_window = None
            start = first
        else:
            start = st.last_window + 1
        if start > closed_upto:
            return []
        ws = list(range(start, closed_upto + 1))
        neg = await self.redis.hmget(self._key(s, "neg"), [str(w) for w in ws])
        tot = await self.redis.hmget(self._key(s, "tot"), [str(w) for w in ws])
        alerts: list[Alert] = []
        for w, n, t in zip(ws, neg, tot, strict=True):
            n_i, t_i = int(n or 0), int(t or 0)
            _, ev = model.step(st, w, n_i, t_i, self.cfg)
            if ev is not None and (emit_from is None or w >= emit_from):
                alerts.append(await self._alert(s, ev, st))
        self._pending[s] = st
        return alerts

    async def _alert(self, s: Series, ev: model.Event, st: model.SeriesState) -> Alert:
        start = self._window_start(ev.window)
        episode = self._window_start(ev.episode_start)
        raw = await self.redis.zrevrange(self._key(s, "ev", ev.window), 0, self.top_n - 1)
        if not raw and ev.kind != "firing":  # quiet window: show what started the episode
            raw = await self.redis.zrevrange(self._key(s, "ev", ev.episode_start), 0,
                                             self.top_n - 1)
        evidence = [Evidence.model_validate_json(r) for r in raw]
        total = ev.total if ev.total is not None else ev.negatives
        alpha = st.alpha.get(str(max(self.cfg.spans)), self.cfg.alpha_prior)
        std = math.sqrt(ev.expected + alpha * ev.expected ** 2)
        return Alert(alert_id=alert_id(s, episode, ev.kind, ev.severity), entity=s.entity,
                     topic=s.topic, severity=ev.severity, window_start=start,
                     window_end=self._window_start(ev.window + 1),
                     negative_count=ev.negatives, total_count=max(total, ev.negatives),
                     negative_share=round(ev.negatives / max(total, ev.negatives, 1), 4),
                     baseline_mean=round(ev.expected, 4), baseline_std=round(std, 4),
                     score=round(ev.score, 3), evidence=evidence, detector=DETECTOR,
                     created_at=utcnow(), state=ev.kind, episode_start=episode,
                     peak_score=round(ev.peak_score, 3),
                     duration_s=float((ev.last_window + 1 - ev.episode_start)
                                      * self.cfg.window_s),
                     episode_negatives=ev.episode_negatives)
