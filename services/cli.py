"""The `yuqing` command line. Each stage registers its own commands; this file assembles them
and forwards `yuqing bench` to the source checkout's `python -m bench`."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer

import services
from services import cli_models, worker_cli
from services.alerts import backtest_cli
from services.alerts import cli as alerts_cli
from services.api import cli as api_cli
from services.core import cli as core_cli
from services.index import cli as index_cli
from services.ingest import cli as ingest_cli

app = typer.Typer(help="yuqing: real-time financial sentiment monitoring on Kafka.", no_args_is_help=True,
                  pretty_exceptions_enable=False)


@app.command()
def version() -> None:
    """Print the installed version."""
    from importlib.metadata import version as _v

    typer.echo(_v("yuqing"))


def source_checkout() -> Path:
    """The folder holding the ``services`` package: a source checkout when it has bench/."""
    return Path(services.__file__).resolve().parent.parent


@app.command(
    "bench", add_help_option=False,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def bench(ctx: typer.Context) -> None:
    """Benchmarks, from a source checkout: `yuqing bench inference|pipeline ... [--help]`.

    Runs ``python -m bench ARGS`` in the checkout: bench/ is not part of the installed
    package, so the product never imports it.
    """
    root = source_checkout()
    if not (root / "bench" / "__main__.py").is_file():
        typer.echo(f"error: yuqing bench needs a source checkout of yuqing (bench/ not found "
                   f"under {root})", err=True)
        raise typer.Exit(2)
    raise typer.Exit(subprocess.call([sys.executable, "-m", "bench", *ctx.args], cwd=root))


core_cli.register(app)
api_cli.register(app)
alerts_cli.register(app)  # deliver
backtest_cli.register(app)  # backtest
ingest_cli.register(app)
index_cli.register(app)
worker_cli.register(app)  # worker, replay, feed, demo
cli_models.register(app)  # train, eval, classify, models list|promote|rollback


def main() -> None:
    """The console script: a configuration mistake is one line naming the variable, exit 2."""
    from services.core.errors import ConfigError

    try:
        app()
    except ConfigError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise SystemExit(2) from None
