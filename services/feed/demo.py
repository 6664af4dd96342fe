"""``yuqing demo``: the whole pipeline on a synthetic day, watched live.

Steps: check the stack, make sure a production model exists (install the shipped one), generate a
day of news and comments for a dozen companies with one injected negative spike, start a
worker (all roles) in a subprocess, replay the day compressed into a few minutes, and show
progress, the trend table and alerts as they happen. It ends by printing how to query the
results.

The demo runs in its own namespace ``yuqing-demo-<run>`` (``YUQING_NAMESPACE``: its topics,
consumer groups, indices and Redis keys all start with it) and clears the previous demo's
data first (everything named ``yuqing-demo-*``), so it never mixes with production data and
every run starts from zero.
"""
from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from services.core.config import Settings, child_env, get_settings
from services.feed.synthetic import COMPANIES, COMPANIES_ZH, FeedSpec, SpikeSpec, generate

SHOWN = COMPANIES + COMPANIES_ZH  # the trend table's rows: English then Chinese companies
ZH_SPIKE = "300750.SZ"  # 宁德时代: the Chinese negative spike

console = Console()
DEMO_PREFIX = "yuqing-demo-"  # every demo run's namespace starts with it


def demo_settings(base: Settings, run: str) -> Settings:
    # a new namespace per run: Kafka deletes topics asynchronously, so reusing the previous
    # run's names could meet topics still being deleted
    return base.model_copy(update={"namespace": f"{DEMO_PREFIX}{run}",
                                   "data_dir": Path(base.data_dir) / "demo"})


def settings_env(s: Settings) -> dict[str, str]:
    """The environment that makes a child process build exactly ``s``."""
    return child_env(s)


def has_model(s: Settings) -> bool:
    if s.model_path is not None:
        return Path(s.model_path).exists()
    return (Path(s.model_registry) / "production.json").exists()


def ensure_chinese_model(s: Settings) -> None:
    from models.ship.cli import SHIPPED_ROOT

    if s.model_path is not None or (Path(s.model_registry) / "production-zh.json").exists():
        return
    if not (SHIPPED_ROOT / "zh").is_dir():
        return
    cmd = [sys.executable, "-m", "models.ship", "install", "--registry", str(s.model_registry),
           "--lang", "zh"]
    console.print(f"No Chinese production model yet: installing the shipped one "
                  f"({' '.join(cmd[2:])})")
    if subprocess.call(cmd) != 0:
        console.print("[yellow]The Chinese model could not be installed (see above); Chinese "
                      "items go to the fallback model.[/yellow]")


def ensure_model(s: Settings, train: bool) -> bool:
    """Production models for the demo: the ones shipped in the repository (seconds), or, only
    when the English one cannot be installed and ``train`` is set, one trained from the data
    (minutes). Without the Chinese model the demo still runs (its Chinese items are scored
    by the fallback the settings name, stamped as such)."""
    ensure_chinese_model(s)
    if has_model(s):
        return True
    reg = str(s.model_registry)
    install = [sys.executable, "-m", "models.ship", "install", "--registry", reg]
    console.print(f"No production model yet: installing the shipped one ({' '.join(install[2:])})")
    if subprocess.call(install) == 0 and has_model(s):
        return True
    train_cmd = [sys.executable, "-m", "models.finetune.make_production", "--registry", reg]
    if not train or importlib.util.find_spec("models.finetune.make_production") is None:
        console.print(f"[red]No production model in {reg}.[/red] Fix the shipped model as said "
                      f"above, or train one with:\n  make model-train\nor\n  "
                      f"{' '.join(train_cmd[1:])}\nthen run `yuqing demo` again.")
        return False
    console.print(f"[yellow]Training one instead ({' '.join(train_cmd[2:])})...[/yellow]")
    if subprocess.call(train_cmd) != 0 or not has_model(s):
        console.print("[red]Training failed; see the output above.[/red]")
        return False
    return True


