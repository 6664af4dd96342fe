"""Inference benchmark: HF pipeline (one per call, batched) vs the yuqing worker.

Same model weights, same texts, one run. Each variant runs in a fresh spawned process so
its peak RSS (and CUDA peak memory) is its own and no thread pool or allocator state leaks
between them. Latency per item = duration of the call that carried it: the pipeline call
for (1) and (2), the ``submit_many`` micro-batch (an agent's ``stream.take``) for the
worker, with several calls in flight as several partitions would have.

Model: the registry's production version if there is one, else the base encoder with an
untrained head (same cost per item; the JSON says which). Texts: ``bench.common.headlines``.
"""
from __future__ import annotations

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

PRESETS = {  # this benchmark's worker limits per device (the product's: classify/serve.py)
    "cpu": {"max_batch": 64, "max_tokens": 4096, "max_wait_ms": 20, "queue_size": 1024,
            "max_padding": 0.1,
            "pipeline_batch": 64, "call_size": 64, "calls_in_flight": 4},
    "cuda": {"max_batch": 1024, "max_tokens": 65536, "max_wait_ms": 5, "queue_size": 32768,
             "max_padding": 0.35,
             "pipeline_batch": 256, "call_size": 512, "calls_in_flight": 16},
}


@dataclass
class BenchArgs:
    n: int = 2000
    n_single: int = 300
    n_batched: int | None = None  # texts for the batched pipeline (default: n)
    device: str = "cpu"
    backends: tuple[str, ...] = ("auto",)
    tokenizer_threads: int = 2
    tokenizer_processes: int = 0
    compile_mode: str | None = None
    registry: str = "var/models"
    seed: int = 7
    max_batch: int | None = None
    max_tokens: int | None = None
    ceiling: bool = True
    max_padding: float | None = None  # None: the product's default (0.1 CPU, 0.35 CUDA)
    entities: bool = False  # also run the worker with entity spans (entity head path)
    lang: str = "en"  # whose production model and texts: en (headlines) or zh (headlines_zh)


# ---- model loading (in each child) ---------------------------------------------------------
def _load_model(args: BenchArgs, backend: str = "fp32"):
    from models.registry import production
    from models.sentiment import SentimentModel
    from services.classify.model_watch import load_checkpoint

    try:
        ref = production(Path(args.registry), args.lang)
    except Exception:
        ref = None
    if ref is not None:
        model = load_checkpoint(ref, device=args.device, backend=backend)
        return model, f"registry production ({args.lang}) {ref.version} ({ref.path})"
    if args.lang != "en":
        raise RuntimeError(f"no {args.lang} production model in {args.registry}: run `make model`")
    model = SentimentModel.untrained_for_tests(device=args.device)
    if backend != "fp32":
        model.set_backend(backend)
    return model, "base encoder all-MiniLM-L6-v2 + untrained head (no production model found)"


