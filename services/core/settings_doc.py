"""The README's configuration table, generated from :class:`Settings` so the two cannot drift."""
from __future__ import annotations

from pathlib import Path

from services.core.config import Settings, env_name

BEGIN = "<!-- settings:begin -->"
END = "<!-- settings:end -->"


def markdown_table() -> str:
    rows = ["| Environment variable | Default | Meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "(none)" if default is None else f"`{default}`"
        rows.append(f"| `{env_name(name)}` | {shown} | {field.description or ''} |")
    return "\n".join(rows)


def readme_section(readme: Path) -> str:
    text = readme.read_text(encoding="utf-8")
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[start:end].strip()


def write_readme_section(readme: Path) -> None:
    text = readme.read_text(encoding="utf-8")
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    readme.write_text(text[:start] + "\n" + markdown_table() + "\n" + text[end:], encoding="utf-8")