async def reset_namespace(s: Settings) -> None:
    """Remove the previous demo's indices, Redis keys and topics."""
    from aiokafka.admin import AIOKafkaAdminClient
    from elasticsearch import AsyncElasticsearch
    from redis.asyncio import Redis

    es = AsyncElasticsearch(s.es_url)
    try:
        await es.options(ignore_status=404).indices.delete(index=f"{DEMO_PREFIX}*",
                                                           expand_wildcards="all")
    finally:
        await es.close()
    redis = Redis.from_url(s.redis_url)
    try:
        batch = []
        async for k in redis.scan_iter(match=f"{DEMO_PREFIX}*", count=2000):
            batch.append(k)
            if len(batch) >= 2000:
                await redis.unlink(*batch)
                batch.clear()
        if batch:
            await redis.unlink(*batch)
    finally:
        await redis.aclose()
    admin = AIOKafkaAdminClient(bootstrap_servers=s.kafka_bootstrap)
    await admin.start()
    try:
        old = [t for t in await admin.list_topics() if t.startswith(DEMO_PREFIX)]
        if old:
            with contextlib.suppress(Exception):
                await admin.delete_topics(old)
    finally:
        await admin.close()


async def check_stack(s: Settings) -> str | None:
    from elasticsearch import AsyncElasticsearch
    from redis.asyncio import Redis

    from services.stream.topics import ensure_topics

    try:
        r = Redis.from_url(s.redis_url)
        await asyncio.wait_for(r.ping(), 5)
        await r.aclose()
    except Exception as exc:  # noqa: BLE001
        return f"Redis at {s.redis_url}: {exc!r}"
    try:
        es = AsyncElasticsearch(s.es_url)
        await asyncio.wait_for(es.cluster.health(), 10)
        await es.close()
    except Exception as exc:  # noqa: BLE001
        return f"Elasticsearch at {s.es_url}: {exc!r}"
    try:
        await ensure_topics(s)
    except Exception as exc:  # noqa: BLE001
        return f"Kafka at {s.kafka_bootstrap}: {exc}"
    return None


class View:
    """What the live screen shows; refreshed from ES, Redis and the alerts topic."""

    def __init__(self, s: Settings, spec: FeedSpec, total: int, run: str) -> None:
        self.s, self.spec, self.total, self.run = s, spec, total, run
        self.sent = 0
        self.cursor = spec.start
        self.indexed = 0
        self.counted = 0
        self.dlq = 0
        self.alerts: list = []
        self.trends: dict = {}
        self.progress = Progress(TextColumn("{task.description:<22}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[note]}"))
        self.t_sent = self.progress.add_task("produced to Kafka", total=total, note="")
        self.t_index = self.progress.add_task("searchable in ES", total=total, note="")
        self.t_trend = self.progress.add_task("counted in trends", total=total, note="")

    def render(self) -> Group:
        self.progress.update(self.t_sent, completed=self.sent,
                             note=f"simulated {self.cursor:%H:%M} UTC")
        self.progress.update(self.t_index, completed=self.indexed, note=f"DLQ {self.dlq}")
        self.progress.update(self.t_trend, completed=self.counted, note="")
        table = Table(title="Sentiment trends (as of the simulated clock)", expand=True)
        for col in ("company", "1h docs", "1h negative", "24h docs", "24h negative"):
            table.add_column(col, justify="right" if col != "company" else "left")
        for ticker, name in SHOWN:
            t = self.trends.get(ticker)
            if t is None:
                table.add_row(f"{name} ({ticker})", "-", "-", "-", "-")
                continue
            h1, d1 = t["1h"], t["24h"]
            neg1 = f"{h1.negative_share:.0%}" if h1.count else "-"
            style = "bold red" if h1.count >= 5 and h1.negative_share >= 0.5 else ""
            table.add_row(f"{name} ({ticker})", str(h1.count),
                          f"[{style}]{neg1}[/]" if style else neg1,
                          str(d1.count), f"{d1.negative_share:.0%}" if d1.count else "-")
        alerts = Table(title="Alerts (yuqing.alerts)", expand=True)
        for col in ("window (UTC)", "series", "event", "severity", "negatives", "score",
                    "top headline"):
            alerts.add_column(col)
        for a in self.alerts[-6:]:
            head = a.evidence[0].title[:60] if a.evidence else ""
            sev = {"critical": "bold red", "warning": "yellow"}.get(a.severity, "cyan")
            figures = (f"{a.negative_count}/{a.total_count}" if a.state != "resolved"
                       else f"{a.episode_negatives or 0} in {(a.duration_s or 0) / 60:.0f} min")
            alerts.add_row(f"{a.window_start:%H:%M}-{a.window_end:%H:%M}",
                           f"{a.entity}/{a.topic}", a.state, f"[{sev}]{a.severity}[/]",
                           figures, f"{(a.peak_score or a.score) if a.state == 'resolved' else a.score:.0f}",
                           head)
        if not self.alerts:
            alerts.add_row("-", "none yet", "", "", "", "")
        return Group(Panel(self.progress, title=f"yuqing demo · run {self.run}"), table, alerts)


