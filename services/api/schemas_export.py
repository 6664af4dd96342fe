"""JSON Schema documents of the Kafka message contracts, for producers and consumers in any
language. ``yuqing schemas export`` writes them to ``ops/schemas/``; a unit test fails when the
checked-in files drift from :mod:`services.core.schemas`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from services.core.schemas import Alert, CommentIn, DeadLetter, NewsIn

# file name -> (model, mode, topic setting, what it is)
CONTRACTS: dict[str, tuple[type[BaseModel], str, str]] = {
    "news_in.json": (NewsIn, "validation", "News item producers write to yuqing.news.raw."),
    "comment_in.json": (CommentIn, "validation",
                        "Comment/post producers write to yuqing.comments.raw."),
    "alert.json": (Alert, "serialization", "Spike alert yuqing writes to yuqing.alerts."),
    "dead_letter.json": (DeadLetter, "serialization",
                         "Rejected input yuqing writes to yuqing.dlq, with the reason."),
}
DEFAULT_DIR = Path("ops/schemas")


def schema_documents() -> dict[str, dict[str, Any]]:
    out = {}
    for name, (model, mode, what) in CONTRACTS.items():
        doc = model.model_json_schema(mode=mode)  # type: ignore[arg-type]
        out[name] = {"$schema": "https://json-schema.org/draft/2020-12/schema",
                     "$id": f"https://yuqing.example/schemas/{name}",
                     "description": what, **doc}
    return out


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def export(out_dir: Path = DEFAULT_DIR) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, doc in schema_documents().items():
        path = out_dir / name
        path.write_text(render(doc), encoding="utf-8")
        written.append(path)
    return written


def stale(out_dir: Path = DEFAULT_DIR) -> list[str]:
    """Files that are missing or differ from what :func:`export` would write."""
    bad = []
    for name, doc in schema_documents().items():
        path = out_dir / name
        if not path.exists() or path.read_text(encoding="utf-8") != render(doc):
            bad.append(name)
    return bad
