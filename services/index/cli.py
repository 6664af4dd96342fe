"""`yuqing index`: install the Elasticsearch templates and run the retention job."""
from __future__ import annotations

import asyncio

import typer

index_app = typer.Typer(help="Elasticsearch index: templates and retention.",
                        no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(index_app, name="index")


async def _with_sink(fn):  # type: ignore[no-untyped-def]
    from services.core.config import get_settings
    from services.index.sink import build_sink

    s = get_settings()
    sink = build_sink(s)
    try:
        return await fn(sink, s)
    finally:
        await sink.es.close()


def _run(fn):  # type: ignore[no-untyped-def]
    from services.core.errors import BackendError

    try:
        return asyncio.run(_with_sink(fn))
    except BackendError as exc:
        typer.secho(f"error: {exc}. Is Elasticsearch up at YUQING_ES_URL? (`ops/stack up`)",
                    fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc


@index_app.command("templates")
def templates() -> None:
    """Create or update the component and index templates (safe to repeat)."""
    from services.stream.es_layout import TEMPLATE_VERSION

    async def go(sink, s):  # type: ignore[no-untyped-def]
        await sink.ensure_templates()
        return s

    s = _run(go)
    typer.echo(f"templates installed (version {TEMPLATE_VERSION}, Chinese analysis "
               f"{s.es_zh_analysis}): {s.es_index_prefix}-* (alias {s.es_index_prefix}), "
               f"{s.es_alerts_index}")


@index_app.command("retention")
def retention(
    days: int | None = typer.Option(None, min=1, help="Keep this many days "
                                    "(default: YUQING_ES_RETENTION_DAYS)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be deleted."),
) -> None:
    """Delete daily document indices older than N days (by the date in their name)."""
    async def go(sink, s):  # type: ignore[no-untyped-def]
        keep = days or s.es_retention_days
        return keep, await (sink.expired(keep) if dry_run else sink.retention(keep))

    keep, names = _run(go)
    verb = "would delete" if dry_run else "deleted"
    typer.echo(f"{verb} {len(names)} indices older than {keep} days")
    for n in names:
        typer.echo(f"  {n}")