async def _poll(view: View, expected: int) -> None:
    from aiokafka import AIOKafkaConsumer
    from elasticsearch import AsyncElasticsearch
    from redis.asyncio import Redis

    from services.core.schemas import Alert
    from services.trends.store import TrendStore
    from services.trends.windows import ALL, DIM_ALL

    s = view.s
    es = AsyncElasticsearch(s.es_url)
    redis = Redis.from_url(s.redis_url)
    store = TrendStore(redis, s.redis_prefix, s.trends_retention_h * 3600)
    consumer = AIOKafkaConsumer(s.topic_alerts, s.topic_dlq, bootstrap_servers=s.kafka_bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                group_id=None)
    await consumer.start()
    seen_alerts: dict[str, Alert] = {}
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            for tp, msgs in batch.items():
                for m in msgs:
                    if tp.topic == s.topic_dlq:
                        view.dlq += 1
                    else:
                        with contextlib.suppress(Exception):
                            a = Alert.model_validate_json(m.value)
                            seen_alerts[a.alert_id] = a
            view.alerts = sorted(seen_alerts.values(), key=lambda a: (a.window_start, a.alert_id))
            with contextlib.suppress(Exception):
                r = await es.count(index=f"{s.es_index_prefix}*",
                                   query={"prefix": {"source_id": view.spec.run}})
                view.indexed = r["count"]
            with contextlib.suppress(Exception):
                now = view.cursor + timedelta(minutes=1)
                got = await store.read_many([("entity", t) for t, _ in SHOWN], now=now)
                view.trends = {t: got[("entity", t)] for t, _ in SHOWN}
                end = view.spec.start + timedelta(seconds=view.spec.duration_s, hours=2)
                points = await store.series(DIM_ALL, ALL, view.spec.start - timedelta(hours=1),
                                            end, resolution="hour")
                view.counted = sum(p.counts.count for p in points)
            await asyncio.sleep(0.8)
    finally:
        await consumer.stop()
        await redis.aclose()
        await es.close()


def _expected_docs(items) -> int:
    return sum(1 for it in items if not it.meta.get("invalid") and not it.meta.get("copy_of"))


async def _run(s: Settings, spec: FeedSpec, items, speed: float, run: str,
               worker: subprocess.Popen, drain_timeout: float) -> View:
    from services.feed.replay import replay

    view = View(s, spec, len(items), run)
    expected = _expected_docs(items)
    view.progress.update(view.t_index, total=expected)
    view.progress.update(view.t_trend, total=expected)

    def on_sent(n: int, it) -> None:
        view.sent, view.cursor = n, it.published_at

    poller = asyncio.create_task(_poll(view, expected))
    with Live(view.render(), console=console, refresh_per_second=2) as live:
        replay_task = asyncio.create_task(replay(items, s, speed, on_sent=on_sent))
        while not replay_task.done():
            live.update(view.render())
            await asyncio.sleep(0.5)
            if worker.poll() is not None:
                break
        await replay_task
        deadline = time.monotonic() + drain_timeout
        while (view.indexed < expected or view.counted < expected) and time.monotonic() < deadline:
            if worker.poll() is not None:
                break
            live.update(view.render())
            await asyncio.sleep(0.5)
        await asyncio.sleep(3)  # last alerts batch
        live.update(view.render())
    poller.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await poller
    return view


