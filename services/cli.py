"""The `yuqing` command line. Each stage registers its own commands; this file only assembles them."""
from __future__ import annotations

import typer

from services import cli_models, worker_cli
from services.alerts import cli as alerts_cli
from services.api import cli as api_cli
from services.classify import cli as classify_cli
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


core_cli.register(app)
api_cli.register(app)
alerts_cli.register(app)  # deliver
ingest_cli.register(app)
index_cli.register(app)
worker_cli.register(app)  # worker, replay, feed, demo
classify_cli.register(app)  # bench inference
cli_models.register(app)  # train, eval, classify, models list|promote|rollback


def main() -> None:
    """The console script: a configuration mistake is one line naming the variable, exit 2."""
    from services.core.errors import ConfigError

    try:
        app()
    except ConfigError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise SystemExit(2) from None
