"""Mounts the model commands (train, eval, classify, models ...) on the main `yuqing` CLI.

Kept as a thin shim so ``services`` depends on ``models`` and never the reverse; it hands
``classify`` the settings' languages and fallback (YUQING_LANGUAGES, YUQING_LANGUAGE_FALLBACK)
as the defaults of its --languages / --fallback.
"""
import typer


def _language_defaults() -> tuple[tuple[str, ...], str | None]:
    from services.core.config import get_settings

    s = get_settings()
    return s.language_list, s.fallback_language


def register(app: typer.Typer) -> None:
    from models.finetune.cli import register as _register

    _register(app, _language_defaults)
