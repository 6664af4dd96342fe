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

from services.alerts import memory, model, rules
from services.core.errors import BackendUnavailable
from services.core.schemas import Alert, Evidence, ScoredDoc, utcnow

log = logging.getLogger(__name__)

DETECTOR = model.VERSION
_LOAD_CHUNK = 1000  # series per MGET when the detector reads its state back

# KEYS: counts hash, totals hash, seen set, evidence zset, model versions hash, new-data mark.  ARGV:
# window, ttl_s, top_n, then quads (doc_id, is_negative 0/1, evidence json with score prefix
# "score|json" or "", model version). Returns {new documents, window negatives, window total,
# the window's model versions hash as a flat list}.
_COUNT_LUA = """
local window = ARGV[1]
local ttl = tonumber(ARGV[2])
local top_n = tonumber(ARGV[3])
local added = 0
for i = 4, #ARGV, 4 do
  if redis.call('SADD', KEYS[3], ARGV[i]) == 1 then
    added = added + 1
    redis.call('HINCRBY', KEYS[2], window, 1)
    redis.call('HINCRBY', KEYS[5], ARGV[i + 3], 1)
    if ARGV[i + 1] == '1' then
      redis.call('HINCRBY', KEYS[1], window, 1)
      local sep = string.find(ARGV[i + 2], '|', 1, true)
      local score = tonumber(string.sub(ARGV[i + 2], 1, sep - 1))
      redis.call('ZADD', KEYS[4], score, string.sub(ARGV[i + 2], sep + 1))
      redis.call('ZREMRANGEBYRANK', KEYS[4], 0, -(top_n + 1))
    end
  end
end
for k = 1, 5 do
  if redis.call('EXISTS', KEYS[k]) == 1 then redis.call('EXPIRE', KEYS[k], ttl) end
end
if added > 0 then  -- KEYS[6]: the earliest window that got new documents (late data)
  local cur = redis.call('GET', KEYS[6])
  if not cur or tonumber(cur) > tonumber(window) then
    redis.call('SET', KEYS[6], window, 'EX', ttl)
  end
end
-- the window's counts after this update, so the detector judges it without reading them again
return {added, tonumber(redis.call('HGET', KEYS[1], window) or '0'),
        tonumber(redis.call('HGET', KEYS[2], window) or '0'), redis.call('HGETALL', KEYS[5])}
"""


@dataclass(frozen=True)
class Series:
    """One monitored series: an entity (all topics) or a topic (all entities)."""

    entity: str
    topic: str

    @property
    def tag(self) -> str:
        return f"{self.entity}|{self.topic}"

    @property
    def name(self) -> str:
        """How reports print it: ``TSLA`` or ``*/legal``."""
        return self.entity if self.topic == "*" else f"*/{self.topic}"


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


def _version_of(mv) -> str | None:
    """``window_version`` of a model-versions hash as Redis returns it (dict or flat list)."""
    if isinstance(mv, list):
        mv = dict(zip(mv[::2], mv[1::2], strict=True))
    return window_version({(k.decode() if isinstance(k, bytes) else k): int(v)
                           for k, v in mv.items() if k not in (b"", "")})


def window_version(counts: dict[str, int]) -> str | None:
    """The model version of a window: per language, the one most of its documents carry
    (ties: the smallest name -- Elasticsearch's terms order, so the backtest agrees);
    English's plain, another language's as ``lang=version`` (:func:`doc_version`), joined
    with ``;`` -- an English-only window is its version name, as before languages."""
    if not counts:
        return None
    by_lang: dict[str, dict[str, int]] = {}
    for key, n in counts.items():
        lang, sep, _ = key.partition("=")
        by_lang.setdefault(lang if sep else "en", {})[key] = n
    best = {lang: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0]
            for lang, c in by_lang.items()}
    return ";".join(best[lang] for lang in sorted(best, key=lambda x: (x != "en", x)))


def doc_version(d) -> str:
    """What a document counts towards its window's model version: its model's name, with
    the model's language unless English (a series may mix both)."""
    v = d.sentiment.model_version or ""
    lang = getattr(d.sentiment, "model_language", "en") or "en"
    return v if not v or lang == "en" else f"{lang}={v}"


