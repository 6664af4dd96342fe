"""``python -m bench soak --minutes N``: the whole pipeline under faults, then exact counts.

Against a stack of its own (``YUQING_KAFKA_BOOTSTRAP`` / ``YUQING_ES_URL`` / ``YUQING_REDIS_URL``
pointing at a second ``ops/stack``; default ports are refused unless ``--allow-default-stack``),
in a namespace of its own (``soak-<run>``):

* the split worker roles (ingest, classify, sink, alerts) and ``yuqing deliver`` (one webhook
  subscription to a local aiohttp receiver, every lifecycle event, no grouping delay) run as
  subprocesses;
* a steady feed (the synthetic day, ``services/feed/synthetic.py``, replayed at ``--rate``
  items/s) with exact re-sends, syndicated copies and malformed/oversized messages mixed in
  (bad JSON, arrays, wrong types, bad UTF-8, NUL, deep nesting, huge numbers, empty ids,
  missing fields, empty values, stale/future ``published_at``, an 800,000-character title, a
  value near the producer's 1 MB limit, a 2 MB value);
* meanwhile a random worker is killed with SIGKILL every ``--kill-every`` seconds (and
  restarted), and Kafka, Redis and Elasticsearch are each restarted once (their pid from the
  stack's pid files, then ``ops/stack up`` with the same environment);
* at the end it drains and checks exact counts against the raw topics' actual content:
  ES documents = trend counts = valid produced - duplicates; distinct dead letters (by key)
  = invalid produced, each with its reason; the alert events equal the pure replay
  (``services/alerts/replay.py``) of the stored documents; each alert event delivered to the
  webhook exactly once (by ``X-Yuqing-Delivery``). Prints a table, writes
  ``bench/results/soak.json``; exit status 1 when a check fails.
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DEFAULT_PORTS = {"kafka": 9092, "es": 9200, "redis": 6379}
# raw topics take values up to this (the 2 MB case must reach ingest to be refused there)
RAW_MAX_MESSAGE_BYTES = 3 * 1024 * 1024
ROLES = ("ingest", "classify", "sink", "alerts")
DRAIN_LIMIT_S = 420.0
SEND_TIMEOUT_S = 30.0
# backend restarts: at these shares of the run, and at least this far apart
BACKEND_RESTARTS = {"kafka": 0.2, "redis": 0.45, "elasticsearch": 0.7}
RESTART_GAP_S = 45.0


class SoakRefused(Exception):
    """The soak will not run as asked (default stack, no stack folder ...)."""


@dataclass(frozen=True)
class SoakArgs:
    minutes: float = 10.0
    rate: float = 4.0
    kill_every_s: float = 60.0
    seed: int = 13
    allow_default_stack: bool = False
    stack_dir: str | None = None
    backend_restarts: bool = True
    keep: bool = False
    output: Path | None = None


# ---------------------------------------------------------------------------------- the feed
@dataclass
class Planned:
    """One message the feeder sends: its bytes and what it must become."""

    kind: str
    key: bytes | None
    value: bytes
    expect: str  # "doc:<doc_id>" | "dup:<doc_id>" (copy or re-send) | "dlq:<reason>"
    case: str  # valid | resend | copy | <malformed case name>


def _news(ident: str, published: datetime, **over) -> dict:
    msg = {"id": ident, "source": "soakwire", "published_at": published.isoformat(),
           "title": "Apple shares little changed", "body": "", "lang": "en"}
    msg.update(over)
    return msg


def malformed_cases(now: datetime, run: str) -> list[tuple[str, str, Any, str]]:
    """(case, kind, value factory i -> bytes, expected DLQ reason), cheap to expensive."""
    ok = now - timedelta(hours=1)

    def js(obj: Any) -> bytes:
        return json.dumps(obj).encode()

    return [
        ("bad_json", "news", lambda i: b'{"id": "x%d", "title": "unterminated' % i, "invalid_json"),
        ("array", "news", lambda i: b"[1, 2, %d]" % i, "not_object"),
        ("wrong_types", "news", lambda i: js({"id": i, "source": ["r"], "published_at": True,
                                              "title": {"t": 1}}), "schema"),
        ("bad_utf8", "comment", lambda i: b"\xff\xfe not utf-8 \xc3\x28 %d" % i, "not_utf8"),
        ("nul", "news", lambda i: js(_news(f"{run}-nul{i}", ok)).replace(
            b'"title": "', b'"title": "\x00', 1), "invalid_json"),
        ("deep_nesting", "news", lambda i: (b'{"id": "deep%d", "x": ' % i) + b"[" * 100_000
         + b"]" * 100_000 + b"}", "invalid_json"),
        ("huge_number", "news", lambda i: js(_news(f"{run}-num{i}", ok))[:-1]
         + b', "n": ' + b"9" * 5000 + b"}", "invalid_json"),
        ("empty_id", "news", lambda i: js(_news("", ok, title=f"empty id {i}")), "schema"),
        ("missing_fields", "comment", lambda i: js({"id": f"{run}-m{i}", "source": "x"}), "schema"),
        ("empty_value", "news", lambda i: b"", "empty"),
        ("stale_published_at", "news", lambda i: js(_news(
            f"{run}-old{i}", datetime(1990, 1, 1, tzinfo=UTC) + timedelta(days=i))),
         "stale_published_at"),
        ("future_published_at", "comment", lambda i: js({
            "id": f"{run}-fut{i}", "source": "reddit", "author": "u",
            "published_at": (now + timedelta(days=3)).isoformat(), "text": "from the future"}),
         "future_published_at"),
        # oversized: few of them (each costs ~MBs through Kafka, ingest and the DLQ)
        ("title_800k", "news", lambda i: js(_news(f"{run}-big{i}", ok, title="x" * 800_000)),
         "schema"),
        ("near_1mb", "comment", lambda i: js({"id": f"{run}-near{i}", "source": "reddit",
                                              "published_at": ok.isoformat(), "author": "",
                                              "text": "y" * 990_000}), "schema"),
        ("value_2mb", "news", lambda i: js(_news(f"{run}-2mb{i}", ok, title="z" * 2_000_000)),
         "too_large"),
    ]


OVERSIZED = {"title_800k", "near_1mb", "value_2mb"}


def plan_feed(args: SoakArgs, run: str, now: datetime) -> tuple[list[Planned], dict]:
    """The synthetic day ending now (time-compressed to --minutes), exact re-sends and the
    malformed cases interleaved; returns the send order and the feed's description."""
    from services.feed.synthetic import FeedSpec, SpikeSpec, generate

    n = max(200, int(args.rate * args.minutes * 60 * 0.92))
    span = 24 * 3600.0
    end = datetime.fromtimestamp(now.timestamp() - now.timestamp() % 300, UTC)
    start = end - timedelta(seconds=span) - timedelta(minutes=10)
    spec = FeedSpec(start=start, duration_s=span, items=n, seed=args.seed, run=run,
                    spike=SpikeSpec(ticker="TSLA", at_s=round(0.75 * span / 300) * 300 + 30,
                                    duration_s=200, items=40))
    items = generate(spec)
    plan: list[Planned] = []
    rng = random.Random(args.seed)
    cases = malformed_cases(now, run)
    regular = [c for c in cases if c[0] not in OVERSIZED]
    oversized = [c for c in cases if c[0] in OVERSIZED]
    seen: set[str] = set()
    resend_later: list[tuple[int, Planned]] = []
    n_over = 0
    for i, it in enumerate(items):
        v = json.loads(it.value)
        doc_id = f"{it.kind}:{v['source']}:{v['id']}"
        if it.meta.get("copy_of"):
            plan.append(Planned(it.kind, it.key, it.value, f"dup:{doc_id}", "copy"))
        else:
            seen.add(doc_id)
            plan.append(Planned(it.kind, it.key, it.value, f"doc:{doc_id}", "valid"))
            if rng.random() < 0.02:  # a producer retrying: the same message a little later
                resend_later.append((i + rng.randint(5, 40),
                                     Planned(it.kind, it.key, it.value, f"dup:{doc_id}",
                                             "resend")))
        while resend_later and resend_later[0][0] <= i:
            plan.append(resend_later.pop(0)[1])
        if i % 25 == 12:
            case, kind, make, reason = regular[(i // 25) % len(regular)]
            plan.append(Planned(kind, None, make(i), f"dlq:{reason}", case))
        if i % max(1, n // 9) == n // 18 and n_over < 9:  # 3 of each oversized case
            case, kind, make, reason = oversized[n_over % len(oversized)]
            plan.append(Planned(kind, None, make(i), f"dlq:{reason}", case))
            n_over += 1
    plan.extend(p for _, p in resend_later)
    info = {"items": len(plan), "feed_start": start.isoformat(), "feed_end": end.isoformat(),
            "synthetic_items": len(items), "spike": "TSLA"}
    return plan, info


# ---------------------------------------------------------------------------------- processes
class Proc:
    """A worker role (or ``deliver``) in a subprocess, logging to a file; restartable."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name, self.argv, self.env = name, argv, env
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.kills = 0
        self.exits: list[dict] = []  # exits we did not cause (status, when, last fault)

    def start(self) -> None:
        with self.log_path.open("a") as log:
            log.write(f"\n===== start {self.starts + 1} at {datetime.now(UTC).isoformat()}\n")
            log.flush()
            self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT)
        self.starts += 1

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        if self.alive():
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            self.kills += 1

    def stop(self, grace_s: float = 40.0) -> None:
        if not self.alive():
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def tail(self, n: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        return ""


@dataclass
class Stack:
    """The second ``ops/stack``: pid files and ``up`` with the same environment."""

    env: dict[str, str]
    stack_dir: Path

    def pidfile(self, service: str) -> Path:
        if service == "elasticsearch":
            cands = [self.stack_dir / "run" / "elasticsearch.pid",
                     Path(os.environ.get("YUQING_ES_FALLBACK_DIR", "/var/tmp/yuqing-stack"))
                     / "run" / "elasticsearch.pid"]
            for c in cands:
                if c.exists():
                    return c
            return cands[0]
        return self.stack_dir / "run" / f"{service}.pid"

    def pid(self, service: str) -> int:
        path = self.pidfile(service)
        try:
            return int(path.read_text().strip())
        except (OSError, ValueError) as exc:
            raise SoakRefused(f"no pid file for {service} at {path}: the soak restarts only "
                              "services its own ops/stack started") from exc

    def up(self) -> float:
        t0 = time.monotonic()
        r = subprocess.run([str(ROOT / "ops" / "stack"), "up"], env=self.env, cwd=ROOT,
                           start_new_session=True,  # the services outlive the soak
                           capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise RuntimeError(f"ops/stack up failed: {r.stdout[-500:]} {r.stderr[-500:]}")
        return time.monotonic() - t0

    def restart(self, service: str) -> dict:
        """SIGTERM the service (its own shutdown; Redis keeps its AOF), wait until it is gone,
        then ``ops/stack up``; returns how long it was down."""
        pid = self.pid(service)
        t0 = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            os.kill(pid, signal.SIGKILL)
        self.up()
        return {"service": service, "pid": pid, "down_s": round(time.monotonic() - t0, 1)}


def _port(url: str, default: int) -> int:
    u = urlparse(url if "://" in url else f"x://{url}")
    return u.port or default


def stack_for(settings, args: SoakArgs) -> Stack:
    kafka_host = settings.kafka_bootstrap.split(",")[0].strip()
    ports = {"kafka": _port(kafka_host, 9092), "es": _port(settings.es_url, 9200),
             "redis": _port(settings.redis_url, 6379)}
    hosts = {urlparse(f"x://{kafka_host}").hostname, urlparse(settings.es_url).hostname,
             urlparse(settings.redis_url).hostname}
    if not hosts <= {"127.0.0.1", "localhost", "::1"}:
        raise SoakRefused(f"the soak runs on loopback only; got hosts {sorted(map(str, hosts))}")
    on_default = [k for k, p in ports.items() if p == DEFAULT_PORTS[k]]
    if on_default and not args.allow_default_stack:
        raise SoakRefused(
            f"{', '.join(on_default)} on the default port: the soak restarts Kafka, Redis and "
            "Elasticsearch, so it runs against a stack of its own (e.g. YUQING_STACK_DIR=... "
            "YUQING_KAFKA_PORT=29092 YUQING_KAFKA_CONTROLLER_PORT=29093 YUQING_ES_PORT=29200 "
            "YUQING_REDIS_PORT=26379 ops/stack up, and the matching YUQING_KAFKA_BOOTSTRAP / "
            "YUQING_ES_URL / YUQING_REDIS_URL); --allow-default-stack overrides")
    stack_dir = args.stack_dir or os.environ.get("YUQING_STACK_DIR")
    if args.backend_restarts and not stack_dir:
        raise SoakRefused("set YUQING_STACK_DIR (or --stack-dir) to the soak stack's folder: "
                          "backend restarts use its pid files and `ops/stack up`")
    env = dict(os.environ)
    env.update({"YUQING_KAFKA_PORT": str(ports["kafka"]), "YUQING_ES_PORT": str(ports["es"]),
                "YUQING_REDIS_PORT": str(ports["redis"])})
    if stack_dir:
        env["YUQING_STACK_DIR"] = stack_dir
    return Stack(env, Path(stack_dir or ROOT / ".stack"))


# ---------------------------------------------------------------------------------- the harness
@dataclass
class Feeder:
    """Sends the plan at a constant rate and records where each message landed."""

    settings: Any
    plan: list[Planned]
    rate: float
    sent: int = 0
    send_retries: int = 0
    landed: dict[tuple[str, int, int], int] = field(default_factory=dict)  # -> plan index
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        from aiokafka import AIOKafkaProducer
        from aiokafka.errors import KafkaError

        from services.feed.replay import topic_for

        def new_producer() -> AIOKafkaProducer:
            return AIOKafkaProducer(
                bootstrap_servers=self.settings.kafka_bootstrap, acks="all",
                enable_idempotence=True, linger_ms=5, max_request_size=RAW_MAX_MESSAGE_BYTES,
                request_timeout_ms=15000)

        producer = new_producer()
        await producer.start()
        t0 = time.monotonic()
        try:
            for i, p in enumerate(self.plan):
                delay = t0 + i / self.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                topic = topic_for(self.settings, p.kind)
                while True:
                    try:
                        md = await asyncio.wait_for(
                            producer.send_and_wait(topic, p.value, key=p.key), SEND_TIMEOUT_S)
                        break
                    except (KafkaError, TimeoutError):
                        # Kafka restarting: aiokafka's idempotent producer can hang after a
                        # broker restart, so a fresh producer sends again (a copy that had
                        # landed is counted from the raw topics, not from this loop)
                        self.send_retries += 1
                        with contextlib.suppress(Exception):
                            await asyncio.wait_for(producer.stop(), 10)
                        await asyncio.sleep(1.0)
                        producer = new_producer()
                        with contextlib.suppress(Exception):
                            await asyncio.wait_for(producer.start(), 20)
                self.landed[(md.topic, md.partition, md.offset)] = i
                self.sent += 1
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 10)
            self.done.set()


class Receiver:
    """The webhook receiver: records each request's delivery id and alert ids."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, list[str], dict]] = []
        self.url = ""
        self._runner = None

    async def start(self) -> None:
        from aiohttp import web

        async def handle(request: web.Request) -> web.Response:
            body = json.loads(await request.read())
            self.requests.append((request.headers.get("X-Yuqing-Delivery", ""),
                                  [a["alert_id"] for a in body.get("alerts", [])], body))
            return web.Response(text="ok")

        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/hook", handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/hook"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def distinct(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for did, ids, _ in self.requests:
            out.setdefault(did, ids)
        return out


def _model_path(settings) -> Path:
    if settings.model_path is not None:
        return Path(settings.model_path)
    folder = ROOT / "var" / "soak-model" / "centroid-v1"
    if not (folder / "yuqing_model.json").exists():
        sys.path.insert(0, str(ROOT))
        from tests.integration.pipeline_support import build_centroid_model

        print("building the test model (centroid head on the base encoder) ...", flush=True)
        build_centroid_model(folder)
    return folder


async def _set_raw_topic_limits(s) -> None:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(bootstrap_servers=s.kafka_bootstrap)
    await admin.start()
    try:
        await admin.alter_configs([
            ConfigResource(ConfigResourceType.TOPIC, t,
                           configs={"max.message.bytes": str(RAW_MAX_MESSAGE_BYTES)})
            for t in (s.topic_news_raw, s.topic_comments_raw)])
    finally:
        await admin.close()


async def read_topic(s, topic: str, idle_ms: int = 3000) -> list:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=s.kafka_bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                max_partition_fetch_bytes=2 * RAW_MAX_MESSAGE_BYTES,
                                fetch_max_bytes=4 * RAW_MAX_MESSAGE_BYTES)
    await consumer.start()
    out: list = []
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=idle_ms, max_records=500)
            if not batch:
                return out
            for msgs in batch.values():
                out.extend(msgs)
    finally:
        await consumer.stop()


class Observer:
    """Reads every output of the namespace (ES, Redis, the DLQ and alerts topics)."""

    def __init__(self, s, start: datetime, end: datetime) -> None:
        from elasticsearch import AsyncElasticsearch
        from redis.asyncio import Redis

        self.s, self.start, self.end = s, start, end
        self.es = AsyncElasticsearch(s.es_url, request_timeout=30, max_retries=1)
        self.redis = Redis.from_url(s.redis_url)

    async def close(self) -> None:
        await self.es.close()
        await self.redis.aclose()

    async def es_count(self) -> int:
        idx = f"{self.s.es_index_prefix}-*"
        try:
            await self.es.indices.refresh(index=idx, allow_no_indices=True)
            return (await self.es.count(index=idx, allow_no_indices=True))["count"]
        except Exception:  # noqa: BLE001 - ES restarting or no index yet
            return -1

    async def es_docs(self) -> dict[str, dict]:
        idx = f"{self.s.es_index_prefix}-*"
        await self.es.indices.refresh(index=idx, allow_no_indices=True)
        out: dict[str, dict] = {}
        dup = 0
        resp = await self.es.search(index=idx, size=1000, query={"match_all": {}},
                                    sort=["_doc"], scroll="2m")
        sid = resp["_scroll_id"]
        try:
            while resp["hits"]["hits"]:
                for h in resp["hits"]["hits"]:
                    dup += h["_id"] in out
                    out[h["_id"]] = h["_source"]
                resp = await self.es.scroll(scroll_id=sid, scroll="2m")
                sid = resp["_scroll_id"]
        finally:
            with contextlib.suppress(Exception):
                await self.es.clear_scroll(scroll_id=sid)
        self.es_duplicate_ids = dup
        return out

    async def trend_minutes(self) -> Counter:
        from services.trends.store import TrendStore
        from services.trends.windows import ALL, DIM_ALL

        store = TrendStore(self.redis, self.s.redis_prefix, self.s.trends_retention_h * 3600)
        points = await store.series(DIM_ALL, ALL, self.start, self.end, resolution="minute")
        return Counter({p.start: p.counts.count for p in points if p.counts.count})

    async def dead_letters(self) -> tuple[dict[bytes, Any], int]:
        from services.core.schemas import DeadLetter

        msgs = await read_topic(self.s, self.s.topic_dlq, idle_ms=1500)
        return {m.key: DeadLetter.model_validate_json(m.value) for m in msgs}, len(msgs)

    async def dlq_count(self) -> int:
        return len({m.key for m in await read_topic(self.s, self.s.topic_dlq, idle_ms=800)})

    async def alerts(self) -> dict[str, Any]:
        from services.core.schemas import Alert

        msgs = await read_topic(self.s, self.s.topic_alerts, idle_ms=1500)
        out: dict[str, Any] = {}
        for m in msgs:
            a = Alert.model_validate_json(m.value)
            out.setdefault(a.alert_id, a)
        return out


async def cleanup(s) -> None:
    from aiokafka.admin import AIOKafkaAdminClient
    from elasticsearch import AsyncElasticsearch
    from redis.asyncio import Redis

    with contextlib.suppress(Exception):
        admin = AIOKafkaAdminClient(bootstrap_servers=s.kafka_bootstrap)
        await admin.start()
        try:
            names = [t for t in await admin.list_topics() if t.startswith(f"{s.namespace}.")]
            if names:
                await admin.delete_topics(names)
        finally:
            await admin.close()
    with contextlib.suppress(Exception):
        es = AsyncElasticsearch(s.es_url)
        try:
            await es.options(ignore_status=404).indices.delete(
                index=f"{s.es_index_prefix}-*,{s.es_alerts_index}*", allow_no_indices=True)
        finally:
            await es.close()
    with contextlib.suppress(Exception):
        r = Redis.from_url(s.redis_url)
        try:
            async for key in r.scan_iter(match=f"{s.redis_prefix}:*", count=1000):
                await r.delete(key)
        finally:
            await r.aclose()


async def soak(args: SoakArgs, log=print) -> dict:
    import logging

    from services.alerts.subscriptions import (
        SubscriptionIn,
        SubscriptionStore,
        WebhookChannelIn,
        new_subscription,
    )
    from services.core.config import get_settings
    from services.feed.demo import settings_env
    from services.stream.log_noise import install
    from services.stream.topics import ensure_topics

    logging.basicConfig(level=logging.WARNING, format="  %(levelname)s %(name)s %(message)s")
    install()  # the feeder's producer during the Kafka restart: one line, not hundreds
    logging.getLogger("elastic_transport").setLevel(logging.CRITICAL)  # ES restart: polled
    base = get_settings()
    stack = stack_for(base, args)
    run = f"{datetime.now(UTC):%m%d%H%M}-{uuid.uuid4().hex[:4]}"
    work = Path(tempfile.mkdtemp(prefix=f"yuqing-soak-{run}-"))
    s = base.model_copy(update={
        "namespace": f"soak-{run}", "topic_partitions": 2, "data_dir": work / "var",
        "model_path": _model_path(base), "device": "cpu", "classify_backend": "fp32",
        "classify_max_batch": 64, "log_level": "INFO"})
    log(f"soak {run}: namespace {s.namespace}, logs in {work}, stack {stack.stack_dir}")
    now = datetime.now(UTC)
    plan, feed_info = plan_feed(args, run, now)
    await ensure_topics(s)
    await _set_raw_topic_limits(s)

    receiver = Receiver()
    await receiver.start()
    from redis.asyncio import Redis

    r = Redis.from_url(s.redis_url)
    sub = new_subscription(SubscriptionIn(
        name="soak", channel=WebhookChannelIn(url=receiver.url, secret="soak-secret-0123456789"),
        group_wait_s=0, group_interval_s=0, repeat_interval_s=0, notify_resolved=True))
    await SubscriptionStore(r, s.redis_prefix).put(sub)
    await r.aclose()

    env = settings_env(s)
    env.update({"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                "YUQING_WEBHOOK_ALLOW_NETWORKS": "127.0.0.1/32", "PYTHONPATH": str(ROOT)})
    procs = {role: Proc(role, [sys.executable, "-m", "services.worker_cli", "--role", role],
                        env, work) for role in ROLES}
    procs["deliver"] = Proc("deliver", [sys.executable, "-c",
                                        "from services.cli import main; main()", "deliver",
                                        "--from-beginning"], env, work)
    for p in procs.values():
        p.start()

    faults: list[dict] = []
    t_start = time.monotonic()
    duration = args.minutes * 60
    feeder = Feeder(s, plan, len(plan) / (duration * 0.95))
    obs = Observer(s, datetime.fromisoformat(feed_info["feed_start"]) - timedelta(hours=1),
                   datetime.fromisoformat(feed_info["feed_end"]) + timedelta(hours=2))
    result: dict[str, Any] = {"run": run, "namespace": s.namespace, "minutes": args.minutes,
                              "feed": feed_info}
    ok = False
    try:
        feed_task = asyncio.create_task(feeder.run())
        backend_at = dict(BACKEND_RESTARTS) if args.backend_restarts else {}
        last_restart = -RESTART_GAP_S
        rng = random.Random(args.seed)
        next_kill = t_start + args.kill_every_s
        last_report = 0.0
        while True:
            now_m = time.monotonic()
            frac = (now_m - t_start) / duration
            if feed_task.done():
                feed_task.result()  # raise what the feeder raised
                break
            for service, at in list(backend_at.items()):
                if frac >= at and now_m - last_restart >= RESTART_GAP_S:
                    del backend_at[service]
                    log(f"  [{now_m - t_start:5.0f}s] restarting {service}")
                    f = await asyncio.to_thread(stack.restart, service)
                    f.update(kind="restart", at_s=round(now_m - t_start, 1))
                    faults.append(f)
                    log(f"  [{time.monotonic() - t_start:5.0f}s] {service} back "
                        f"(down {f['down_s']} s)")
                    last_restart = now_m = time.monotonic()
                    break
            if now_m >= next_kill and frac < 0.97:
                name = rng.choice([*ROLES, "deliver"])
                procs[name].kill9()
                faults.append({"kind": "kill -9", "process": name,
                               "at_s": round(now_m - t_start, 1)})
                log(f"  [{now_m - t_start:5.0f}s] kill -9 {name}; restarting it")
                await asyncio.sleep(1.0)
                procs[name].start()
                next_kill = now_m + args.kill_every_s * rng.uniform(0.8, 1.2)
            for p in procs.values():  # a worker that died on its own is a finding
                if p.proc is not None and not p.alive():
                    rc = p.proc.returncode
                    p.exits.append({"rc": rc, "at_s": round(now_m - t_start, 1),
                                    "last_fault": faults[-1] if faults else None})
                    log(f"  [{now_m - t_start:5.0f}s] {p.name} EXITED ({rc}); restarting; "
                        f"last lines: {p.tail(4)}")
                    p.start()
            if now_m - last_report > 30:
                last_report = now_m
                log(f"  [{now_m - t_start:5.0f}s] sent {feeder.sent}/{len(plan)}, "
                    f"ES {await obs.es_count()}")
            await asyncio.sleep(1.0)
        log(f"  feed done: {feeder.sent} sent in {time.monotonic() - t_start:.0f} s; draining")

        # ---- what the raw topics really hold -> the expected outcome
        raw = (await read_topic(s, s.topic_news_raw)) + (await read_topic(s, s.topic_comments_raw))
        by_value: dict[bytes, Planned] = {}
        for p in plan:
            by_value.setdefault(hashlib.sha256(p.value).digest(), p)
        expected_docs: set[str] = set()
        expected_dlq: dict[bytes, str] = {}
        valid_records = dup_records = 0
        cases = Counter()
        for m in raw:
            p = by_value[hashlib.sha256(m.value or b"").digest()]
            cases[p.case] += 1
            kind, _, what = p.expect.partition(":")
            if kind == "dlq":
                expected_dlq[f"{m.topic}:{m.partition}:{m.offset}".encode()] = what
                continue
            valid_records += 1
            if what in expected_docs or kind == "dup":
                dup_records += 1
            if kind == "doc":
                expected_docs.add(what)
        raw_extra = len(raw) - feeder.sent  # a send retried after it had landed
        n_docs, n_dead = len(expected_docs), len(expected_dlq)
        log(f"  raw topics: {len(raw)} records ({valid_records} valid, {dup_records} duplicates, "
            f"{n_dead} invalid); expecting {n_docs} documents")

        # ---- drain
        t_drain = time.monotonic()
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        # the detector the settings describe, as the pipeline tests build it (bench may not
        # import a stage's agent module)
        from tests.integration.pipeline_fixtures import rules_for

        cfg = rules_for(s)
        state: dict[str, Any] = {}
        while True:
            for p in procs.values():
                if p.proc is not None and not p.alive():
                    p.exits.append({"rc": p.proc.returncode, "at_s": "drain"})
                    log(f"  {p.name} EXITED ({p.proc.returncode}) while draining; restarting")
                    p.start()
            state = {"es": await obs.es_count(), "dlq": await obs.dlq_count(),
                     "trends": sum((await obs.trend_minutes()).values())}
            if state["es"] >= n_docs and state["dlq"] >= n_dead and state["trends"] >= n_docs:
                break
            if time.monotonic() - t_drain > DRAIN_LIMIT_S:
                log(f"  drain timed out: {state}")
                break
            await asyncio.sleep(3.0)
        # alerts: settle until deliveries match the alert events and nothing changes for 20 s
        last_sig, stable_since = None, time.monotonic()
        while time.monotonic() - t_drain < DRAIN_LIMIT_S + 120:
            alerts = await obs.alerts()
            delivered = {a for ids in receiver.distinct().values() for a in ids}
            sig = (len(alerts), len(delivered))
            if sig != last_sig:
                last_sig, stable_since = sig, time.monotonic()
            elif time.monotonic() - stable_since > 20 and set(alerts) <= delivered:
                break
            await asyncio.sleep(2.0)
        drain_s = time.monotonic() - t_drain
        log(f"  drained in {drain_s:.0f} s: {state}")

        # ---- checks
        docs = await obs.es_docs()
        trends = await obs.trend_minutes()
        distinct, raw_dead = await obs.dead_letters()
        alerts = await obs.alerts()
        want_minutes: Counter = Counter()
        for doc_id in expected_docs:
            d = docs.get(doc_id)
            if d is not None:
                pub = datetime.fromisoformat(d["published_at"])
                want_minutes[pub.replace(second=0, microsecond=0)] += 1
        reasons_ok = all(distinct.get(k) is not None and distinct[k].reason == why
                         for k, why in expected_dlq.items())
        truncated = sum(1 for d in distinct.values() if d.original_truncated)
        from tests.integration.pipeline_support import expected_alert_windows

        possible, settled = expected_alert_windows(list(docs.values()), cfg)
        from services.alerts import rules

        got = {(a.entity, a.topic, rules.window_of(a.window_start.timestamp(), cfg.window_s))
               for a in alerts.values()}
        per_delivery = receiver.distinct()
        times_delivered = Counter(a for ids in per_delivery.values() for a in ids)
        checks = {
            "es_docs == expected": (len(docs), n_docs, set(docs) == expected_docs),
            "no doc in two indices": (obs.es_duplicate_ids, 0, obs.es_duplicate_ids == 0),
            "trend count == expected": (sum(trends.values()), n_docs,
                                        sum(trends.values()) == n_docs and trends == want_minutes),
            "dlq distinct == invalid": (len(distinct), n_dead,
                                        set(distinct) == set(expected_dlq)),
            "dlq reasons right": (sum(1 for k, w in expected_dlq.items()
                                      if k in distinct and distinct[k].reason == w), n_dead,
                                  reasons_ok),
            "alerts == clean replay": (len(got), f"{len(settled)}..{len(possible)}",
                                       settled <= got <= possible and len(got) == len(alerts)),
            "webhook exactly once": (sum(times_delivered.values()), len(alerts),
                                     set(times_delivered) == set(alerts)
                                     and all(v == 1 for v in times_delivered.values())),
        }
        ok = all(c[2] for c in checks.values())
        result.update({
            "ok": ok, "duration_s": round(time.monotonic() - t_start, 1),
            "drain_s": round(drain_s, 1),
            "produced": {"records": len(raw), "valid": valid_records, "duplicates": dup_records,
                         "invalid": n_dead, "by_case": dict(sorted(cases.items())),
                         "send_retries": feeder.send_retries, "raw_extra": raw_extra},
            "outputs": {"es_docs": len(docs), "trend_count": sum(trends.values()),
                        "dlq_records": raw_dead, "dlq_distinct": len(distinct),
                        "dlq_truncated": truncated,
                        "dlq_by_reason": dict(Counter(d.reason for d in distinct.values())),
                        "alerts": len(alerts),
                        "alerts_by_state": dict(Counter(a.state for a in alerts.values())),
                        "replay_settled": len(settled), "replay_possible": len(possible),
                        "webhook_requests": len(receiver.requests),
                        "webhook_deliveries": len(per_delivery)},
            "faults": faults,
            "processes": {n: {"starts": p.starts, "kills": p.kills, "unexpected_exits": p.exits}
                          for n, p in procs.items()},
            "checks": {k: {"got": v[0], "want": v[1], "ok": v[2]} for k, v in checks.items()},
        })
        if not ok:
            missing = sorted(expected_docs - set(docs))[:10]
            extra = sorted(set(docs) - expected_docs)[:10]
            result["diagnostics"] = {
                "missing_docs": missing, "extra_docs": extra,
                "dlq_missing": [k.decode() for k in set(expected_dlq) - set(distinct)][:10],
                "alerts_missing": sorted(map(str, settled - got))[:10],
                "alerts_unexpected": sorted(map(str, got - possible))[:10],
                "not_delivered": sorted(set(alerts) - set(times_delivered))[:10],
                "delivered_twice": [a for a, c in times_delivered.items() if c > 1][:10]}
        return result
    finally:
        for p in procs.values():
            p.stop()
        await obs.close()
        await receiver.stop()
        result["logs"] = str(work)
        if not args.keep and ok:
            await cleanup(s)


def table(result: dict):
    from rich.table import Table

    t = Table(title=f"yuqing soak · {result['minutes']} min · namespace {result['namespace']}")
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_column("want", justify="right")
    t.add_column("ok")
    p, o = result["produced"], result["outputs"]
    t.add_row("records produced (raw topics)", str(p["records"]), "", "")
    t.add_row("  valid / duplicates (copies + re-sends)", f"{p['valid']} / {p['duplicates']}",
              "", "")
    t.add_row("  invalid (malformed + oversized)", str(p["invalid"]), "", "")
    for name, c in result["checks"].items():
        t.add_row(name, str(c["got"]), str(c["want"]), "yes" if c["ok"] else "NO")
    t.add_row("dead letters truncated (> 256 KiB)", str(o["dlq_truncated"]), "", "")
    t.add_row("DLQ records incl. redelivered copies", str(o["dlq_records"]), "", "")
    t.add_row("alerts by state", json.dumps(o["alerts_by_state"]), "", "")
    t.add_row("webhook requests / distinct deliveries",
              f"{o['webhook_requests']} / {o['webhook_deliveries']}", "", "")
    kills = Counter(f["process"] for f in result["faults"] if f["kind"] == "kill -9")
    t.add_row("kill -9", ", ".join(f"{k} x{v}" for k, v in sorted(kills.items())), "", "")
    for f in result["faults"]:
        if f["kind"] == "restart":
            t.add_row(f"{f['service']} restart at {f['at_s']:.0f} s", f"down {f['down_s']} s",
                      "", "")
    exits = []
    for n, v in result["processes"].items():
        for e in v["unexpected_exits"]:
            lf = e.get("last_fault") or {}
            after = lf.get("service") or lf.get("process") or "-"
            exits.append(f"{n} rc={e['rc']} at {e['at_s']} s (last fault: {after})")
    t.add_row("worker exits not caused by the harness (restarted)",
              "; ".join(exits) if exits else "none", "", "")
    t.add_row("drain after the feed", f"{result['drain_s']:.0f} s", "", "")
    return t


def write(result: dict, path: Path | None = None) -> Path:
    path = path or RESULTS / "soak.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return path
