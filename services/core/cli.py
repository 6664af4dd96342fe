"""`yuqing config`, and what every command shares: one-line errors, reaching Redis.

A user's mistake (a bad setting, a backend that is not running) ends a command with one line
that says what to do next, never a traceback.
"""
from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer

from services.core.config import Settings


def fail(message: str) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


async def connect_redis(settings: Settings):
    from redis.asyncio import Redis
    from redis.exceptions import RedisError

    client = Redis.from_url(settings.redis_url, socket_connect_timeout=5)
    try:
        await client.ping()
    except RedisError as exc:
        await client.aclose()
        fail(f"cannot reach Redis at {settings.redis_url} ({exc}); start it (`ops/stack up`) "
              "or set YUQING_REDIS_URL")
    return client


def register(app: typer.Typer) -> None:
    @app.command("config")
    def config(
        write_readme: bool = typer.Option(False, "--write-readme", help="Rewrite the README's configuration table."),
        readme: Path = typer.Option(Path("README.md"), help="README to rewrite."),
    ) -> None:
        """Print every setting with its environment variable and current value."""
        from services.core.config import env_name
        from services.core.settings_doc import write_readme_section

        if write_readme:
            write_readme_section(readme)
            typer.echo(f"updated the configuration table in {readme}")
            return
        from services.core.config import load_settings
        from services.core.errors import ConfigError

        try:
            s = load_settings()
        except ConfigError as exc:
            fail(str(exc))
        for name in Settings.model_fields:
            typer.echo(f"{env_name(name):34} {getattr(s, name)}")