@dataclass(frozen=True)
class Annotation:
    """A model change (or the re-base that ends its settling) on one series."""

    entity: str
    topic: str
    kind: str  # model_change | rebased
    window_start: datetime
    detail: dict

    @property
    def annotation_id(self) -> str:
        raw = f"{self.entity}|{self.topic}|{self.window_start.isoformat()}|{self.kind}"
        return "an-" + hashlib.sha1(raw.encode()).hexdigest()[:20]

    def to_source(self, window_s: int) -> dict:
        text = (f"model {self.detail.get('from')} -> {self.detail.get('to')}: "
                + ("scores suppressed while the share re-bases" if self.kind == "model_change"
                   else f"share re-based x{self.detail.get('factor')}"))
        return {"annotation_id": self.annotation_id, "kind": self.kind, "entity": self.entity,
                "topic": self.topic, "timestamp": self.window_start.isoformat(),
                "window_s": window_s, "from_version": self.detail.get("from"),
                "to_version": self.detail.get("to"), "factor": self.detail.get("factor"),
                "settle_windows": self.detail.get("settle_windows"), "text": text,
                "detector": DETECTOR}


def _ts(doc: ScoredDoc) -> float:
    return doc.published_at.timestamp()


def _negative(doc: ScoredDoc, s: Series) -> bool:
    """Is ``doc`` a negative of series ``s``? An entity's series counts the document's
    sentiment towards that entity ("Bank A sues Company B": negative for B, not for A);
    topic series count the document's own label."""
    if s.entity == "*":
        return doc.sentiment.label == "negative"
    return doc.entity_label(s.entity) == "negative"


def _evidence_json(doc: ScoredDoc, s: Series) -> str:
    probs = doc.sentiment.probabilities if s.entity == "*" else doc.entity_probabilities(s.entity)
    ev = Evidence(doc_id=doc.doc_id, title=(doc.title or doc.text)[:300], url=doc.url,
                  negative=round(float(probs.get("negative", 0.0)), 4),
                  published_at=doc.published_at)
    return f"{ev.negative}|{ev.model_dump_json()}"


