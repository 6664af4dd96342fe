"""`yuqing bench inference` is wired and documents its options."""
from __future__ import annotations

import typer
from typer.testing import CliRunner

from services.classify.cli import register
from services.cli import app as yuqing_app


def test_bench_inference_is_registered_on_the_yuqing_app() -> None:
    res = CliRunner().invoke(yuqing_app, ["bench", "inference", "--help"])
    assert res.exit_code == 0, res.output
    for opt in ("--n-single", "--device", "--backend", "--output", "--tokenizer-processes"):
        assert opt in res.output


def test_register_reuses_an_existing_bench_group() -> None:
    app = typer.Typer()
    other = typer.Typer()

    @other.command("other")
    def _other() -> None: ...

    app.add_typer(other, name="bench")
    register(app)
    res = CliRunner().invoke(app, ["bench", "--help"])
    assert res.exit_code == 0 and "inference" in res.output and "other" in res.output


def test_bad_sizes_are_rejected() -> None:
    res = CliRunner().invoke(yuqing_app, ["bench", "inference", "--n", "0", "--device", "cpu"])
    assert res.exit_code != 0