def _percentiles(lat_s: list[float]) -> tuple[float, float]:
    a = np.asarray(lat_s) * 1000
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def _memory(device: str) -> dict[str, float]:
    from bench.common import peak_rss_mb

    out = {"peak_rss_mb": round(peak_rss_mb(), 1)}
    if device == "cuda":
        import torch

        out["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


# ---- variants (each runs in its own process) ----------------------------------------------
def _hf_pipeline(model: Any, device: str):
    import logging

    from transformers import AutoTokenizer, PreTrainedModel, pipeline
    from transformers.modeling_outputs import SequenceClassifierOutput
    from transformers.utils import logging as hf_logging

    from models.sentiment.network import base_encoder_path

    hf_logging.set_verbosity(logging.CRITICAL)  # "Wrapped is not supported" is expected
    net = model.network
    enc_cfg = net.encoder.config

    class Wrapped(PreTrainedModel):  # the same network, behind the HF interface
        config_class = type(enc_cfg)
        base_model_prefix = "clf"

        def __init__(self, config, clf):
            super().__init__(config)
            self.clf = clf

        def forward(self, input_ids=None, attention_mask=None, **_):
            return SequenceClassifierOutput(logits=self.clf(input_ids, attention_mask))

    cfg = type(enc_cfg).from_dict(enc_cfg.to_dict())
    cfg.id2label = dict(enumerate(model.labels))
    cfg.label2id = {lab: i for i, lab in enumerate(model.labels)}
    wrapped = Wrapped(cfg, net).eval()
    tok = AutoTokenizer.from_pretrained(base_encoder_path(model.config.base_model))  # its own vocab
    return pipeline("text-classification", model=wrapped, tokenizer=tok,
                    device=0 if device == "cuda" else -1, top_k=None,
                    truncation=True, max_length=model.max_length)


def run_pipeline_single(args: BenchArgs, texts: list[str]) -> dict:
    model, _ = _load_model(args)
    pipe = _hf_pipeline(model, args.device)
    for t in texts[:5]:
        pipe(t)
    lat = []
    t0 = time.perf_counter()
    for t in texts:
        s = time.perf_counter()
        pipe(t)
        lat.append(time.perf_counter() - s)
    wall = time.perf_counter() - t0
    p50, p99 = _percentiles(lat)
    return {"name": "HF pipeline, 1 per call", "n": len(texts), "seq_per_s": len(texts) / wall,
            "p50_ms": p50, "p99_ms": p99, "padding_ratio": 0.0, "wall_s": wall,
            **_memory(args.device)}


def run_pipeline_batched(args: BenchArgs, texts: list[str], batch: int) -> dict:
    model, _ = _load_model(args)
    pipe = _hf_pipeline(model, args.device)
    pipe(texts[:batch], batch_size=batch)
    lengths = model.lengths(texts)
    lat: list[float] = []
    pad_slots = real = 0
    t0 = time.perf_counter()
    for s in range(0, len(texts), batch):
        part = texts[s : s + batch]
        c = time.perf_counter()
        pipe(part, batch_size=batch)
        lat.extend([time.perf_counter() - c] * len(part))
        ln = lengths[s : s + batch]
        pad_slots += len(ln) * int(ln.max())
        real += int(ln.sum())
    wall = time.perf_counter() - t0
    p50, p99 = _percentiles(lat)
    return {"name": f"HF pipeline, batch {batch}", "n": len(texts),
            "seq_per_s": len(texts) / wall, "p50_ms": p50, "p99_ms": p99,
            "padding_ratio": 1 - real / pad_slots, "wall_s": wall, **_memory(args.device)}


def _entity_spans(model: Any, texts: list[str]) -> tuple[list, str]:
    """Mention spans of the shipped watchlist's companies in ``texts`` (what ingest sends
    with each document), and an entity head on the model if it has none (random weights:
    the figures time the path, the labels mean nothing)."""
    from services.ingest.entities import EntityLinker

    linker = EntityLinker.from_file()
    spans = []
    for t in texts:
        got = linker.link_mentions(t)
        spans.append([got.spans[e] for e in got.entities if e in got.spans] or None)
    head = "trained entity head"
    if model.entity_head is None:
        import torch

        from models.sentiment.entities import EntityHead

        torch.manual_seed(0)
        model.set_entity_head(EntityHead(model.config.hidden_size, len(model.labels)).eval())
        head = "random entity head (timing only)"
    return spans, head


def run_worker(args: BenchArgs, texts: list[str], backend: str, preset: dict,
               entities: bool = False) -> dict:
    import asyncio

    from prometheus_client import CollectorRegistry

    from services.classify.metrics import classify_metrics
    from services.classify.scorer import Scored
    from services.classify.serve import cpu_parallelism
    from services.classify.worker import InferenceWorker

    forward_threads = 1
    if not args.device.startswith("cuda"):  # as the product runs it (open_inference_worker)
        import torch

        forward_threads, intra = cpu_parallelism(0)
        torch.set_num_threads(intra)  # this child process only: before the model loads
    model, _ = _load_model(args, backend)
    metrics = classify_metrics(CollectorRegistry())
    got_backend = getattr(model, "backend", "fp32")
    if backend not in ("auto", got_backend):
        return {"name": f"yuqing worker, {backend}", "unavailable":
                f"SentimentModel.set_backend({backend!r}) fell back to {got_backend}"}
    spans: list | None = None
    extra: dict[str, Any] = {}
    if entities:
        spans, head = _entity_spans(model, texts)
        extra = {"entity_head": head,
                 "entity_pair": getattr(model, "entity_pair", None) is not None,
                 "docs_with_spans": sum(s is not None for s in spans) / max(1, len(texts))}
    call = preset["call_size"]
    padding = args.max_padding if args.max_padding is not None else preset["max_padding"]

    async def main() -> dict:
        worker = InferenceWorker(
            model,
            max_batch=args.max_batch or preset["max_batch"],
            max_tokens=args.max_tokens or preset["max_tokens"],
            max_wait_ms=preset["max_wait_ms"], queue_size=preset["queue_size"],
            tokenizer_threads=args.tokenizer_threads,
            tokenizer_processes=args.tokenizer_processes, compile_mode=args.compile_mode,
            max_padding=padding, forward_threads=forward_threads, metrics=metrics,
        )
        await worker.start()
        from bench.common import headlines

        await worker.submit_many(headlines(2 * call, seed=args.seed + 1))  # warm-up, other texts
        worker.real_tokens = worker.padded_tokens = 0
        batches0 = worker.batches
        hits0 = metrics.cache_hits._value.get()
        lat: list[float] = []
        calls = [(texts[s : s + call], spans[s : s + call] if spans is not None else None)
                 for s in range(0, len(texts), call)]
        it = iter(calls)
        ok = 0

        async def agent() -> None:
            nonlocal ok
            for part, part_spans in it:
                await worker.wait_for_room(len(part))
                c = time.perf_counter()
                res = await worker.submit_many(part, part_spans)
                lat.extend([time.perf_counter() - c] * len(part))
                ok += sum(isinstance(r, Scored) for r in res)

        in_flight = preset["calls_in_flight"]
        t0 = time.perf_counter()
        await asyncio.gather(*(agent() for _ in range(in_flight)))
        wall = time.perf_counter() - t0
        await worker.stop()
        p50, p99 = _percentiles(lat)
        return {
            "name": f"yuqing worker, {got_backend}" + (", entity spans" if entities else ""),
            "n": len(texts), **extra,
            "seq_per_s": len(texts) / wall, "p50_ms": p50, "p99_ms": p99,
            "padding_ratio": 1 - worker.real_tokens / max(1, worker.padded_tokens),
            "wall_s": wall, "batches": worker.batches - batches0, "scored": ok,
            "cache_hits": int(metrics.cache_hits._value.get() - hits0),
            "limits": {"max_batch": worker.limits.max_batch, "max_tokens": worker.limits.max_tokens,
                       "max_wait_ms": preset["max_wait_ms"], "queue_size": worker.queue_size,
                       "call_size": call, "calls_in_flight": in_flight,
                       "max_padding": padding, "forward_threads": forward_threads,
                       "tokenizer_threads": args.tokenizer_threads,
                       "tokenizer_processes": args.tokenizer_processes,
                       "compile_mode": args.compile_mode},
            **_memory(args.device),
        }

    return asyncio.run(main())


def run_forward_ceiling(args: BenchArgs, texts: list[str], backend: str, preset: dict) -> dict:
    """The model alone: texts pre-tokenised, length-sorted batches under the worker's
    budgets, only the forward pass timed. The worker's distance to this is its overhead."""
    from services.classify.batcher import BatchLimits, plan_batches
    from services.classify.runners import make_runner, warm_up

    model, _ = _load_model(args, backend)
    runner = make_runner(model, compile_mode=args.compile_mode)
    limits = BatchLimits(args.max_batch or preset["max_batch"],
                         args.max_tokens or preset["max_tokens"])
    warm_up(runner, min(limits.max_batch, 64), model.max_length)
    enc = model.encode(texts)
    batches = plan_batches(enc.lengths, np.zeros(len(texts)), 0.0, limits, flush=True)
    work = [(enc.input_ids[b][:, : int(enc.lengths[b].max())], enc.lengths[b]) for b in batches]
    if model.device.type == "cuda":
        import torch

        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for ids, lengths in work:
        runner(ids, lengths)
    wall = time.perf_counter() - t0
    return {"name": f"model alone, pre-tokenised ({getattr(model, 'backend', 'fp32')})",
            "n": len(texts), "seq_per_s": len(texts) / wall, "p50_ms": float("nan"),
            "p99_ms": float("nan"), "padding_ratio": 1 - float(enc.lengths.sum()) / sum(
                len(ln) * int(ln.max()) for _, ln in work),
            "wall_s": wall, "batches": len(work), **_memory(args.device)}


def _child(fn_name: str, *a: Any) -> dict:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    return globals()[fn_name](*a)


def _describe(args: BenchArgs, texts: list[str]) -> dict:
    model, source = _load_model(args)
    lengths = model.lengths(texts)
    return {"source": source, "version": model.version, "max_length": model.max_length,
            "mean_tokens": float(lengths.mean()), "max_tokens": int(lengths.max())}


# ---- orchestration --------------------------------------------------------------------------
def run(args: BenchArgs, progress: Any = None) -> dict:
    """Run all variants; return the result dict (also what gets written as JSON)."""
    from bench.common import headlines, headlines_multi, headlines_zh, machine

    preset = PRESETS["cuda" if args.device.startswith("cuda") else "cpu"]
    # English with --entities: 30% of company headlines name a second one (the pair model's
    # texts); the Chinese pair model runs on any likely-negative text, one entity or more
    gen = headlines_zh if args.lang == "zh" else headlines_multi if args.entities else headlines
    texts = gen(args.n, seed=args.seed)
    single = texts[: args.n_single]
    batched = texts[: args.n_batched or args.n]
    jobs: list[tuple[str, tuple]] = [
        ("_describe", (args, texts)),
        ("run_pipeline_single", (args, single)),
        ("run_pipeline_batched", (args, batched, preset["pipeline_batch"])),
    ]
    jobs += [("run_worker", (args, texts, b, preset)) for b in args.backends]
    if args.entities:
        jobs += [("run_worker", (args, texts, b, preset, True)) for b in args.backends]
    if args.ceiling:
        jobs.append(("run_forward_ceiling", (args, texts, "auto", preset)))
    out: list[dict] = []
    ctx = get_context("spawn")
    for name, a in jobs:
        if progress:
            progress(name)
        with ProcessPoolExecutor(1, mp_context=ctx) as pool:
            try:
                out.append(pool.submit(_child, name, *a).result())
            except Exception as e:  # one broken variant must not lose the others' figures
                out.append({"name": name, "error": f"{type(e).__name__}: {e}"})
    model_info, variants = out[0], out[1:]
    base = variants[0].get("seq_per_s")
    for v in variants:
        if base and v.get("seq_per_s"):
            v["speedup_vs_single"] = v["seq_per_s"] / base
    return {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": args.device,
        "machine": machine(),
        "model": model_info,
        "lang": args.lang,
        "texts": {"generator": f"bench.common.{gen.__name__}",
                  "seed": args.seed, "n": args.n,
                  "n_single": len(single), "n_batched": len(batched)},
        "variants": variants,
        "targets": {"cpu": ">= 5x one-per-call, peak RSS <= 1.5 GB",
                    "cuda": ">= 50,000 seq/s end to end (H200)"},
    }


def table(result: dict):
    from rich.table import Table

    t = Table(title=f"inference on {result['device']} — {result['model'].get('source', '?')}")
    for col in ("variant", "n", "seq/s", "x single", "p50 ms", "p99 ms", "padding", "peak RSS MB"):
        t.add_column(col, justify="left" if col == "variant" else "right")
    for v in result["variants"]:
        if "seq_per_s" not in v:
            why = v.get("unavailable") or v.get("error", "?")
            t.add_row(v["name"], "", why, "", "", "", "", "")
            continue
        t.add_row(v["name"], str(v["n"]), f"{v['seq_per_s']:,.0f}",
                  f"{v.get('speedup_vs_single', 0):.1f}x", _ms(v["p50_ms"]), _ms(v["p99_ms"]),
                  f"{v['padding_ratio']:.0%}", f"{v['peak_rss_mb']:,.0f}")
    return t


def _ms(x: float) -> str:
    return "-" if x != x else f"{x:,.1f}"  # NaN: not measured for this variant


def write(result: dict, output: Path | None) -> Path:
    lang = "" if result.get("lang", "en") == "en" else f"-{result['lang']}"
    path = output or Path("bench/results") / f"inference-{result['device']}{lang}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path

