"""Measure a faster CPU backend on a model's held-out sets; let ``auto`` use it only if it holds.

    python -m models.finetune.quant_check --checkpoint var/models/versions/V --backend onnx-int8 \
        [--shipped models/shipped/zh] [--write]

int8 weights change a few labels, so a backend other than fp32/ONNX fp32 is never a host
default. Instead each model is measured under it on the same real held-out sets it was judged
on (the language's sets: Chinese posts, finnsp documents and entities, bank comments; English
``eval/`` plus ``valid.csv``). Exit status: 0 it holds, 1 it does not, 2 an error. A worker
already serving the version keeps its backend until it next loads it (restart it); a registry
that installed the version before it opted in keeps its copy (run this with ``--write`` on
that copy, or reinstall). When no headline figure drops by more than ``--tolerance``,
``--write`` records the backend as the model's own ``cpu_backend`` (``yuqing_model.json``),
which ``SentimentModel.set_backend("auto")`` then picks, and writes the figures side by side
to ``eval-cpu-backend.json``. ``--shipped`` applies the same two files to the shipped folder
and refreshes their manifest entries (the delta is untouched, so nothing large is re-committed).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from models.finetune.datasets import DataError, Example
from models.finetune.metrics import classification_metrics
from models.sentiment.config import CONFIG_FILE, ModelConfig

RESULT_FILE = "eval-cpu-backend.json"
TOLERANCE = 0.01  # absolute, on each headline figure (macro-F1 / negative F1)


def _sets(language: str, data_dir: Path) -> tuple[dict[str, list[Example]], list]:
    """({name: examples} for macro-F1, finnsp test docs or [] for the news/entity figures)."""
    if language == "zh":
        from models.finetune.sources_zh import load_splits, news_examples

        d = load_splits(data_dir, include_written=False)
        return ({"finfe#test": d["finfe"]["test"], "bank#test": d["bank"]["test"],
                 "finnsp#test (documents)": news_examples(d["finnsp"]["test"])},
                d["finnsp"]["test"])
    from models.finetune.make_production import EVAL_KEYS
    from models.finetune.sources import load_evals

    return {EVAL_KEYS.get(k, k): v for k, v in load_evals(data_dir).items()
            if EVAL_KEYS.get(k, k) != "yuqing_news_heldout.jsonl"}, []


def measure(checkpoint: Path, backend: str, data_dir: Path) -> dict:
    """Figures under fp32 (the reference) and under ``backend``, plus label agreement."""
    from models.sentiment.predictor import SentimentModel

    cfg = ModelConfig.load(checkpoint)
    sets, news_docs = _sets(cfg.language, data_dir)
    out: dict = {"model_version": cfg.version, "language": cfg.language, "backend": backend,
                 "reference": "fp32", "sets": {}}
    labels: dict[str, dict[str, np.ndarray]] = {}
    for be in ("fp32", backend):
        model = SentimentModel.from_checkpoint(checkpoint, device="cpu", backend=be)
        if model.backend != be:
            raise DataError(f"backend {be} is not available on this host (got {model.backend}): "
                            "install onnx and onnxruntime (`pip install -e '.[cpu-opt]'`)")
        for name, exs in sets.items():
            if not exs:
                continue
            t0 = time.perf_counter()
            probs, _ = model.predict_proba([ex.text for ex in exs])  # one pass: figures + labels
            y = np.array([model.labels.index(ex.label) for ex in exs])
            m = classification_metrics(y, probs, model.labels)
            row = out["sets"].setdefault(name, {"n": len(exs)})
            row[be] = {"macro_f1": round(m["macro_f1"], 4), "accuracy": round(m["accuracy"], 4),
                       "seconds": round(time.perf_counter() - t0, 2)}
            labels.setdefault(name, {})[be] = probs.argmax(1)
        if news_docs:
            from models.finetune.evaluate_news_zh import evaluate_news

            r = evaluate_news(model, news_docs)
            row = out["sets"].setdefault("finnsp#test (negative about entity)",
                                         {"n": len(news_docs)})
            row[be] = {"document_negative_f1": r["document_negative"]["f1"],
                       "entity_negative_f1": r["entity_negative"]["f1"]}
    for name, by in labels.items():
        out["sets"][name]["label_agreement"] = round(float(np.mean(by["fp32"] == by[backend])), 4)
    if not any(backend in row for row in out["sets"].values()):
        raise DataError(f"no held-out set of a {cfg.language} model was found under {data_dir}: "
                        "point --data-dir at the shared data folder")
    return out


def worst_drop(result: dict) -> tuple[float, str]:
    """(largest fall of any headline figure from fp32 to the backend, where)."""
    worst, where = 0.0, ""
    for name, row in result["sets"].items():
        ref, got = row.get("fp32", {}), row.get(result["backend"], {})
        for key in ("macro_f1", "document_negative_f1", "entity_negative_f1"):
            if key in ref and key in got and ref[key] - got[key] > worst:
                worst, where = ref[key] - got[key], f"{name} {key}"
    return round(worst, 4), where


def record(folder: Path, backend: str | None, result: dict) -> None:
    """Write ``cpu_backend`` into the folder's config and the figures beside it (each file
    replaced atomically: a worker may be loading this registered version right now)."""
    cfg = ModelConfig.load(folder)
    cfg.cpu_backend = backend
    cfg.save(folder)
    tmp = folder / f".{RESULT_FILE}.tmp"
    tmp.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    tmp.replace(folder / RESULT_FILE)


def check_shipped(shipped: Path, result: dict) -> dict:
    """The shipped folder's manifest, refused unless it ships the measured version."""
    from models.ship import manifest as mf

    m = mf.read_manifest(shipped)
    if m.get("version") != result["model_version"]:
        raise DataError(f"{shipped} ships {m.get('version')}, not {result['model_version']}: "
                        "measure the checkpoint that folder was packed from")
    return m


