"""The `yuqing` command line; subcommands are registered by each stage."""
import typer

app = typer.Typer(help="yuqing: real-time financial sentiment monitoring on Kafka.", no_args_is_help=True)


@app.command()
def version() -> None:
    """Print the installed version."""
    from importlib.metadata import version as _v

    typer.echo(_v("yuqing"))
