"""A file-system model registry: versioned folders + an atomically-updated production pointer.

Layout under the registry root (the service default is ``var/models``)::

    versions/<version>/          a checkpoint folder (see models.sentiment.network)
        MODEL_CARD.md            data, parameters, results
        metrics.json             metrics passed to ``register`` (frozen eval set results)
    production.json              {"version", "path", "promoted_at", "history": [...]} (English)
    production-<lang>.json       the same, per other language (``production-zh.json``)
    decisions.jsonl              one JSON line per promote/rollback decision, with reasons

One production pointer per language: a version serves the language its config names
(``ModelConfig.language``), is promoted through that language's gate against that
language's production, and rolls back within it. English keeps the original file name,
so a registry written before languages existed reads the same.

Why files and not a DB: the classify workers only need "which folder is production"
and must survive a half-written update. The pointer is written to a temp file in
the same directory, fsynced, then ``os.replace``d, so readers see the old or the
new pointer, never a torn one. ``history`` keeps earlier production versions so
``rollback`` needs no other state.

The promotion gate (whether a candidate may replace production) is ``models.gate``; the
model card written beside each version is ``models.model_card``.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from models.gate import DEFAULT_GATE, Gate
from models.model_card import model_card
from models.sentiment.config import ModelConfig

POINTER = "production.json"
DEFAULT_LANGUAGE = "en"
DECISIONS = "decisions.jsonl"
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,80}$")


class RegistryError(RuntimeError):
    """A registry operation cannot proceed; the message says what to do next."""


@dataclass(frozen=True)
class ModelRef:
    """Which version serves and where its folder is: what the pointer says, and what a
    server needs to load and label a model (a fixed ``YUQING_MODEL_PATH`` has version ``?``)."""

    version: str
    path: Path


@dataclass(frozen=True)
class ModelVersion:
    version: str
    path: Path
    metrics: dict
    created_at: str
    production: bool = False


def pointer_name(language: str = DEFAULT_LANGUAGE) -> str:
    return POINTER if language == DEFAULT_LANGUAGE else f"production-{language}.json"


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; readers may run as another user
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def validate_checkpoint(path: Path) -> ModelConfig:
    """Cheap structural check (config parses, weights present); raises RegistryError."""
    if not path.is_dir():
        raise RegistryError(f"model folder {path} is missing")
    try:
        cfg = ModelConfig.load(path)
    except (FileNotFoundError, ValueError, TypeError) as e:
        raise RegistryError(f"model folder {path} is corrupt: {e}") from e
    need = ["head.safetensors", "tokenizer.json",
            "adapter" if cfg.method == "lora" else "encoder"]
    missing = [n for n in need if not (path / n).exists()]
    if missing:
        raise RegistryError(f"model folder {path} is corrupt: missing {', '.join(missing)}")
    weights = list((path / need[2]).glob("*.safetensors")) + list((path / need[2]).glob("*.bin"))
    if not weights or any(w.stat().st_size == 0 for w in weights):
        raise RegistryError(f"model folder {path} is corrupt: no (or empty) weights in {need[2]}/")
    return cfg


class Registry:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.versions_dir = self.root / "versions"

    # ---- reading ------------------------------------------------------------------------
    def languages(self) -> list[str]:
        """Languages with a production pointer, English first."""
        found = [p.name[len("production-"):-len(".json")]
                 for p in sorted(self.root.glob("production-*.json"))]
        return ([DEFAULT_LANGUAGE] if (self.root / POINTER).is_file() else []) + found

    def _pointer(self, language: str = DEFAULT_LANGUAGE) -> dict | None:
        p = self.root / pointer_name(language)
        if not p.is_file():
            return None
        try:
            return json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise RegistryError(f"{p} is not valid JSON ({e}); fix or delete it") from e

    def metrics(self, version: str) -> dict:
        p = self.versions_dir / version / "metrics.json"
        return json.loads(p.read_text()) if p.is_file() else {}

    def list(self) -> list[ModelVersion]:
        if not self.versions_dir.is_dir():
            return []
        serving = {(self._pointer(lang) or {}).get("version") for lang in self.languages()}
        out = []
        for d in sorted(self.versions_dir.iterdir()):
            if not d.is_dir() or d.name.startswith("."):
                continue
            try:
                created = ModelConfig.load(d).created_at
            except (FileNotFoundError, ValueError, TypeError):
                created = "corrupt"
            out.append(ModelVersion(d.name, d, self.metrics(d.name), created,
                                    d.name in serving))
        return out

    def production(self, language: str = DEFAULT_LANGUAGE) -> tuple[Path, str]:
        """(path, version) of the production model; RegistryError says what to do if none."""
        ptr = self._pointer(language)
        if not ptr or not ptr.get("version"):
            which = "" if language == DEFAULT_LANGUAGE else f" for language {language!r}"
            raise RegistryError(
                f"no production model{which} in {self.root}: run `make model` (installs the "
                f"shipped models) or `python -m models.ship install --registry {self.root}`"
            )
        path = self.versions_dir / ptr["version"]
        validate_checkpoint(path)
        return path, ptr["version"]

    # ---- writing ------------------------------------------------------------------------
    def register(self, checkpoint_dir: str | Path, metrics: dict, version: str | None = None,
                 card_extra: str = "") -> str:
        """Copy a checkpoint into ``versions/<version>/`` with its metrics and model card."""
        src = Path(checkpoint_dir)
        cfg = validate_checkpoint(src)
        version = version or cfg.version
        if not version or version == "dev":
            version = datetime.now(UTC).strftime("v%Y%m%d-%H%M%S")
        if not _VERSION_RE.match(version):
            raise RegistryError(f"invalid version name {version!r}")
        dst = self.versions_dir / version
        if dst.exists():
            raise RegistryError(f"version {version} already exists in {self.root}")
        tmp = self.versions_dir / f".{version}.incoming"
        if tmp.exists():
            shutil.rmtree(tmp)
        shutil.copytree(src, tmp)
        cfg.version = version  # the folder name is the version the predictor reports
        cfg.save(tmp)
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        (tmp / "MODEL_CARD.md").write_text(model_card(version, cfg, metrics, tmp, card_extra))
        os.replace(tmp, dst)
        return version

    def _decide(self, record: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        record = {"ts": datetime.now(UTC).isoformat(timespec="seconds"), **record}
        with (self.root / DECISIONS).open("a") as f:
            f.write(json.dumps(record) + "\n")

    def decisions(self) -> list[dict]:
        p = self.root / DECISIONS
        if not p.exists():
            return []
        return [json.loads(x) for x in p.read_text().splitlines() if x.strip()]

    def promote(self, version: str, gate: Gate | None = DEFAULT_GATE, force: bool = False) -> bool:
        """Make ``version`` production if the gate accepts it (``gate=None`` or ``force``:
        skip the gate). Returns whether it was promoted; the decision is always logged."""
        path = self.versions_dir / version
        cfg = validate_checkpoint(path)  # corrupt/missing: raises, pointer untouched
        language = getattr(cfg, "language", DEFAULT_LANGUAGE) or DEFAULT_LANGUAGE
        ptr = self._pointer(language)
        current = ptr.get("version") if ptr else None
        if current == version:
            return True
        cand = self.metrics(version)
        prod = self.metrics(current) if current else None
        if gate is None or force:
            accepted, reasons = True, ["gate skipped (forced)"]
        else:
            accepted, reasons = gate.check(cand, prod)
        self._decide({"action": "promote", "candidate": version, "production": current,
                      "language": language, "accepted": accepted, "reasons": reasons})
        if not accepted:
            return False
        history = (ptr or {}).get("history", [])
        if current:
            history = history + [current]
        self._write_pointer(version, history, language)
        return True

    def rollback(self, language: str = DEFAULT_LANGUAGE) -> str:
        """Point production back at the previous production version; returns it."""
        ptr = self._pointer(language)
        history = list((ptr or {}).get("history", []))
        if not ptr or not history:
            raise RegistryError(f"nothing to roll back to in {self.root} (no earlier production)")
        previous = history.pop()
        validate_checkpoint(self.versions_dir / previous)
        self._write_pointer(previous, history, language)
        self._decide({"action": "rollback", "from": ptr.get("version"), "to": previous,
                      "language": language, "accepted": True, "reasons": ["manual rollback"]})
        return previous

    def _write_pointer(self, version: str, history: list[str],
                       language: str = DEFAULT_LANGUAGE) -> None:
        _atomic_write_text(self.root / pointer_name(language), json.dumps({
            "version": version, "path": str(Path("versions") / version),
            "promoted_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "history": history[-20:]}, indent=2) + "\n")


def production(root: str | Path, language: str = DEFAULT_LANGUAGE) -> ModelRef | None:
    """Module-level convenience for servers polling the pointer: the production
    (version, path) of ``language`` or None when nothing is promoted for it yet. A corrupt
    pointer or model folder raises RegistryError (the caller keeps serving its model)."""
    reg = Registry(root)
    if reg._pointer(language) is None:
        return None
    path, version = reg.production(language)
    return ModelRef(version, path)
