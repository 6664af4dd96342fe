"""Mounts the model commands (train, eval, classify, models ...) on the main `yuqing` CLI.

Kept as a thin shim so ``services`` depends on ``models`` and never the reverse.
"""
import typer


def register(app: typer.Typer) -> None:
    from models.finetune.cli import register as _register

    _register(app)
