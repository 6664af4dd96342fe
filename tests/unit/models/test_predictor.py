"""The serving predictor on an untrained head: contract, odd inputs, batching invariance."""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

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


@pytest.mark.parametrize("backend", ["int8", "onnx", "onnx-int8"])
def test_cpu_backends_agree_with_fp32(backend, untrained):
    from models.sentiment.cpu_backends import build_cpu_backend

    texts = ["shares plunge after profit warning", "record revenue", "files 8-K", ""]
    enc = untrained.encode(texts)
    ref = untrained.forward(enc)
    runner = build_cpu_backend(untrained.network, backend, untrained.max_length)
    if runner is None:
        pytest.skip(reason=f"{backend} backend unavailable on this host")
    got = runner(enc.input_ids, enc.attention_mask)
    np.testing.assert_allclose(got, ref, atol=0.05 if backend.endswith("int8") else 1e-4)
    if backend == "onnx-int8":  # really quantised: not the fp32 graph under another name
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