class AlertDetector:
    """Feed it scored batches (``observe``); it returns the alerts to emit, then ``commit``
    saves the states once those alerts are delivered. ``cfg``: a ``model.DetectorConfig``
    (a legacy ``rules.RuleConfig`` is taken for its ``window_s`` and ``min_count``).

    Between batches it remembers states, recent window counts and checkpoints in process
    (``services.alerts.memory``); Redis stays the durable truth, read back in full when the
    detector starts and after ``reset`` (partitions reassigned)."""

    def __init__(self, redis: Redis, prefix: str,
                 cfg: model.DetectorConfig | rules.RuleConfig | None = None, *,
                 lateness_s: float = 60.0, ttl_s: int = 48 * 3600, top_n: int = 5,
                 partitions: int = 1) -> None:
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
        self._high: dict[int, float] | None = None  # partition -> largest event time seen
        self._pending: dict[Series, model.SeriesState] = {}
        # checkpoints taken by the last observe, uncommitted: series -> (from window, {window:
        # snapshot}, to window, late window or None)
        self._taken: dict[Series, tuple[int, dict[int, bytes], int, int | None]] = {}
        # input partitions: no window closes before each has been seen (else a partition
        # that happens to arrive later would find its windows already judged)
        self.partitions = max(1, partitions)
        self._closed: int | None = None  # windows <= this are judged for every series
        self._known: set[Series] = set()
        self.mem = memory.Memory()
        self.annotations: list[Annotation] = []  # model changes found by the last observe

    # -- keys
    def _key(self, s: Series, what: str, window: int | None = None) -> str:
        suffix = f":{window}" if window is not None else ""
        return f"{self.prefix}:alerts:{{{s.tag}}}:{what}{suffix}"

    @property
    def _wm_key(self) -> str:
        return f"{self.prefix}:alerts:watermark"

    @property
    def _series_key(self) -> str:
        return f"{self.prefix}:alerts:series"

    @property
    def _due_key(self) -> str:
        return f"{self.prefix}:alerts:due"

    @property
    def _closed_key(self) -> str:
        return f"{self.prefix}:alerts:closed"

    def _window_start(self, w: int) -> datetime:
        return datetime.fromtimestamp(w * self.cfg.window_s, tz=UTC)

    def reset(self) -> None:
        """Forget what is held in process: the next ``observe`` reads it back from Redis.
        Call when the input partitions are reassigned (another worker may have counted and
        judged meanwhile). Safe at any time: a batch between ``observe`` and ``commit`` still
        commits what it judged."""
        self._stale = True

    _stale = False

    def _forget(self) -> None:
        self._stale = False
        self._high = None
        self._pending.clear()
        self._taken.clear()
        self._known.clear()
        self.mem.reset()

    # -- main entry points
    async def observe(self, docs: Sequence[ScoredDoc],
                      partitions: Sequence[int] | None = None,
                      holding: set[int] | None = None) -> list[Alert]:
        """Count ``docs`` (idempotently) and judge the windows the watermark closes.
        ``partitions``: the input partition of each document (for the watermark); default:
        all one. ``holding``: the partitions that bound the watermark now
        (``services.alerts.progress``: those with unread data or only just caught up); when
        given it replaces the "every partition seen once" rule, so an empty or long-idle
        partition does not stall alerts."""
        self._holding = holding
        if not docs:
            return []
        self._discard_uncommitted()  # judged from the saved states, so a retry judges afresh
        if self._stale:
            self._forget()
        self.annotations = []
        self._closing = None
        parts = list(partitions) if partitions is not None else [0] * len(docs)
        try:
            if self._high is None:
                raw = await self.redis.hgetall(self._wm_key)
                self._high = {int(k): float(v) for k, v in raw.items()}
                closed = await self.redis.get(self._closed_key)
                self._closed = int(closed) if closed is not None else None
            if not self.mem.loaded:
                await self._load()
            for d, part in zip(docs, parts, strict=True):
                ts = _ts(d)
                if ts > self._high.get(part, float("-inf")):
                    self._high[part] = ts
            return await self._observe(docs)
        except RedisError as exc:
            self._discard_uncommitted()
            raise BackendUnavailable(f"alert state: {exc}", "redis") from exc
        except BaseException:
            self._discard_uncommitted()
            raise

    def _discard_uncommitted(self) -> None:
        """States stepped but not committed were stepped in place: forget them (they are
        read back from Redis, the committed truth, when next needed)."""
        for s in self._pending:
            self.mem.states.pop(s, None)
        self._pending.clear()
        self._taken.clear()

    async def _load(self) -> None:
        """Read every known series' state, late mark and due window back from Redis."""
        members = await self.redis.smembers(self._series_key)
        self._known = {Series(*(m.decode() if isinstance(m, bytes) else m).split("|", 1))
                       for m in members}
        series = sorted(self._known, key=lambda x: x.tag)
        for i in range(0, len(series), _LOAD_CHUNK):
            chunk = series[i:i + _LOAD_CHUNK]
            await self._load_states(chunk)
            marks = await self.redis.mget([self._key(s, "new") for s in chunk])
            for s, m in zip(chunk, marks, strict=True):
                if m is not None:
                    self.mem.marks[s] = int(m)
        for tag, score in await self.redis.zrange(self._due_key, 0, -1, withscores=True):
            t = tag.decode() if isinstance(tag, bytes) else tag
            self.mem.due[Series(*t.split("|", 1))] = int(score)
        self.mem.loaded = True

    async def _load_states(self, series: Sequence[Series]) -> None:
        raws = await self.redis.mget([self._key(s, "model") for s in series])
        for s, raw in zip(series, raws, strict=True):
            if raw:
                self.mem.states[s] = model.SeriesState.from_dict(json.loads(raw))
            else:
                self.mem.states.pop(s, None)

    async def commit(self) -> None:
        """Persist the states judged by the last ``observe`` (call after its alerts are out)."""
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for s, st in self._pending.items():
                    pipe.set(self._key(s, "model"), json.dumps(st.to_dict()), ex=self.ttl_s)
                    pipe.delete(self._key(s, "new"))
                if self._high:
                    pipe.hset(self._wm_key, mapping={str(k): repr(v)
                                                     for k, v in self._high.items()})
                if self._closing is not None:
                    pipe.set(self._closed_key, self._closing)
                    pipe.zremrangebyscore(self._due_key, "-inf", self._closing)
                await pipe.execute()
        except RedisError as exc:
            raise BackendUnavailable(f"alert state: {exc}", "redis") from exc
        for s, st in self._pending.items():
            self.mem.states[s] = st
            self.mem.marks.pop(s, None)
            start, taken, upto, late_from = self._taken[s]
            self.mem.keep_checkpoints(s, start, taken, upto, late_from, self.cfg)
        self._pending.clear()
        self._taken.clear()
        if self._closing is not None:
            self.mem.closed(self._closing)
            self._closed, self._closing = self._closing, None

    _closing: int | None = None
    _waiting_logged = False

    async def _observe(self, docs: Sequence[ScoredDoc]) -> list[Alert]:
        w_s = self.cfg.window_s
        groups: dict[tuple[Series, int], list[ScoredDoc]] = defaultdict(list)
        for d in docs:
            for s in series_of(d):
                groups[(s, rules.window_of(_ts(d), w_s))].append(d)
        # 1. idempotent counting, one Lua call per (series, window), pipelined; each call
        # returns the window's counts, which the memory keeps
        async with self.redis.pipeline(transaction=False) as pipe:
            latest: dict[Series, int] = {}
            for (s, w), group in groups.items():
                argv: list[str | int] = [w, self.ttl_s, self.top_n]
                for d in group:
                    argv += [d.doc_id, "1" if _negative(d, s) else "0",
                             _evidence_json(d, s) if _negative(d, s) else "",
                             doc_version(d)]
                keys = [self._key(s, "neg"), self._key(s, "tot"), self._key(s, "seen", w),
                        self._key(s, "ev", w), self._key(s, "mv", w), self._key(s, "new")]
                await self._count(keys=keys, args=argv, client=pipe)
                latest[s] = max(latest.get(s, w), w)
            touched = list(dict.fromkeys(s.tag for s, _ in groups))
            pipe.sadd(self._series_key, *touched)
            pipe.expire(self._series_key, self.ttl_s)
            # the due set: each series' latest window with counts (ZADD GT), so a restarted
            # detector knows which series have windows to judge without reading them all
            pipe.zadd(self._due_key, {s.tag: w for s, w in latest.items()}, gt=True)
            pipe.expire(self._due_key, self.ttl_s)
            results = await pipe.execute()
        for ((s, w), _g), res in zip(groups.items(), results, strict=False):
            added, neg, tot, mv = res
            self.mem.counted(s, w, int(added), int(neg), int(tot), _version_of(mv))
        self._known.update(latest)
        # 2. watermark (event time): the slowest partition's progress, once all were seen
        assert self._high is not None
        if self._holding is not None:
            if not self._holding <= self._high.keys():
                return []  # a partition with unread data has not delivered yet: wait for it
            bound = self._holding or set(self._high)
            watermark = min(self._high[p] for p in bound)
        elif len(self._high) < self.partitions:
            if not self._waiting_logged:
                log.info("alerts: partitions seen %s of %d: no window closes until each has "
                         "a document", sorted(self._high), self.partitions)
                self._waiting_logged = True
            return []
        else:
            watermark = min(self._high.values())
        closed_upto = rules.window_of(watermark - self.lateness_s, w_s) - 1
        # 3. step series through the windows that are now closed: when the watermark closed
        # a new window, every series that has something to judge -- counts, a late mark, an
        # open episode, a settling model change, a tail that could still score (the others
        # are judged just as far, in effect: their steps cannot emit, ``memory.idle_safe``,
        # and are taken when they next get a document); else the touched ones (a late first
        # document of a new series)
        if self._closed is None or closed_upto > self._closed:
            series = self.mem.to_step(self._known, self.cfg)
            self._closing = closed_upto
            log.info("alerts: watermark closes windows up to %d: %d of %d series to judge",
                     closed_upto, len(series), len(self._known))
        else:
            series = list(dict.fromkeys(s for s, _ in groups))
        missing = [s for s in series if s not in self.mem.states]
        if missing:  # never judged, or stepped by an observe that was not committed
            await self._load_states(missing)
        alerts: list[Alert] = []
        for s in series:
            alerts += await self._close_series(s, closed_upto, self.mem.states.get(s))
        if alerts:  # evidence: which other companies are in an episode right now
            open_now = sorted({x.entity for x, xs in self._pending.items()
                               if x.topic == "*" and xs.life.episode is not None})
            alerts = [a.model_copy(update={"co_moving": [e for e in open_now
                                                          if e != a.entity][:10]})
                      for a in alerts]
        return alerts

    async def _close_series(self, s: Series, closed_upto: int,
                            st: model.SeriesState | None) -> list[Alert]:
        # the earliest window that got new documents since the series was last judged (set
        # by the counting script with the counts, so a crash cannot lose it)
        new = self.mem.marks.get(s)
        emit_from = None
        if (st is not None and st.last_window is not None and new is not None
                and new <= st.last_window):
            # documents arrived for windows already judged (upstream reordering: a fast
            # replay through several classify actors): judge the series again from the
            # checkpoint before that window (or its first window), so its verdicts are those
            # of the complete counts; events before the late window cannot change (the model
            # is causal) and are not re-sent
            st = self.mem.checkpoint_before(s, new)
            log.debug("alerts %s: late documents for window %s; re-judging from %s", s.tag,
                      new, "its first window" if st is None else st.last_window)
            emit_from = new
        if st is not None and st.last_window is not None and st.last_window >= closed_upto:
            return []
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
        ws = range(start, closed_upto + 1)
        counts = await self._window_counts(s, ws)
        self._pending[s] = st  # stepped in place from here on: uncommitted
        taken: dict[int, bytes] = {}
        alerts: list[Alert] = []
        for w, (n_i, t_i, ver) in zip(ws, counts, strict=True):
            ws_, ev = model.step(st, w, n_i, t_i, self.cfg, ver)
            if ws_.note is not None:
                self.annotations.append(Annotation(s.entity, s.topic, ws_.note,
                                                   self._window_start(w),
                                                   ws_.note_detail or {}))
            if ev is not None and (emit_from is None or w >= emit_from):
                alerts.append(await self._alert(s, ev, st, ver))
            if memory.boundary(w, self.cfg) and memory.keep_checkpoint(
                    w, closed_upto, emit_from, self.cfg):
                taken[w] = memory.snapshot(st)
        self._taken[s] = (start, taken, closed_upto, emit_from)
        return alerts

    async def _window_counts(self, s: Series, ws: range
                             ) -> list[tuple[int, int, str | None]]:
        """(negatives, total, model version) of windows ``ws``: from memory, the rest (windows
        this detector has not counted since it started) from Redis, remembered."""
        have = self.mem.counts.setdefault(s, {})
        missing = [w for w in ws if w not in have]
        if missing:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hmget(self._key(s, "neg"), [str(w) for w in missing])
                pipe.hmget(self._key(s, "tot"), [str(w) for w in missing])
                for w in missing:
                    pipe.hgetall(self._key(s, "mv", w))
                neg, tot, *mvs = await pipe.execute()
            for w, n, t, mv in zip(missing, neg, tot, mvs, strict=True):
                have[w] = (int(n or 0), int(t or 0), _version_of(mv))
        return [have[w] for w in ws]

    async def _alert(self, s: Series, ev: model.Event, st: model.SeriesState,
                     version: str | None = None) -> Alert:
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
                     episode_negatives=ev.episode_negatives,
                     sources=sorted({e.doc_id.split(":")[1] for e in evidence
                                     if e.doc_id.count(":") >= 2}),
                     model_version=version)
