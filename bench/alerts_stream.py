"""The stream alert detector alone (Redis, no Kafka): CPU per document on the pipeline
benchmark's feed, and a fingerprint of everything it decided.

Why: the pipeline benchmark measures the alerts stage among six processes on a shared
2-core host, which takes ~10 minutes and a production model; this replays the same shape of
input straight into ``AlertDetector`` in seconds, so a change to the detector can be timed
and -- more important -- checked to decide exactly what it decided before (the alerts with
every field but ``created_at``, the annotations and every series' saved state).

The input mimics what the alerts stage of ``bench/pipeline.py`` receives: the synthetic feed
over the last 12 h, linked and tagged by the real ingest code, dealt to 4 partitions by
entity; phase 1 (``--n``) arrives as fast as the stage takes it (batches of ``--batch``,
partitions interleaved unevenly, small reorderings within a partition as four classify
actors cause), phase 2 (``--n-late``) is a second feed over the same 12 h -- for the
detector, documents for windows already judged (late data) -- in smaller batches, as at
half load. Deterministic for a seed, and the feed's times are fixed (``--end``), so two runs
of two versions of the code can be diffed.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import time
from datetime import datetime, timedelta
from pathlib import Path

from redis.asyncio import Redis

from services.alerts.config import detector_config
from services.alerts.detector import AlertDetector
from services.core.config import get_settings
from services.core.schemas import ScoredDoc, Sentiment
from services.feed.synthetic import FeedSpec, SpikeSpec, generate
from services.ingest.decode import decode
from services.ingest.entities import EntityLinker
from services.ingest.pipeline import Ingestor
from services.ingest.taxonomy import TopicTagger

PARTITIONS = 4


def build_detector(s, redis: Redis, partitions: int) -> AlertDetector:
    """As ``services.alerts.agent.build_detector`` (benchmarks do not import agents)."""
    return AlertDetector(redis, s.redis_prefix, detector_config(s),
                         lateness_s=s.alert_lateness_s, ttl_s=s.trends_retention_h * 3600,
                         partitions=partitions)


def scored_feed(n: int, end: datetime, seed: int, run: str,
                spikes: tuple[float, ...] = ()) -> list[ScoredDoc]:
    """``spikes``: hours after the start of negative bursts (60 items in 5 minutes) for TSLA
    and GS, so there are alerts, escalations and resolutions to compare."""
    s = get_settings()
    start = end - timedelta(hours=12)
    items = generate(FeedSpec(start=start, duration_s=12 * 3600, items=n, copy_share=0.0,
                              invalid_share=0.0, seed=seed, run=run, spike=None))
    for k, at_h in enumerate(spikes):
        burst = SpikeSpec(ticker=("TSLA", "GS")[k % 2], at_s=at_h * 3600, duration_s=300,
                          items=60)
        items += [it for it in generate(FeedSpec(start=start, duration_s=12 * 3600, items=60,
                                                 copy_share=0.0, seed=seed + 100 + k,
                                                 run=f"{run}x{k}", spike=burst))
                  if it.meta["spike"]]
    items.sort(key=lambda it: it.published_at)
    ing = Ingestor(EntityLinker.from_file(s.watchlist_path),
                   TopicTagger.from_file(s.taxonomy_path), None, max_bytes=10**6,
                   max_chars=20_000, max_age_days=3650, clock=lambda: end)
    rng = random.Random(seed)
    out = []
    for i, it in enumerate(items):
        doc = ing.clean(decode(it.value, it.kind, 10**6), it.kind, None)
        label = it.meta["label"]
        p_neg = 0.8 if label == "negative" else 0.1
        # one model swap half way through, as a production model change would
        version = "m-1" if i < len(items) // 2 else "m-2"
        probs = {"negative": round(p_neg + 0.1 * rng.random(), 4)}
        out.append(ScoredDoc(**doc.model_dump(), sentiment=Sentiment(
            label=label, probabilities=probs, model_version=version), classified_at=end))
    return out


def arrival(docs: list[ScoredDoc], batch: int, seed: int) -> list[tuple[list, list]]:
    """Batches of (docs, partitions): partitions progress unevenly, neighbours swap."""
    rng = random.Random(seed)
    queues: list[list[ScoredDoc]] = [[] for _ in range(PARTITIONS)]
    for d in docs:
        key = (d.primary_entity or d.doc_id).encode()
        queues[int(hashlib.md5(key).hexdigest(), 16) % PARTITIONS].append(d)
    for q in queues:  # classify actors: a document overtakes a few of its neighbours
        for i in range(len(q) - 1):
            if rng.random() < 0.2:
                j = min(len(q) - 1, i + rng.randint(1, 8))
                q[i], q[j] = q[j], q[i]
    pos = [0] * PARTITIONS
    out = []
    while any(pos[p] < len(queues[p]) for p in range(PARTITIONS)):
        b_docs, b_parts = [], []
        for p in range(PARTITIONS):
            k = rng.randint(0, 2 * batch // PARTITIONS)
            chunk = queues[p][pos[p]:pos[p] + k]
            pos[p] += len(chunk)
            b_docs += chunk
            b_parts += [p] * len(chunk)
        if b_docs:
            out.append((b_docs, b_parts))
    return out


def alert_key(a) -> dict:
    return a.model_dump(mode="json", exclude={"created_at"})


async def run(args: argparse.Namespace) -> dict:
    s = get_settings()
    end = datetime.fromisoformat(args.end)
    ns = f"{s.redis_prefix}:bench-alerts-stream-{int(time.time() * 1000)}"
    redis = Redis.from_url(s.redis_url)
    phases = {"fast": arrival(scored_feed(args.n, end, 11, "a", (5.0, 8.5)), args.batch, 1),
              "late": arrival(scored_feed(args.n_late, end, 12, "b", (10.0,)),
                              args.batch_late, 2)}
    det = build_detector(s, redis, partitions=PARTITIONS)
    det.prefix = ns
    out: dict = {"alerts": [], "annotations": [], "phases": {}}
    try:
        for name, batches in phases.items():
            n_docs = sum(len(b) for b, _ in batches)
            cpu0, t0 = time.process_time(), time.perf_counter()
            for i, (docs, parts) in enumerate(batches):
                if args.restart_every and i and i % args.restart_every == 0:
                    det = build_detector(s, redis, partitions=PARTITIONS)
                    det.prefix = ns
                got = await det.observe(docs, parts)
                out["alerts"] += [alert_key(a) for a in got]
                out["annotations"] += [a.to_source(det.cfg.window_s) for a in det.annotations]
                await det.commit()
            cpu = time.process_time() - cpu0
            out["phases"][name] = {"docs": n_docs, "batches": len(batches),
                                   "cpu_ms_per_doc": round(1000 * cpu / n_docs, 3),
                                   "wall_s": round(time.perf_counter() - t0, 2)}
        states = {}
        for k in sorted(await redis.keys(f"{ns}:alerts:*:model")):
            states[k.decode()[len(ns):]] = json.loads(await redis.get(k))
        out["states"] = states
    finally:
        keys = await redis.keys(f"{ns}:*")
        for i in range(0, len(keys), 500):
            await redis.delete(*keys[i:i + 500])
        await redis.aclose()
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.alerts_stream", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=6000)
    ap.add_argument("--n-late", type=int, default=9000)
    ap.add_argument("--batch", type=int, default=40, help="documents per batch, phase 1")
    ap.add_argument("--batch-late", type=int, default=18, help="documents per batch, phase 2")
    ap.add_argument("--end", default="2026-12-01T12:00:00+00:00",
                    help="event time the feeds end at")
    ap.add_argument("--restart-every", type=int, default=0,
                    help="a fresh detector (no memory) every N batches: as after a crash")
    ap.add_argument("--out", type=Path, help="write the decisions (JSON) here")
    args = ap.parse_args(argv)
    res = asyncio.run(run(args))
    for name, ph in res["phases"].items():
        print(f"{name}: {ph['docs']} docs in {ph['batches']} batches, "
              f"{ph['cpu_ms_per_doc']} CPU ms/doc, {ph['wall_s']} s")
    print(f"alerts {len(res['alerts'])}, annotations {len(res['annotations'])}, "
          f"series {len(res['states'])}")
    if args.out:
        decisions = {k: res[k] for k in ("alerts", "annotations", "states")}
        args.out.write_text(json.dumps(decisions, indent=1, sort_keys=True))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
