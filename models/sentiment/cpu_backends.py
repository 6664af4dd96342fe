"""CPU execution backends for the predictor.

Backends (each a :data:`CpuBackend`: softmax probabilities for ``(input_ids, attention_mask)``):

* ``fp32``  the torch model as trained.
* ``int8``  ``torch.ao.quantization.quantize_dynamic`` on every ``nn.Linear``: int8
  weights, activations quantised on the fly. No calibration data needed.
* ``onnx``  the fp32 graph exported with the TorchScript ONNX exporter and run by
  ONNX Runtime (graph optimisations + its own GEMM kernels), only when
  ``onnxruntime`` is importable and the export succeeds.
* ``onnx-int8``  that graph with every MatMul weight quantised to int8 by ONNX Runtime's
  dynamic quantiser (activations quantised per batch; no calibration data). Measured on the
  2-core box for bge-small-zh: ~2.8x the ``onnx`` backend, against ~2.2x for torch's
  ``int8`` (docs/chinese.md). It changes
  labels (a few percent), so it is never a host default: a model opts in through
  ``ModelConfig.cpu_backend`` once its held-out figures under it were measured
  (``python -m models.finetune.quant_check``), or a host passes it explicitly.
* ``onnx-int8-ffn``  the same, but only the feed-forward MatMuls (``intermediate.dense``,
  ``output.dense``: two thirds of a layer's weights) are int8; attention stays fp32. For
  the English MiniLM student the attention projections are where int8 costs quality
  (all-MatMul int8: SemEval headlines macro-F1 -0.012; FFN only: at most -0.006 on the real
  sets), and FFN-only is still ~1.5x the ``onnx`` backend (docs/model.md).

``pick_cpu_backend`` encodes the measurement recorded in docs/model.md (``python -m
bench.cpu_backends --model DIR --data valid.csv`` from a source checkout reproduces it);
callers override per host with an explicit ``backend``. The ONNX exporter needs the
``onnx`` package in addition to ``onnxruntime``.
"""
from __future__ import annotations

import copy
import importlib.util
import logging
import os
import tempfile
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

CpuBackend = Callable[[np.ndarray, np.ndarray], np.ndarray]
HiddenRun = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


