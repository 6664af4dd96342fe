"""``python -m bench`` holds the benchmark commands; ``yuqing bench`` only forwards to it."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import services.cli
from bench.cli import app as bench_app
from services.cli import app as yuqing_app

ROOT = Path(__file__).resolve().parents[3]


def test_bench_inference_documents_its_options() -> None:
    res = CliRunner().invoke(bench_app, ["inference", "--help"])
    assert res.exit_code == 0, res.output
    for opt in ("--n-single", "--device", "--backend", "--output", "--tokenizer-processes"):
        assert opt in res.output


def test_bench_pipeline_documents_its_options() -> None:
    res = CliRunner().invoke(bench_app, ["pipeline", "--help"])
    assert res.exit_code == 0, res.output
    for opt in ("--n-latency", "--layout", "--device", "--keep"):
        assert opt in res.output


def test_bad_sizes_are_rejected() -> None:
    res = CliRunner().invoke(bench_app, ["inference", "--n", "0", "--device", "cpu"])
    assert res.exit_code != 0


def test_yuqing_bench_runs_python_m_bench_in_the_checkout(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(subprocess, "call", lambda cmd, cwd: calls.append((cmd, cwd)) or 3)
    res = CliRunner().invoke(yuqing_app, ["bench", "inference", "--n", "5", "--help"])
    assert res.exit_code == 3, res.output  # the child's status
    assert calls == [([sys.executable, "-m", "bench", "inference", "--n", "5", "--help"], ROOT)]


def test_yuqing_bench_without_a_checkout_says_so(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(services.cli, "source_checkout", lambda: tmp_path)
    monkeypatch.setattr(subprocess, "call", lambda *a, **k: pytest.fail("must not run"))
    res = CliRunner().invoke(yuqing_app, ["bench", "pipeline"])
    assert res.exit_code == 2
    assert "yuqing bench needs a source checkout of yuqing (bench/ not found under" in res.output


def test_python_m_bench_answers_help() -> None:
    out = subprocess.run([sys.executable, "-m", "bench", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "inference" in out.stdout and "pipeline" in out.stdout