def run_demo(items: int = 3000, minutes: float = 2.5, train: bool = False,
             keep_running: bool = False) -> int:
    base = get_settings()
    run = datetime.now(UTC).strftime("%m%d%H%M%S")
    s = demo_settings(base, run)
    console.rule("[bold]yuqing demo")
    problem = asyncio.run(check_stack(base))
    if problem:
        console.print(f"[red]The stack is not reachable:[/red] {escape(problem)}\nStart it with "
                      "`ops/stack up` (or `make up`) and run `yuqing demo` again.")
        return 2
    if not ensure_model(s, train):
        return 2
    console.print(f"clearing the previous demo's data (topics, indices and Redis keys "
                  f"{DEMO_PREFIX}*)")
    asyncio.run(reset_namespace(s))
    day = 24 * 3600
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(seconds=day)
    spec = FeedSpec(start=start, duration_s=day, items=items, seed=int(run[-4:]), run=f"d{run}",
                    spike=SpikeSpec(ticker="TSLA", at_s=0.65 * day, items=max(24, items // 75)),
                    zh_share=0.25,
                    spike_zh=SpikeSpec(ticker=ZH_SPIKE, at_s=0.45 * day, items=max(24, items // 75)))
    feed = generate(spec)
    speed = day / (minutes * 60)
    from services.stream.topics import ensure_topics

    asyncio.run(ensure_topics(s))
    log_path = Path(s.data_dir) / f"worker-{run}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    console.print(f"feed: {len(feed)} items, {spec.start:%Y-%m-%d %H:%M} → "
                  f"{spec.start + timedelta(seconds=day):%Y-%m-%d %H:%M} UTC, a quarter of it "
                  f"Chinese; negative spikes for TSLA at "
                  f"{spec.start + timedelta(seconds=spec.spike.at_s):%H:%M} and 宁德时代 "
                  f"({ZH_SPIKE}) at {spec.start + timedelta(seconds=spec.spike_zh.at_s):%H:%M}; "
                  "replay at "
                  f"{speed:.0f}x (about {minutes:g} min)")
    console.print(f"starting worker (all roles), log: {log_path}")
    with log_path.open("w") as log:
        worker = subprocess.Popen([sys.executable, "-m", "services.worker_cli", "--role", "all"],
                                  env=settings_env(s), stdout=log, stderr=subprocess.STDOUT)
    try:
        view = asyncio.run(_run(s, spec, feed, speed, run, worker, drain_timeout=180))
    except KeyboardInterrupt:
        view = None
    finally:
        if not keep_running and worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
    if worker.returncode not in (None, 0, -signal.SIGTERM):
        console.print(f"[red]the worker exited with {worker.returncode}; see {log_path}[/red]")
    if view is not None:
        console.print(f"\n[bold]Done.[/bold] {view.sent} items produced, {view.indexed} documents "
                      f"searchable, {view.counted} counted in trends, {view.dlq} dead letters, "
                      f"{len(view.alerts)} alert(s).")
    _print_queries(s)
    return 0


def _print_queries(s: Settings) -> None:
    console.print(f"""
[bold]Query the results[/bold]
  Elasticsearch documents (alias {s.es_index_prefix}):
    curl -s '{s.es_url}/{s.es_index_prefix}/_search?size=3&pretty'\\
'&q=entities:TSLA%20AND%20sentiment.label:negative'
  Alerts in Elasticsearch:
    curl -s '{s.es_url}/{s.es_alerts_index}/_search?pretty&sort=window_start:desc'
  Redis trend buckets (prefix {s.redis_prefix}):
    redis-cli --scan --pattern '{s.redis_prefix}:tr:*entity:TSLA' | head
    redis-cli hgetall "$(redis-cli --scan --pattern '{s.redis_prefix}:tr:{{h*}}:entity:TSLA' \\
| head -1)"
  The alerts topic:
    yuqing feed tail {s.topic_alerts}
  The HTTP API on the demo's data (then open http://{s.api_host}:{s.api_port}/docs, /v1/alerts):
    YUQING_NAMESPACE={s.namespace} yuqing api
""")