class Backend:
    """A CPU backend: ``backend(ids, mask)`` -> probabilities; ``backend.hidden(ids, mask)``
    -> (probabilities, last hidden states) from the same single forward pass."""

    def __init__(self, both: Callable[[np.ndarray, np.ndarray, bool], tuple],
                 name: str | None = None):
        self._both = both
        self.name = name  # what actually runs, when it can differ from what was asked

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self._both(ids, mask, False)[0]

    def hidden(self, ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._both(ids, mask, True)

# Measured in docs/model.md on the 2-core dev box (1 thread, production model, valid.csv):
# fp32 34 texts/s; ONNX Runtime 54 texts/s with identical predictions; int8 114 texts/s but
# 4.7% of top-1 labels change and macro-F1 drops ~0.009. "auto" therefore picks ONNX (free
# speed, same numbers as evaluated) and falls back to fp32, never silently to int8: int8
# is an explicit opt-in (backend="int8") for throughput-bound hosts.


BACKENDS = ("fp32", "int8", "onnx", "onnx-int8", "onnx-int8-ffn")


def onnx_available() -> bool:
    return bool(importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("onnx"))


def pick_cpu_backend(model_choice: str | None = None) -> str:
    """The ``auto`` choice on CPU: the model's own measured choice (``ModelConfig.cpu_backend``,
    written only after its held-out figures under that backend were checked) when this host
    can run it, else ONNX Runtime fp32, else torch fp32. Hosts that want int8 for a model
    that did not opt in pass ``backend="int8"``/``"onnx-int8"`` explicitly (the services read
    that from their settings; ``models`` never reads the environment)."""
    if model_choice in ("onnx", "onnx-int8", "onnx-int8-ffn"):
        return model_choice if onnx_available() else "fp32"
    if model_choice in ("fp32", "int8"):
        return model_choice
    return "onnx" if onnx_available() else "fp32"


def _torch_backend(net: nn.Module) -> Backend:
    def run(ids: np.ndarray, mask: np.ndarray, hidden: bool) -> tuple:
        with torch.inference_mode():
            logits, h = net.forward_with_hidden(torch.from_numpy(ids), torch.from_numpy(mask))
            probs = torch.softmax(logits.float(), dim=-1).numpy()
            return probs, (h.float().numpy() if hidden else None)

    return Backend(run)


def quantize_int8(network: nn.Module) -> nn.Module:
    from torch.ao.quantization import quantize_dynamic

    net = copy.deepcopy(network).cpu().eval()
    return quantize_dynamic(net, {nn.Linear}, dtype=torch.qint8)


def export_onnx(network: nn.Module, path: str, max_length: int) -> None:
    import warnings

    # A CPU network is traced in place, without gradients: a copy of it and the autograd
    # graph of the trace were ~110 MB of the worker's peak RSS (docs/inference.md); tracing
    # only reads the weights.
    on_cpu = all(p.device.type == "cpu" for p in network.parameters())
    net = network if on_cpu else copy.deepcopy(network).cpu()
    ids = torch.ones(2, min(16, max_length), dtype=torch.long)
    was_training = net.training
    net.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings about shape constants: dynamic axes
            _export(net, ids, path)
    finally:
        net.train(was_training)


def _export(net: nn.Module, ids: torch.Tensor, path: str) -> None:
    from models.sentiment.network import WithHidden

    torch.onnx.export(
        WithHidden(net), (ids, torch.ones_like(ids)), path, dynamo=False, opset_version=17,
        input_names=["input_ids", "attention_mask"], output_names=["logits", "hidden"],
        dynamic_axes={"input_ids": {0: "n", 1: "L"}, "attention_mask": {0: "n", 1: "L"},
                      "logits": {0: "n"}, "hidden": {0: "n", 1: "L"}},
    )


class _QuantiserHint(logging.Filter):
    """Drops the pre-processing hint ONNX Runtime's quantiser logs through the root logger
    at WARNING on every call; every other record passes (a filter, not a level change, so
    concurrent loads on other threads lose nothing)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "onnxruntime" not in record.pathname or "quantization" not in record.pathname \
            or record.levelno > logging.WARNING


_HINT_FILTER = _QuantiserHint()


def ffn_matmul(node_name: str) -> bool:
    """A feed-forward MatMul of a BERT-style layer, by the exporter's node name
    (``/encoder/encoder/layer.N/intermediate/dense/MatMul``, ``.../output/dense/MatMul``)."""
    return "/intermediate/dense/" in node_name or (
        "/output/dense/" in node_name and "/attention/" not in node_name)


def quantize_onnx_int8(src: str, dst: str, ffn_only: bool = False) -> None:
    """int8 weights for every MatMul (per output channel: one scale per column keeps the
    small attention matrices as faithful as the large ones), activations per batch; with
    ``ffn_only`` for the feed-forward MatMuls only (ValueError when the graph has none)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    if _HINT_FILTER not in root.filters:
        root.addFilter(_HINT_FILTER)
    exclude: list[str] = []
    if ffn_only:
        import onnx

        names = [n.name for n in onnx.load(src, load_external_data=False).graph.node
                 if n.op_type == "MatMul"]
        exclude = [n for n in names if not ffn_matmul(n)]
        if len(exclude) == len(names):
            raise ValueError("no feed-forward MatMul in the graph (not a BERT-style encoder)")
    quantize_dynamic(src, dst, weight_type=QuantType.QInt8, per_channel=True,
                     op_types_to_quantize=["MatMul"], nodes_to_exclude=exclude)


def _onnx_backend(network: nn.Module, max_length: int, int8: bool = False,
                  ffn_only: bool = False) -> Backend | None:
    if importlib.util.find_spec("onnxruntime") is None:
        return None
    import onnxruntime as ort

    name = ("onnx-int8-ffn" if ffn_only else "onnx-int8") if int8 else "onnx"
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "model.onnx")
        try:
            export_onnx(network, path, max_length)
        except Exception as e:  # exporter deps missing/unsupported op: stay on torch
            print(f"{name} export failed ({type(e).__name__}: {e}); not using {name}")
            return None
        if int8:
            qpath = os.path.join(d, "model-int8.onnx")
            try:
                quantize_onnx_int8(path, qpath, ffn_only=ffn_only)
                path = qpath
            except Exception as e:  # the fp32 graph is still there: serve it, not torch
                print(f"{name} quantisation failed ({type(e).__name__}: {e}); serving onnx")
                name = "onnx"
        so = ort.SessionOptions()
        so.intra_op_num_threads = torch.get_num_threads()
        # No busy-waiting between ops: the CPU worker shares its host with the stream stages
        # and the stack (Kafka, ES, Redis), and spinning intra-op threads burn the cycles those
        # need (docs/inference.md, pipeline benchmark).
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])

    def run(ids: np.ndarray, mask: np.ndarray, hidden: bool) -> tuple:
        outs = sess.run(["logits", "hidden"] if hidden else ["logits"],
                        {"input_ids": ids, "attention_mask": mask})
        logits = outs[0]
        e = np.exp(logits - logits.max(1, keepdims=True))
        return (e / e.sum(1, keepdims=True)).astype(np.float32), (outs[1] if hidden else None)

    return Backend(run, name)


def build_cpu_backend(network: nn.Module, backend: str, max_length: int) -> Backend | None:
    """``backend`` built for ``network``, or None when this host cannot run it (the
    predictor then stays on fp32 rather than failing)."""
    if backend == "fp32":
        return _torch_backend(network)
    if backend == "int8":
        return _torch_backend(quantize_int8(network))
    if backend == "onnx":
        return _onnx_backend(network, max_length)
    if backend == "onnx-int8":
        return _onnx_backend(network, max_length, int8=True)
    if backend == "onnx-int8-ffn":
        return _onnx_backend(network, max_length, int8=True, ffn_only=True)
    raise ValueError(f"unknown backend {backend!r}: use auto, {', '.join(BACKENDS)}")
