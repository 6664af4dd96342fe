"""The serving predictor on an untrained head: contract, odd inputs, batching invariance."""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from models.sentiment import Encoded, Prediction

ODD = ["", "x" * 100_000, "\x00\x01\x02 ctl \x7f", "股票大涨，利好消息 🚀📈", "   ", "$AAPL beats"]


def test_odd_inputs_score_without_raising(untrained):
    preds = untrained.predict_batch(ODD)
    assert len(preds) == len(ODD)
    for p in preds:
        assert isinstance(p, Prediction) and p.label in untrained.labels
        assert p.version == "untrained-test"
        assert abs(sum(p.probabilities.values()) - 1) < 1e-5
        assert list(p.probabilities) == list(untrained.labels)
    assert preds[1].truncated and not preds[0].truncated and not preds[5].truncated


def test_truncation_flag_at_max_length(untrained):
    n = untrained.max_length
    enc = untrained.encode(["word " * (n - 2), "word " * (n - 1), "word " * 500])
    assert enc.lengths.tolist() == [n, n, n]
    assert enc.truncated.tolist() == [False, True, True]


def test_encoded_arrays(untrained):
    enc = untrained.encode(["hello world", "a", ""])
    assert isinstance(enc, Encoded)
    assert enc.input_ids.dtype == np.int64 and enc.attention_mask.dtype == np.int64
    assert enc.lengths.dtype == np.int32 and enc.truncated.dtype == bool
    assert enc.input_ids.shape == enc.attention_mask.shape == (3, 4)
    assert enc.lengths.tolist() == [4, 3, 2]  # [CLS] ... [SEP]
    assert enc.attention_mask.sum(1).tolist() == enc.lengths.tolist()
    assert untrained.lengths(["hello world", "a", ""]).tolist() == [4, 3, 2]
    empty = untrained.encode([])
    assert empty.input_ids.shape[0] == 0 and untrained.forward(empty).shape == (0, 3)
    assert untrained.predict_batch([]) == []


def test_normalisation_applied_before_tokenising(untrained):
    a, b = untrained.encode(["$aapl  up https://t.co/x"]), untrained.encode(["$AAPL up"])
    assert np.array_equal(a.input_ids, b.input_ids)


def test_batched_equals_one_by_one_and_keeps_order(untrained):
    texts = ["profit warning cuts guidance", "record quarter", "", "x" * 5000,
             "neutral filing of 10-K", "股票", "$TSLA deliveries miss estimates badly today"]
    batched = untrained.forward(untrained.encode(texts))
    single = np.concatenate([untrained.forward(untrained.encode([t])) for t in texts])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    assert batched.dtype == np.float32 and batched.shape == (len(texts), 3)
    rev = untrained.forward(untrained.encode(texts[::-1]))[::-1]
    np.testing.assert_allclose(batched, rev, atol=1e-5)
    sorted_path, _ = untrained.predict_proba(texts, batch_size=3)
    np.testing.assert_allclose(batched, sorted_path, atol=1e-5)


def test_encode_is_thread_safe(untrained):
    texts = [f"stock {i} " * (i % 40) for i in range(200)]
    ref = untrained.encode(texts)
    with ThreadPoolExecutor(4) as ex:
        outs = list(ex.map(lambda _: untrained.encode(texts), range(8)))
    for o in outs:
        assert np.array_equal(o.input_ids, ref.input_ids) and np.array_equal(o.lengths, ref.lengths)


@pytest.mark.parametrize("backend", ["int8", "onnx", "onnx-int8", "onnx-int8-ffn"])
def test_cpu_backends_agree_with_fp32(backend, untrained):
    from models.sentiment.cpu_backends import build_cpu_backend

    texts = ["shares plunge after profit warning", "record revenue", "files 8-K", ""]
    enc = untrained.encode(texts)
    ref = untrained.forward(enc)
    runner = build_cpu_backend(untrained.network, backend, untrained.max_length)
    if runner is None:
        pytest.skip(reason=f"{backend} backend unavailable on this host")
    got = runner(enc.input_ids, enc.attention_mask)
    np.testing.assert_allclose(got, ref, atol=0.05 if "int8" in backend else 1e-4)
    if backend.startswith("onnx-int8"):  # really quantised: not the fp32 graph renamed
        assert np.abs(got - ref).max() > 1e-6


