"""Periodic retraining from stored feedback labels.

    python -m models.finetune.retrain --feedback var/feedback/labels.jsonl \\
        --registry var/models --min-new 200 [--data-dir ../shared/data]

Meant for a cron job (the ops/cron entry is owned by ops). Reads analyst feedback
labels (JSONL, one object per line: ``doc_id, text, label, ts``; the latest label
per ``doc_id`` wins), counts those newer than the ones the current production model
was trained with, and when at least ``--min-new`` are new: merges ALL feedback with
the base training data, trains the production recipe, and promotes the result only
through the registry gate (macro-F1 on the frozen eval set within tolerance and
negative recall not lower). Otherwise it exits without training. Exit code 0 in
both cases; the decision and reasons go to ``<registry>/decisions.jsonl``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

import typer

from models.finetune.datasets import DataError, Example, _map_label
from models.finetune.make_production import Recipe, run
from models.gate import Gate
from models.registry import Registry, RegistryError


def read_feedback(source: str | Path | Iterable[dict]) -> list[dict]:
    """Feedback rows (latest label per doc_id), validated; errors name file and line."""
    rows: list[tuple[str, dict]] = []
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise DataError(f"{path}: feedback file not found")
        with path.open(encoding="utf-8") as f:
            for i, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append((f"{path}:{i}", json.loads(line)))
                    except json.JSONDecodeError as e:
                        raise DataError(f"{path}:{i}: malformed JSON line ({e})") from e
    else:
        rows = [(f"feedback[{i}]", r) for i, r in enumerate(source)]
    latest: dict[str, dict] = {}
    for where, r in rows:
        if not isinstance(r, dict) or not str(r.get("text") or "").strip():
            raise DataError(f"{where}: feedback row needs a non-empty text")
        label = _map_label(r.get("label"), None, where)
        doc_id = str(r.get("doc_id") or r["text"])
        ts = str(r.get("ts") or "")
        if doc_id not in latest or ts >= latest[doc_id]["ts"]:
            latest[doc_id] = {"doc_id": doc_id, "text": r["text"], "label": label, "ts": ts}
    return list(latest.values())


def retrain_if_enough(
    feedback: str | Path | Iterable[dict],
    registry: str | Path,
    min_new: int = 200,
    data_dir: str | Path = "../shared/data",
    recipe: Recipe | None = None,
    gate: Gate | None = None,
) -> dict:
    """Train + gate + promote when >= ``min_new`` feedback labels are newer than the
    production model's; returns {"trained": bool, "reason", ...run() summary}."""
    rows = read_feedback(feedback)
    reg = Registry(registry)
    since = ""
    try:
        _, prod_version = reg.production()
        since = reg.metrics(prod_version).get("feedback_max_ts") or ""
    except RegistryError:
        prod_version = None
    new = [r for r in rows if r["ts"] > since] if since else rows
    if len(new) < min_new:
        reason = (
            f"{len(new)} new feedback labels since {since or 'start'} < min_new {min_new}; "
            "not retraining"
        )
        print(reason)
        return {"trained": False, "reason": reason, "new": len(new)}
    recipe = recipe or Recipe()
    recipe.extra = [Example(r["text"], r["label"], "feedback", 0) for r in rows]
    summary = run(data_dir, registry, recipe, promote=True, gate=gate)
    max_ts = max((r["ts"] for r in rows), default="")
    # Record the watermark on the new version so the next run counts from here.
    mpath = Path(registry) / "versions" / summary["version"] / "metrics.json"
    m = json.loads(mpath.read_text())
    m["feedback_max_ts"], m["feedback_rows"] = max_ts, len(rows)
    mpath.write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")
    return {
        "trained": True,
        "reason": f"{len(new)} new labels",
        "previous": prod_version,
        **summary,
    }


def main() -> None:

    def cli(
        feedback: Annotated[
            Path, typer.Option(help="feedback labels JSONL (doc_id,text,label,ts)")
        ],
        registry: Annotated[Path, typer.Option(help="model registry root")] = Path("var/models"),
        min_new: Annotated[
            int, typer.Option(help="retrain only with at least this many new labels")
        ] = 200,
        data_dir: Annotated[Path, typer.Option(help="shared data folder")] = Path("../shared/data"),
        threads: Annotated[int | None, typer.Option(help="torch CPU threads")] = None,
    ) -> None:
        """Retrain from feedback when enough new labels exist; promote through the gate."""
        try:
            out = retrain_if_enough(feedback, registry, min_new, data_dir, Recipe(threads=threads))
        except DataError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from e
        typer.echo(
            json.dumps(
                {k: out[k] for k in ("trained", "reason") if k in out}
                | (
                    {"version": out["version"], "promoted": out["promoted"]}
                    if out.get("trained")
                    else {}
                )
            )
        )

    typer.run(cli)


if __name__ == "__main__":
    main()
