"""The `yuqing` command line. Each stage registers its own commands; this file only assembles them."""
from __future__ import annotations

import typer

from services.core import cli as core_cli

app = typer.Typer(help="yuqing: real-time financial sentiment monitoring on Kafka.", no_args_is_help=True,
                  pretty_exceptions_enable=False)


@app.command()
def version() -> None:
    """Print the installed version."""
    from importlib.metadata import version as _v

    typer.echo(_v("yuqing"))


core_cli.register(app)
