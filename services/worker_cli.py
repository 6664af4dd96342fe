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
from typing import Annotated

import typer

from services.app import ROLE_CHOICES, create_app
from services.core.config import Settings, get_settings
from services.core.errors import BackendUnavailable
from services.stream.topics import ensure_topics


def _worker_class():
    import faust

    from services.stream.log_noise import install

    class Worker(faust.Worker):
        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            super().on_setup_root_logger(logger, level)
            install()  # an outage: one aiokafka/faust line per template per 30 s, not 1,000

    return Worker


def run_worker(settings: Settings, role: str) -> None:
    """Blocks until the worker is stopped; exits the process with Faust's exit code."""
    _Worker = _worker_class()
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
    worker = _Worker(app, loglevel=settings.log_level.lower(), quiet=True, loop=loop,
                     redirect_stdouts=False)
    worker.execute_from_commandline()


def worker(
    role: Annotated[str, typer.Option(
        "--role", "-r", help=f"Agents to run: {', '.join(ROLE_CHOICES)}.")] = "all",
) -> None:
    """Run stream-processing agents (ingest, classify, sink = trends + index, alerts)."""
    settings = get_settings()
    if role not in ROLE_CHOICES:
        typer.echo(f"error: unknown role {role!r}; choose one of {', '.join(ROLE_CHOICES)}",
                   err=True)
        raise typer.Exit(2)
    run_worker(settings, role)


def register(app: typer.Typer) -> None:
    """``worker`` and the feed commands."""
    app.command("worker")(worker)
    from services.feed.cli import register as register_feed

    register_feed(app)


def main(argv: list[str] | None = None) -> None:
    cli = typer.Typer(add_completion=False)
    cli.command()(worker)
    cli(args=argv if argv is not None else sys.argv[1:], prog_name="python -m services.worker_cli")


if __name__ == "__main__":
    main()
