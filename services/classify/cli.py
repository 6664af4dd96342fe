"""`yuqing bench inference`: the classify stage's benchmark (see docs/inference.md)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from services.core.config import get_settings

_REPO = Path(__file__).resolve().parents[2]


def _bench_module():
    """``bench/`` is a folder of the source checkout, not an installed package."""
    if not (_REPO / "bench" / "inference.py").is_file():
        raise typer.BadParameter(
            f"bench/inference.py not found under {_REPO}: run from a source checkout of yuqing"
        )
    if str(_REPO) not in sys.path:
        sys.path.insert(0, str(_REPO))
    import bench.inference as mod

    return mod


def inference(
    n: Annotated[int, typer.Option(help="Texts for the batched pipeline and the worker.")] = 2000,
    n_single: Annotated[int, typer.Option(help="Texts for the one-per-call pipeline.")] = 300,
    n_batched: Annotated[int | None, typer.Option(
        help="Texts for the batched pipeline (default: --n).")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "auto",
    backend: Annotated[list[str] | None, typer.Option(
        help="CPU backend(s) for the worker: auto, fp32, int8, onnx (repeat to compare).")] = None,
    tokenizer_threads: Annotated[int, typer.Option(help="Worker tokenizer threads.")] = 2,
    tokenizer_processes: Annotated[int, typer.Option(
        help="Worker tokenizer processes instead of threads (0: threads).")] = 0,
    ceiling: Annotated[bool, typer.Option(
        help="Also time the forward pass alone on pre-tokenised batches.")] = True,
    compile_mode: Annotated[str | None, typer.Option(
        help="torch.compile mode for the CUDA path, e.g. reduce-overhead (CUDA graphs).")] = None,
    max_batch: Annotated[int | None, typer.Option(help="Override the device preset.")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Override the device preset.")] = None,
    max_padding: Annotated[float | None, typer.Option(
        help="Most padding share the batcher accepts in a batch (default: the device "
             "preset, 0.1 CPU / 0.35 CUDA, as the product).")] = None,
    output: Annotated[Path | None, typer.Option(
        help="JSON path (default bench/results/inference-<device>.json).")] = None,
) -> None:
    """HF pipeline one-per-call vs batched vs the yuqing worker: seq/s, latency, padding, RSS.

    Same model (the registry's production version, else the base encoder with an untrained
    head) and the same synthetic headlines for every variant; each variant runs in its own
    process. Prints a table and writes JSON. Not a test: nothing is asserted.
    """
    from rich.console import Console

    bench = _bench_module()
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if n < 1 or n_single < 1:
        raise typer.BadParameter("--n and --n-single must be >= 1")
    args = bench.BenchArgs(
        n=n, n_single=min(n_single, n), n_batched=min(n_batched or n, n), device=device,
        backends=tuple(backend or ["auto"]), tokenizer_threads=tokenizer_threads,
        tokenizer_processes=tokenizer_processes, compile_mode=compile_mode, ceiling=ceiling,
        registry=str(get_settings().model_registry), max_batch=max_batch, max_tokens=max_tokens,
        max_padding=max_padding,
    )
    console = Console()
    if not console.is_terminal:
        console = Console(width=120)  # logs and CI: room for the whole table
    def progress(name: str) -> None:
        status.update(f"running {name}")
        console.log(name)

    with console.status("starting") as status:
        result = bench.run(args, progress=progress)
    console.print(bench.table(result))
    path = bench.write(result, output)
    console.print(f"wrote {path}")


def register(app: typer.Typer) -> None:
    """Add ``bench inference`` (creating or reusing the ``bench`` group)."""
    for group in app.registered_groups:
        if group.name == "bench" and group.typer_instance is not None:
            group.typer_instance.command("inference")(inference)
            return
    bench_app = typer.Typer(help="Benchmarks (print a table, write bench/results/*.json).",
                            no_args_is_help=True)
    bench_app.command("inference")(inference)
    app.add_typer(bench_app, name="bench")


def app_for_module() -> typer.Typer:
    """A stand-alone app for ``python -m bench.inference``."""
    app = typer.Typer(add_completion=False)
    app.command()(inference)
    return app
