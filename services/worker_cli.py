"""``yuqing worker``: run the stream-processing agents (also ``python -m services.worker_cli``).

Settings come from the environment (``YUQING_*``, see ``services/core/config.py``); the role
picks which agents this process runs. Topics are created first if missing. Stop with Ctrl-C
(SIGINT/SIGTERM): batches in flight are finished first (up to ``YUQING_STOP_GRACE_S``) and
committed; one that cannot be finished in time (a backend down) is left uncommitted -- the
process exits with status 75 -- and delivered again to the next worker, which is safe because
every effect is idempotent (``services/app.py``, ``services/stream/effects.py``).
"""
from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from services.app import ROLE_CHOICES, create_app
from services.core.config import Settings, get_settings
from services.core.errors import BackendUnavailable
from services.stream.topics import ensure_topics


def run_worker(settings: Settings, role: str) -> None:
    """Blocks until the worker is stopped; exits the process with Faust's exit code."""
    import faust

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(ensure_topics(settings))
    except BackendUnavailable as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from exc
    app = create_app(settings, role)
    # one INFO line per Elasticsearch request drowns the worker's own log
    logging.getLogger("elastic_transport").setLevel(logging.WARNING)
    worker = faust.Worker(app, loglevel=settings.log_level.lower(), quiet=True, loop=loop,
                          redirect_stdouts=False)
    worker.execute_from_commandline()


def worker(
    role: Annotated[str | None, typer.Option(
        "--role", "-r", help=f"Agents to run: {', '.join(ROLE_CHOICES)} "
                             "(default: YUQING_WORKER_ROLE, else all).")] = None,
) -> None:
    """Run stream-processing agents (ingest, classify, sink = trends + index, alerts)."""
    settings = get_settings()
    role = role or settings.worker_role
    if role not in ROLE_CHOICES:
        typer.echo(f"error: unknown role {role!r}; choose one of {', '.join(ROLE_CHOICES)}",
                   err=True)
        raise typer.Exit(2)
    run_worker(settings, role)


def bench_pipeline(
    n: Annotated[int, typer.Option(help="Items for the throughput phase.")] = 6000,
    n_latency: Annotated[int, typer.Option(help="Items for the latency phase (~50 s at half the ceiling).")] = 9000,
    layout: Annotated[str, typer.Option(
        help="split: one worker process per role; all: one process.")] = "split",
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "auto",
    keep: Annotated[bool, typer.Option(help="Keep the benchmark's topics and data.")] = False,
) -> None:
    """End-to-end throughput and latency (produce -> searchable / trend) beside the raw
    classifier throughput; prints a table, writes bench/results/pipeline-<device>.json."""
    repo = Path(__file__).resolve().parents[1]
    if not (repo / "bench" / "pipeline.py").is_file():
        typer.echo(f"error: bench/pipeline.py not found under {repo}: run from a source "
                   "checkout of yuqing", err=True)
        raise typer.Exit(2)
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    import bench.pipeline as mod

    mod.main(["--n", str(n), "--n-latency", str(n_latency), "--layout", layout, "--device",
              device, *(["--keep"] if keep else [])])


def register(app: typer.Typer) -> None:
    """``worker``, ``bench pipeline`` (in the shared ``bench`` group), and the feed commands."""
    app.command("worker")(worker)
    for group in app.registered_groups:
        if group.name == "bench" and group.typer_instance is not None:
            group.typer_instance.command("pipeline")(bench_pipeline)
            break
    else:
        bench_app = typer.Typer(help="Benchmarks (print a table, write bench/results/*.json).",
                                no_args_is_help=True)
        bench_app.command("pipeline")(bench_pipeline)
        app.add_typer(bench_app, name="bench")
    from services.feed.cli import register as register_feed

    register_feed(app)


def main(argv: list[str] | None = None) -> None:
    cli = typer.Typer(add_completion=False)
    cli.command()(worker)
    cli(args=argv if argv is not None else sys.argv[1:], prog_name="python -m services.worker_cli")


if __name__ == "__main__":
    main()
