"""``python -m models.ship pack|install``: build the shipped model, install it into a registry.

    python -m models.ship pack --checkpoint var/models/versions/<version> [--out models/shipped/en]
    python -m models.ship install [--registry var/models] [--lang en]

Errors print one line (``error: ...`` saying what is wrong and what to run) and exit 2.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from models.ship.manifest import ShipError

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_ROOT = REPO_ROOT / "models" / "shipped"

app = typer.Typer(help="The production model shipped in the repository (an fp16 delta over the "
                       "packaged base encoder): pack it from a checkpoint, install it into a registry.",
                  no_args_is_help=True, add_completion=False)


@app.callback()
def _quiet() -> None:
    """Errors are one line: keep transformers' weight-loading progress bars off the terminal."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _fail(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(2)


def _shipped(shipped: Path | None, lang: str) -> Path:
    return shipped if shipped is not None else SHIPPED_ROOT / lang


@app.command("pack")
def pack_cmd(
    checkpoint: Annotated[Path | None, typer.Option(
        help="checkpoint folder to pack (e.g. var/models/versions/<version>)")] = None,
    registry: Annotated[Path | None, typer.Option(
        help="instead of --checkpoint: pack this registry's production model")] = None,
    out: Annotated[Path | None, typer.Option(
        help="shipped folder to (re)write (default models/shipped/<lang>)")] = None,
    lang: Annotated[str, typer.Option(help="language of the model: names the default --out")] = "en",
    metrics: Annotated[Path | None, typer.Option(
        help="metrics JSON (default: the checkpoint's metrics.json)")] = None,
    version: Annotated[str | None, typer.Option(
        help="version name to ship under (default: the checkpoint's)")] = None,
    agreement_data: Annotated[list[Path] | None, typer.Option(
        "--agreement-data", help="CSV/JSONL/text file(s) to measure rebuilt-vs-source label "
        "agreement on (only names and figures are recorded)")] = None,
    min_agreement: Annotated[float, typer.Option(
        help="refuse below this top-1 label agreement")] = 0.995,
    max_mb: Annotated[float, typer.Option(help="refuse a shipped form larger than this")] = 30.0,
) -> None:
    """Pack a checkpoint as an fp16 delta over the packaged base, verified by rebuilding it."""
    from models.ship.pack import pack

    if (checkpoint is None) == (registry is None):
        _fail("pass one of --checkpoint DIR or --registry DIR")
    try:
        if checkpoint is None:
            from models.registry import Registry, RegistryError

            try:
                checkpoint = Registry(registry).production(lang)[0]
            except RegistryError as e:
                raise ShipError(str(e)) from e
        from models.sentiment.config import ModelConfig

        try:
            ck_lang = ModelConfig.load(checkpoint).language
        except (FileNotFoundError, ValueError, TypeError):
            ck_lang = lang  # pack() names the missing or corrupt checkpoint
        if out is None and ck_lang != lang:
            raise ShipError(f"{checkpoint} is a {ck_lang} model but --lang is {lang}: pass "
                            f"--lang {ck_lang} (it names models/shipped/{ck_lang})")
        dst = _shipped(out, lang)
        m = pack(checkpoint, dst, metrics_path=metrics, version=version,
                 agreement_data=agreement_data or [], min_agreement=min_agreement,
                 max_bytes=int(max_mb * 1e6))
    except ShipError as e:
        _fail(str(e))
        raise
    agree = ", ".join(f"{k} {v['agreement']:.2%} of {v['n']} (max |dp| {v['max_abs_diff']:.1e})"
                      for k, v in m["agreement"].items())
    typer.echo(f"packed {m['version']} -> {dst}: {m['total_bytes'] / 1e6:.1f} MB, "
               f"{m['encoder']['delta']} tensors as fp16 deltas, {m['encoder']['unchanged']} "
               f"unchanged; rebuilt vs source labels: {agree}")


@app.command("install")
def install_cmd(
    registry: Annotated[Path, typer.Option(help="model registry root")] = Path("var/models"),
    lang: Annotated[str, typer.Option(help="which shipped model (models/shipped/<lang>)")] = "en",
    shipped: Annotated[Path | None, typer.Option(
        help="shipped folder (default models/shipped/<lang>)")] = None,
    force: Annotated[bool, typer.Option(
        help="offer the shipped model to the gate even if a production model exists")] = False,
    tolerance: Annotated[float, typer.Option(
        help="largest probe probability difference accepted")] = 1e-3,
) -> None:
    """Rebuild the shipped model, check it, register and promote it (idempotent)."""
    from models.ship.install import install

    try:
        r = install(registry, _shipped(shipped, lang), force=force, tolerance=tolerance)
    except ShipError as e:
        _fail(str(e))
        raise
    typer.echo(f"{r.action}: {r.detail}")


def main() -> None:
    app()
