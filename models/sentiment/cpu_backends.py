"""CPU execution backends for the predictor, and the benchmark that picks between them.

Backends (all return softmax probabilities for ``(input_ids, attention_mask)``):

* ``fp32``  the torch model as trained.
* ``int8``  ``torch.ao.quantization.quantize_dynamic`` on every ``nn.Linear``: int8
  weights, activations quantised on the fly. No calibration data needed.
* ``onnx``  the fp32 graph exported with the TorchScript ONNX exporter and run by
  ONNX Runtime (graph optimisations + its own GEMM kernels), only when
  ``onnxruntime`` is importable and the export succeeds.

``pick_cpu_backend`` encodes the measurement recorded in docs/model.md
(``python -m models.sentiment.cpu_backends --model DIR --data valid.csv`` reproduces
it); callers override per host with an explicit ``backend``. The ONNX exporter needs the
``onnx`` package in addition to ``onnxruntime``.
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import os
import tempfile
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

Runner = Callable[[np.ndarray, np.ndarray], np.ndarray]

# Measured in docs/model.md on the 2-core dev box (1 thread, production model, valid.csv):
# fp32 34 texts/s; ONNX Runtime 54 texts/s with identical predictions; int8 114 texts/s but
# 4.7% of top-1 labels change and macro-F1 drops ~0.009. "auto" therefore picks ONNX (free
# speed, same numbers as evaluated) and falls back to fp32, never silently to int8: int8
# is an explicit opt-in (backend="int8") for throughput-bound hosts.


def pick_cpu_backend() -> str:
    """The ``auto`` choice on CPU. Hosts that want int8 pass ``backend="int8"`` explicitly
    (the services read that from their settings; ``models`` never reads the environment)."""
    if importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("onnx"):
        return "onnx"
    return "fp32"


def _torch_runner(net: nn.Module) -> Runner:
    def run(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            logits = net(torch.from_numpy(ids), torch.from_numpy(mask))
            return torch.softmax(logits.float(), dim=-1).numpy()

    return run


def quantize_int8(network: nn.Module) -> nn.Module:
    from torch.ao.quantization import quantize_dynamic

    net = copy.deepcopy(network).cpu().eval()
    return quantize_dynamic(net, {nn.Linear}, dtype=torch.qint8)


def export_onnx(network: nn.Module, path: str, max_length: int) -> None:
    import warnings

    net = copy.deepcopy(network).cpu().eval()
    ids = torch.ones(2, min(16, max_length), dtype=torch.long)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape constants: dynamic axes
        _export(net, ids, path)


def _export(net: nn.Module, ids: torch.Tensor, path: str) -> None:
    torch.onnx.export(
        net, (ids, torch.ones_like(ids)), path, dynamo=False, opset_version=17,
        input_names=["input_ids", "attention_mask"], output_names=["logits"],
        dynamic_axes={"input_ids": {0: "n", 1: "L"}, "attention_mask": {0: "n", 1: "L"},
                      "logits": {0: "n"}},
    )


def _onnx_runner(network: nn.Module, max_length: int) -> Runner | None:
    if importlib.util.find_spec("onnxruntime") is None:
        return None
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "model.onnx")
        try:
            export_onnx(network, path, max_length)
        except Exception as e:  # exporter deps missing/unsupported op: stay on torch
            print(f"onnx export failed ({type(e).__name__}: {e}); not using onnx")
            return None
        so = ort.SessionOptions()
        so.intra_op_num_threads = torch.get_num_threads()
        # No busy-waiting between ops: the CPU worker shares its host with the stream stages
        # and the stack (Kafka, ES, Redis), and spinning intra-op threads burn the cycles those
        # need (docs/inference.md, pipeline benchmark).
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])

    def run(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        logits = sess.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]
        e = np.exp(logits - logits.max(1, keepdims=True))
        return (e / e.sum(1, keepdims=True)).astype(np.float32)

    return run


def make_runner(network: nn.Module, backend: str, max_length: int) -> Runner | None:
    """A runner for ``backend`` or None when unavailable on this host."""
    if backend == "fp32":
        return _torch_runner(network)
    if backend == "int8":
        return _torch_runner(quantize_int8(network))
    if backend == "onnx":
        return _onnx_runner(network, max_length)
    raise ValueError(f"unknown backend {backend!r}: use auto, fp32, int8 or onnx")


def main() -> None:
    """Throughput (texts/s) and agreement with fp32 for each backend on this machine."""
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--model", help="checkpoint folder (default: untrained test model)")
    ap.add_argument("--data", help="CSV/JSONL with text,label to measure accuracy too")
    ap.add_argument("--label-map", default=None)
    ap.add_argument("--n", type=int, default=512, help="texts to time")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--backends", default="fp32,int8,onnx")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    from models.sentiment.predictor import SentimentModel

    sm = (SentimentModel.from_checkpoint(a.model, device="cpu", backend="fp32") if a.model
          else SentimentModel.untrained_for_tests())
    texts, y = None, None
    if a.data:
        from models.finetune.datasets import read_examples
        from models.text import LABELS

        exs = read_examples(a.data, label_map=a.label_map)
        texts = [e.text for e in exs]
        y = np.array([LABELS.index(e.label) for e in exs])
    else:
        rng = np.random.default_rng(0)
        words = "shares stock profit loss guidance beats misses cut raise outlook $AAPL".split()
        texts = [" ".join(rng.choice(words, rng.integers(5, 40))) for _ in range(a.n)]
    timed = texts[: a.n]
    ref = None
    print(f"threads={torch.get_num_threads()} n={len(timed)} batch={a.batch_size}")
    for b in a.backends.split(","):
        if sm.set_backend(b) != b:
            print(f"{b:>5}: unavailable")
            continue
        sm.predict_proba(timed[: a.batch_size], a.batch_size)  # warm-up
        t0 = time.perf_counter()
        probs, _ = sm.predict_proba(timed, a.batch_size)
        dt = time.perf_counter() - t0
        ref = probs if ref is None else ref
        line = (f"{b:>5}: {len(timed) / dt:8.1f} texts/s  {1000 * dt / len(timed):6.2f} ms/text"
                f"  top-1 agreement with fp32 {np.mean(probs.argmax(1) == ref.argmax(1)):.4f}")
        if y is not None:
            from models.finetune.metrics import classification_metrics

            full, _ = sm.predict_proba(texts, a.batch_size)
            m = classification_metrics(y, full)
            line += f"  accuracy {m['accuracy']:.4f} macro-F1 {m['macro_f1']:.4f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
