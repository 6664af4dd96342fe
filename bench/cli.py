"""``python -m bench inference|pipeline|alerts|soak``: the benchmarks' command line.

``bench/`` is a folder of the source checkout, not part of the installed package: the
product never imports it. ``yuqing bench ...`` runs this module in a subprocess from the
checkout (``services/cli.py``), so the options here are the documented ones.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Benchmarks (print a table, write bench/results/*.json).",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


@app.command()
def inference(
    n: Annotated[int, typer.Option(help="Texts for the batched pipeline and the worker.")] = 2000,
    n_single: Annotated[int, typer.Option(help="Texts for the one-per-call pipeline.")] = 300,
    n_batched: Annotated[int | None, typer.Option(
        help="Texts for the batched pipeline (default: --n).")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "auto",
    backend: Annotated[list[str] | None, typer.Option(
        help="CPU backend(s) for the worker: auto, fp32, int8, onnx (repeat to compare).")] = None,
    tokenizer_threads: Annotated[int, typer.Option(help="Worker tokenizer threads.")] = 2,
    tokenizer_processes: Annotated[int, typer.Option(
        help="Worker tokenizer processes instead of threads (0: threads).")] = 0,
    ceiling: Annotated[bool, typer.Option(
        help="Also time the forward pass alone on pre-tokenised batches.")] = True,
    compile_mode: Annotated[str | None, typer.Option(
        help="torch.compile mode for the CUDA path, e.g. reduce-overhead (CUDA graphs).")] = None,
    max_batch: Annotated[int | None, typer.Option(help="Override the device preset.")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Override the device preset.")] = None,
    max_padding: Annotated[float | None, typer.Option(
        help="Most padding share the batcher accepts in a batch (default: the device "
             "preset, 0.1 CPU / 0.35 CUDA, as the product).")] = None,
    entities: Annotated[bool, typer.Option(
        help="Also run the worker with each text's entity mention spans (the shipped "
             "watchlist), through the entity head (a random one if the model has none).")
    ] = False,
    lang: Annotated[str, typer.Option(
        help="en: the English production model on English headlines; zh: the Chinese one on "
             "Chinese titles and posts.")] = "en",
    output: Annotated[Path | None, typer.Option(
        help="JSON path (default bench/results/inference-<device>[-<lang>].json).")] = None,
) -> None:
    """HF pipeline one-per-call vs batched vs the yuqing worker: seq/s, latency, padding, RSS.

    Same model (the registry's production version, else the base encoder with an untrained
    head) and the same synthetic headlines for every variant; each variant runs in its own
    process. Prints a table and writes JSON. Not a test: nothing is asserted.
    """
    if n < 1 or n_single < 1:
        raise typer.BadParameter("--n and --n-single must be >= 1")
    if lang not in ("en", "zh"):
        raise typer.BadParameter("--lang must be en or zh", param_hint="--lang")
    from rich.console import Console

    import bench.inference as bench
    from models.sentiment.device import resolve_device
    from services.core.config import get_settings

    try:
        device = resolve_device(device)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--device") from e
    args = bench.BenchArgs(
        n=n, n_single=min(n_single, n), n_batched=min(n_batched or n, n), device=device,
        backends=tuple(backend or ["auto"]), tokenizer_threads=tokenizer_threads,
        tokenizer_processes=tokenizer_processes, compile_mode=compile_mode, ceiling=ceiling,
        registry=str(get_settings().model_registry), max_batch=max_batch, max_tokens=max_tokens,
        max_padding=max_padding, entities=entities, lang=lang,
    )
    if lang != "en":
        from models.registry import RegistryError, production

        try:
            ref = production(args.registry, lang)
        except RegistryError as e:
            ref, why = None, str(e)
        else:
            why = f"no {lang} production model in {args.registry}: run `make model`"
        if ref is None:
            typer.echo(f"error: {why}", err=True)
            raise typer.Exit(2)
    console = Console()
    if not console.is_terminal:
        console = Console(width=120)  # logs and CI: room for the whole table

    def progress(name: str) -> None:
        status.update(f"running {name}")
        console.log(name)

    with console.status("starting") as status:
        result = bench.run(args, progress=progress)
    console.print(bench.table(result))
    path = bench.write(result, output)
    console.print(f"wrote {path}")


@app.command()
def pipeline(
    n: Annotated[int, typer.Option(help="Items for the throughput phase.")] = 6000,
    n_latency: Annotated[int, typer.Option(
        help="Items for the latency phase (~50 s at half the ceiling).")] = 9000,
    layout: Annotated[str, typer.Option(
        help="split: one worker process per role; all: one process.")] = "split",
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "auto",
    keep: Annotated[bool, typer.Option(help="Keep the benchmark's topics and data.")] = False,
) -> None:
    """End-to-end throughput and latency (produce -> searchable / trend) beside the raw
    classifier throughput; prints a table, writes bench/results/pipeline-<device>.json."""
    import bench.pipeline as mod

    mod.main(["--n", str(n), "--n-latency", str(n_latency), "--layout", layout, "--device",
              device, *(["--keep"] if keep else [])])


@app.command()
def alerts(
    series: Annotated[Path, typer.Option(
        help="Folder of NAB-format series: timestamp,value CSVs and labels.json (windows per "
             "file), e.g. ../shared/data/nab-realtweets-dev.")],
    json_path: Annotated[Path | None, typer.Option(
        "--json", help="JSON path (default bench/results/alerts.json).")] = None,
) -> None:
    """The spike detector on real labelled series: NAB standard score, windows detected,
    false alerts, alerts/day and delay, beside the old EWMA rules and a rolling 3-sigma."""
    import bench.alerts as mod

    try:
        mod.bench_alerts(series, json_path)
    except mod.BadInput as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


@app.command()
def soak(
    minutes: Annotated[float, typer.Option(help="How long the feed runs (then it drains).")] = 10.0,
    rate: Annotated[float, typer.Option(help="Items per second offered.")] = 4.0,
    kill_every: Annotated[float, typer.Option(
        help="Seconds between kill -9s of a random worker (each restarted).")] = 60.0,
    seed: Annotated[int, typer.Option(help="Feed and fault schedule seed.")] = 13,
    backend_restarts: Annotated[bool, typer.Option(
        help="Restart Kafka, Redis and Elasticsearch once each.")] = True,
    stack_dir: Annotated[str | None, typer.Option(
        help="The soak stack's YUQING_STACK_DIR (default: that variable).")] = None,
    allow_default_stack: Annotated[bool, typer.Option(
        help="Run although a backend is on its default port (it gets restarted!).")] = False,
    keep: Annotated[bool, typer.Option(help="Keep the soak's topics, indices and keys.")] = False,
    json_path: Annotated[Path | None, typer.Option(
        "--json", help="JSON path (default bench/results/soak.json).")] = None,
) -> None:
    """Split workers + deliver under a steady feed with malformed and oversized messages while
    workers are killed (-9) and Kafka, Redis and Elasticsearch restart; then exact counts.

    Runs against its own stack (YUQING_KAFKA_BOOTSTRAP / YUQING_ES_URL / YUQING_REDIS_URL and
    YUQING_STACK_DIR of a second `ops/stack up`), loopback only; exit status 1 if a check fails.
    """
    import asyncio

    from rich.console import Console

    import bench.soak as mod

    if minutes <= 0 or rate <= 0 or kill_every <= 0:
        raise typer.BadParameter("--minutes, --rate and --kill-every must be > 0")
    args = mod.SoakArgs(minutes=minutes, rate=rate, kill_every_s=kill_every, seed=seed,
                        allow_default_stack=allow_default_stack, stack_dir=stack_dir,
                        backend_restarts=backend_restarts, keep=keep, output=json_path)
    console = Console(width=120)
    try:
        result = asyncio.run(mod.soak(args, log=lambda m: console.print(m, highlight=False)))
    except mod.SoakRefused as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    console.print(mod.table(result))
    path = mod.write(result, json_path)
    console.print(f"wrote {path}; logs in {result.get('logs')}")
    if not result.get("ok"):
        raise typer.Exit(1)


@app.command()
def sources(
    data_dir: Annotated[Path, typer.Option(help="Shared data folder.")] = Path("../shared/data"),
    encoder: Annotated[str | None, typer.Option(
        help="HF folder of the frozen encoder (default: the packaged MiniLM).")] = None,
    output: Annotated[Path, typer.Option(help="JSON path.")] = Path("bench/results/sources.json"),
) -> None:
    """What each training source adds on the real eval sets (frozen-encoder probe)."""
    import bench.sources as mod
    from models.finetune.datasets import DataError

    try:
        mod.run(data_dir, encoder, output)
    except DataError as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


def main(argv: list[str] | None = None) -> None:
    app(args=argv, prog_name="python -m bench")