def test_backend_choice(untrained):
    from models.sentiment import cpu_backends

    assert cpu_backends.pick_cpu_backend() in ("onnx", "fp32")  # never silently int8
    # a model's own measured choice wins under auto (ONNX ones only where ONNX Runtime is)
    onnx = "onnx" if cpu_backends.onnx_available() else "fp32"
    assert cpu_backends.pick_cpu_backend("onnx-int8") == ("onnx-int8" if onnx == "onnx"
                                                          else "fp32")
    assert cpu_backends.pick_cpu_backend("int8") == "int8"
    assert cpu_backends.pick_cpu_backend("bogus") == onnx
    try:
        assert untrained.set_backend("int8") == "int8"
        assert len(untrained.predict_batch(["x", ""])) == 2
    finally:
        assert untrained.set_backend("fp32") == "fp32"
    with pytest.raises(ValueError, match="unknown backend"):
        cpu_backends.build_cpu_backend(None, "tpu", 64)


def test_from_checkpoint_errors_name_the_problem(tmp_path):
    from models.sentiment import SentimentModel

    with pytest.raises(FileNotFoundError, match="does not exist"):
        SentimentModel.from_checkpoint(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="yuqing_model.json not found"):
        SentimentModel.from_checkpoint(tmp_path / "empty")


def test_a_failed_quantisation_serves_the_fp32_onnx_graph(untrained, monkeypatch):
    from models.sentiment import cpu_backends

    if not cpu_backends.onnx_available():
        pytest.skip(reason="onnx backend unavailable on this host")

    def broken(src, dst):
        raise RuntimeError("quantiser blew up")

    monkeypatch.setattr(cpu_backends, "quantize_onnx_int8", broken)
    try:
        assert untrained.set_backend("onnx-int8") == "onnx"
        enc = untrained.encode(["record revenue"])
        assert untrained.forward(enc).shape == (1, 3)
    finally:
        untrained.set_backend("fp32")


def test_the_onnx_export_traces_the_network_in_place_and_leaves_it_as_it_was(untrained, tmp_path):
    """No copy of the network (worker peak RSS): the export must not change its weights or
    mode, and the graph must still match it."""
    from models.sentiment import cpu_backends

    if not cpu_backends.onnx_available():
        pytest.skip(reason="onnx backend unavailable on this host")
    net = untrained.network
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.train()
    try:
        cpu_backends.export_onnx(net, str(tmp_path / "m.onnx"), untrained.max_length)
        assert net.training  # mode restored
    finally:
        net.eval()
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert all(p.grad is None for p in net.parameters())
    import onnxruntime as ort

    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    enc = untrained.encode(["shares plunge after profit warning", "record revenue"])
    logits = sess.run(["logits"], {"input_ids": enc.input_ids,
                                   "attention_mask": enc.attention_mask})[0]
    e = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(e / e.sum(1, keepdims=True), untrained.forward(enc), atol=1e-4)


def test_ffn_only_quantisation_keeps_attention_fp32(untrained, tmp_path):
    """onnx-int8-ffn: int8 for each layer's two feed-forward MatMuls, none of the others."""
    import onnx

    from models.sentiment import cpu_backends

    if not cpu_backends.onnx_available():
        pytest.skip(reason="onnx backend unavailable on this host")
    src, dst = str(tmp_path / "m.onnx"), str(tmp_path / "q.onnx")
    cpu_backends.export_onnx(untrained.network, src, untrained.max_length)
    cpu_backends.quantize_onnx_int8(src, dst, ffn_only=True)
    nodes = onnx.load(dst).graph.node
    layers = untrained.network.encoder.config.num_hidden_layers
    left = [n.name for n in nodes if n.op_type == "MatMul"]
    assert len([n for n in left if cpu_backends.ffn_matmul(n)]) == 0
    assert len([n for n in left if "/attention/" in n]) == 6 * layers  # q k v, 2 scores, out
    assert len(left) < len([n for n in onnx.load(src).graph.node if n.op_type == "MatMul"])
    assert cpu_backends.pick_cpu_backend("onnx-int8-ffn") == "onnx-int8-ffn"


def test_ffn_only_quantisation_refuses_a_graph_without_feed_forward_layers(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from models.sentiment import cpu_backends

    if not cpu_backends.onnx_available():
        pytest.skip(reason="onnx backend unavailable on this host")
    w = helper.make_tensor("w", TensorProto.FLOAT, [2, 2], [1.0, 0.0, 0.0, 1.0])
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="/head/MatMul")],
                          "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], [w])
    onnx.save(helper.make_model(g), str(tmp_path / "m.onnx"))
    with pytest.raises(ValueError, match="no feed-forward MatMul"):
        cpu_backends.quantize_onnx_int8(str(tmp_path / "m.onnx"), str(tmp_path / "q.onnx"),
                                        ffn_only=True)
