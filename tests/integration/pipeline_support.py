"""Support for the pipeline tests: a per-test namespace, real worker subprocesses, a test model,
and the expected outcome computed from the feed itself.

The test model ("centroid head"): the real MiniLM encoder with a linear head set in closed
form to the nearest-centroid classifier of labelled synthetic examples (a different seed from
the tests' feeds). It is a genuine checkpoint, served through ``YUQING_MODEL_PATH`` exactly like
a trained one, and it is decisive on the feed's clearly negative spike, which an untrained
head is not. Tests never assume its labels: they compute the expected labels by running the
same checkpoint in the test process, and the expected alerts by running the pure rules
(``services.alerts.rules``) over those labels.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from services.alerts import replay, rules
from services.core.config import Settings
from services.feed.demo import settings_env
from services.feed.synthetic import FeedItem, FeedSpec, generate

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------- settings
def pipeline_settings(base: Settings, unique: str, tmp_path: Path, es_prefix: str, redis_ns: str,
                      model_dir: Path, **over) -> Settings:
    assert es_prefix == redis_ns == f"test-{unique}", "fixtures and namespace disagree"
    values = {
        "namespace": f"test-{unique}", "topic_partitions": 2, "data_dir": tmp_path / "var",
        "model_path": model_dir, "device": "cpu",
        "classify_max_batch": 64, "classify_backend": "fp32", "log_level": "INFO",
    }
    values.update(over)
    return base.model_copy(update=values)


def topic_names(s: Settings) -> list[str]:
    return [s.topic_news_raw, s.topic_comments_raw, s.topic_docs_clean, s.topic_docs_scored,
            s.topic_alerts, s.topic_dlq, s.topic_labels]


# ---------------------------------------------------------------------------------- workers
class Worker:
    """``python -m services.worker_cli --role ROLE`` in a subprocess, logging to a file."""

    def __init__(self, settings: Settings, role: str, log_dir: Path, name: str = "") -> None:
        self.settings, self.role = settings, role
        self.log_path = log_dir / f"worker-{role}{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Worker:
        env = settings_env(self.settings)
        env.setdefault("HF_HUB_OFFLINE", "1")
        env["TOKENIZERS_PARALLELISM"] = "false"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("a")
        self.proc = subprocess.Popen([sys.executable, "-m", "services.worker_cli", "--role",
                                      self.role], cwd=ROOT, env=env, stdout=log,
                                     stderr=subprocess.STDOUT)
        log.close()
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def log_tail(self, n: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        return ""


async def wait_for(what: str, check: Callable[[], Awaitable[bool]], limit_s: float,
                   workers: Sequence[Worker] = (), interval: float = 1.0,
                   state: dict | None = None) -> None:
    """Poll ``check`` until true; fail early if a worker died, with logs (and ``state``)."""
    deadline = time.monotonic() + limit_s
    while True:
        if await check():
            return
        for w in workers:
            if not w.alive():
                raise AssertionError(f"worker {w.role} exited ({w.proc.returncode}) while waiting "
                                     f"for {what}:\n{w.log_tail()}")
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {w.role}\n{w.log_tail()}" for w in workers)
            raise AssertionError(f"timed out after {limit_s:.0f}s waiting for {what} "
                                 f"(state: {state})\n{logs}")
        await asyncio.sleep(interval)


# ---------------------------------------------------------------------------------- test model
def build_centroid_model(folder: Path) -> Path:
    """Save the centroid-head checkpoint (see module docstring) to ``folder``."""
    import numpy as np
    import torch

    from models.sentiment import SentimentModel
    from models.sentiment.network import save_checkpoint

    model = SentimentModel.untrained_for_tests(device="cpu", seed=0)
    feed = [it for it in generate(FeedSpec(items=600, seed=12345, spike=None))
            if it.meta.get("label")]
    texts = [_text(it) for it in feed]
    labels = [it.meta["label"] for it in feed]
    net = model.network
    enc = model.encode(texts)
    pooled = []
    with torch.no_grad():
        for i in range(0, len(texts), 64):
            ids = torch.from_numpy(np.asarray(enc.input_ids[i:i + 64]))
            mask = torch.from_numpy(np.asarray(enc.attention_mask[i:i + 64]))
            hidden = net.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
            m = mask.unsqueeze(-1).to(hidden.dtype)
            pooled.append((hidden * m).sum(1) / m.sum(1).clamp(min=1.0))
    x = torch.cat(pooled)
    cents = torch.stack([x[[i for i, y in enumerate(labels) if y == lab]].mean(0)
                         for lab in model.labels])
    raw = x @ cents.T - 0.5 * (cents * cents).sum(1)  # nearest centroid, as a linear map
    top2 = raw.topk(2, dim=1).values
    scale = 4.0 / float((top2[:, 0] - top2[:, 1]).median())  # typical margin -> 4 logits
    with torch.no_grad():
        net.head.weight.copy_(cents * scale)
        net.head.bias.copy_(-0.5 * (cents * cents).sum(1) * scale)
    model.config.version = "test-centroid-v1"
    save_checkpoint(net, folder, model.config)
    return folder


def _text(it: FeedItem) -> str:
    import json

    v = json.loads(it.value)
    return f"{v['title']}. {v.get('body', '')}" if it.kind == "news" else v["text"]


# ---------------------------------------------------------------------------------- expectations
def expected_dead_letters(items: list[FeedItem]) -> Counter:
    return Counter(it.meta["invalid"] for it in items if it.meta.get("invalid"))


def valid_originals(items: list[FeedItem]) -> list[FeedItem]:
    """Items that become documents: valid, not a syndicated copy; exact re-sends once."""
    out: dict[str, FeedItem] = {}
    for it in items:
        if it.meta.get("invalid") or it.meta.get("copy_of"):
            continue
        out.setdefault(it.meta.get("doc_id") or _doc_id(it), it)
    return list(out.values())


def _doc_id(it: FeedItem) -> str:
    import json

    v = json.loads(it.value)
    return f"{it.kind}:{v['source']}:{v['id']}"


def doc_id_of(it: FeedItem) -> str:
    return _doc_id(it)


def expected_alert_windows(docs: list[dict], cfg, settle_windows: int = 12
                           ) -> tuple[set[tuple[str, str, int]], set[tuple[str, str, int]]]:
    """(entity, topic, window) of the alert events the pure replay API gives for these
    ES-shaped documents: ``(possible, settled)``. The stream judges a window once the
    event-time watermark has passed it, so events in the feed's last ``settle_windows``
    windows may still be pending when a test looks (``possible`` holds them too); every
    ``settled`` one must have been emitted."""
    counts: dict[tuple[str, str], dict[int, int]] = defaultdict(dict)
    totals: dict[tuple[str, str], dict[int, int]] = defaultdict(dict)
    last = 0
    for d in docs:
        neg = int(d["sentiment"]["label"] == "negative")
        # an entity's series count its own label (negative_for), topics the document's
        negative_for = set(d.get("negative_for", d.get("entities") if neg else []) or [])
        w = rules.window_of(datetime.fromisoformat(d["published_at"]).timestamp(), cfg.window_s)
        last = max(last, w)
        keys = [((e, "*"), int(e in negative_for)) for e in dict.fromkeys(d.get("entities") or [])]
        keys += [(("*", t), neg) for t in dict.fromkeys(d.get("topics") or [])]
        for k, is_neg in keys:  # a series starts at its first document, negative or not
            counts[k][w] = counts[k].get(w, 0) + is_neg
            totals[k][w] = totals[k].get(w, 0) + 1
    possible: set[tuple[str, str, int]] = set()
    settled: set[tuple[str, str, int]] = set()
    for key, c in counts.items():
        for ev in replay.replay(c, totals[key], cfg, upto=last).events:
            possible.add((key[0], key[1], ev.window))
            if ev.window <= last - settle_windows:
                settled.add((key[0], key[1], ev.window))
    return possible, settled


def utc(ts: str) -> datetime:
    return datetime.fromisoformat(ts).astimezone(UTC)


# ---------------------------------------------------------------------------------- ES outage
class TcpProxy:
    """A small asyncio TCP forwarder (127.0.0.1:port -> target) that can be switched off.

    Stopping closes the listening socket *and* every open connection, so the worker sees
    Elasticsearch vanish (connection refused / reset) without the shared ES being touched.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None
        for w in list(self._writers):
            with contextlib.suppress(Exception):
                w.transport.abort()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_w))

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    w.close()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))
        self._writers.discard(writer)
        self._writers.discard(up_w)
