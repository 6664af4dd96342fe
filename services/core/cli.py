"""`yuqing config`: show the settings in force, or regenerate the README table."""
from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("config")
    def config(
        write_readme: bool = typer.Option(False, "--write-readme", help="Rewrite the README's configuration table."),
        readme: Path = typer.Option(Path("README.md"), help="README to rewrite."),
    ) -> None:
        """Print every setting with its environment variable and current value."""
        from services.core.config import Settings, env_name
        from services.core.settings_doc import write_readme_section

        if write_readme:
            write_readme_section(readme)
            typer.echo(f"updated the configuration table in {readme}")
            return
        s = Settings()
        for name in Settings.model_fields:
            typer.echo(f"{env_name(name):34} {getattr(s, name)}")