def record_shipped(shipped: Path, backend: str | None, result: dict) -> None:
    """The same two files in a shipped folder, with its manifest entries refreshed."""
    from models.ship import manifest as mf

    m = check_shipped(shipped, result)
    record(shipped, backend, result)
    for name in (CONFIG_FILE, RESULT_FILE):
        m["files"][name] = mf.file_entry(shipped / name)
    if RESULT_FILE not in m.get("extra_files", []):
        m.setdefault("extra_files", []).append(RESULT_FILE)
    m["total_bytes"] = sum(e["bytes"] for e in m["files"].values())
    mf.write_manifest(shipped, m)


def main() -> None:
    def cli(
        checkpoint: Annotated[Path, typer.Option(help="checkpoint folder (e.g. a registry version)")],
        backend: Annotated[str, typer.Option(help="the backend to measure: int8 | onnx-int8 | "
                                                   "onnx-int8-ffn | onnx")] = "onnx-int8",
        data_dir: Annotated[Path, typer.Option(help="shared data folder")] = Path("../shared/data"),
        tolerance: Annotated[float, typer.Option(help="largest allowed fall of any figure")]
        = TOLERANCE,
        write: Annotated[bool, typer.Option(help="record the backend as the model's auto choice "
                                                 "when it holds")] = False,
        shipped: Annotated[Path | None, typer.Option(help="also record it in this shipped folder")]
        = None,
    ) -> None:
        """Measure BACKEND against fp32 on the model's held-out sets."""
        try:
            result = measure(checkpoint, backend, data_dir)
        except (DataError, FileNotFoundError, ValueError) as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from e
        drop, where = worst_drop(result)
        holds = drop <= tolerance
        result.update({"worst_drop": drop, "worst_drop_at": where, "tolerance": tolerance,
                       "holds": holds})
        for name, row in result["sets"].items():
            typer.echo(f"{name:42s} fp32 {row.get('fp32')}  {backend} {row.get(backend)}"
                       + (f"  agreement {row['label_agreement']}" if "label_agreement" in row
                          else ""))
        typer.echo(f"worst drop {drop} ({where or '-'}), tolerance {tolerance}: "
                   f"{'holds' if holds else 'does not hold'}")
        if write:
            choice = backend if holds else None
            try:
                if shipped is not None:  # refuse before writing anything
                    check_shipped(shipped, result)
                record(checkpoint, choice, result)
                if shipped is not None:
                    record_shipped(shipped, choice, result)
            except (DataError, OSError) as e:
                typer.echo(f"error: {e}", err=True)
                raise typer.Exit(2) from e
            typer.echo(f"cpu_backend = {choice} written to {checkpoint}"
                       + (f" and {shipped}" if shipped else ""))
        if not holds:
            raise typer.Exit(1)

    typer.run(cli)


if __name__ == "__main__":
    main()
