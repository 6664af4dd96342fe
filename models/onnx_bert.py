"""Rebuild a ``transformers`` BertModel from a BERT encoder exported to ONNX, and prove it.

Why: the only offline copy of BAAI bge-small-zh-v1.5 is an ONNX graph inside a Maven jar
(see :mod:`models.encoders`), while training, LoRA, the entity head and the ship format all
need a PyTorch BertModel. The graph is the legacy ``torch.onnx`` export of ``BertModel``:

* embeddings, biases and LayerNorms keep their state-dict names (``encoder.layer.N.…``);
* the 6 weight matrices per layer are anonymous ``onnx::MatMul_*`` initializers, stored
  transposed (``[in, out]``, ``y = x @ W + b``).

Each anonymous matrix is mapped by walking the graph, never by position: a MatMul reading
an anonymous initializer feeds an Add whose other input is a *named* bias
(``….query.bias``), and the matrix is that Linear's weight, transposed back. The dims
(hidden, layers, heads, FFN width, vocab, positions, LayerNorm eps) are read from the graph
too. :func:`build_bert_folder` then runs the rebuilt model and onnxruntime on the same
probe texts and refuses to write the folder unless the last hidden states agree within
``tol`` (max abs), so a wrong mapping can never reach the encoder cache.

The graph has no pooler (its only output is ``last_hidden_state``); yuqing pools the hidden
states itself. The folder's ``pooler.dense`` is written as zeros so that every load builds
the same weights (a missing pooler would be re-initialised at random on each load, which
breaks the ship format's base delta) — it is unused, and says so in ``conversion.json``.

onnx and onnxruntime come from the ``cpu-opt`` extra; they are imported only here.
"""
from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class ConversionError(RuntimeError):
    """The ONNX graph is not a BERT encoder this converter understands, or the rebuilt
    model does not reproduce it; the message says which."""


PROBES_ZH: tuple[str, ...] = (
    "贵州茅台三季度净利润同比增长15.8%，超出市场预期",
    "某银行因违规放贷被银保监会罚款2300万元，股价盘中跌超5%",
    "公司公告：控股股东拟减持不超过2%股份，质押比例已达87%",
    "楼主说得对，这票明天肯定涨停，满仓干！！！",
    "债券逾期兑付，评级机构将其主体信用评级下调至BB，展望负面",
    "腾讯控股(00700.HK) Q2 revenue beat estimates; 港股科技板块集体走强 $TCEHY",
)
"""Probe texts for the conversion check: news and forum style, digits, full-width
punctuation, and one mixed Chinese/English line with a ticker (different lengths, so the
batch also exercises padding and the attention mask)."""

_LAYER_RE = re.compile(r"^encoder\.layer\.(\d+)\.")


@dataclass
class OnnxBert:
    """What the graph holds: a BertConfig's fields and the BertModel state dict (numpy)."""

    config: dict
    state: dict[str, np.ndarray]
    output: str  # name of the graph output compared against (last_hidden_state)


def _onnx():
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as e:  # pragma: no cover - depends on the installed extras
        raise ConversionError("the onnx package is needed to convert the encoder: "
                              "`pip install onnx onnxruntime` (yuqing[cpu-opt])") from e
    return onnx, numpy_helper


def _constants(graph, numpy_helper) -> dict[str, np.ndarray]:
    """Values of Constant nodes and initializers, by output name."""
    out = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    out[n.output[0]] = numpy_helper.to_array(a.t)
    return out


def _map_matmul_weights(graph, inits: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``{linear.weight name: [out, in] matrix}`` for every anonymous MatMul weight."""
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    mapped: dict[str, np.ndarray] = {}
    for n in graph.node:
        if n.op_type != "MatMul":
            continue
        anon = [i for i in n.input if i in inits and i.startswith("onnx::")]
        if not anon:
            continue  # activations x activations (attention scores)
        adds = [c for c in consumers.get(n.output[0], []) if c.op_type == "Add"]
        biases = [i for a in adds for i in a.input if i in inits and i.endswith(".bias")]
        if len(biases) != 1:
            raise ConversionError(f"MatMul {n.name or n.output[0]} (weight {anon[0]}) does not "
                                  f"feed exactly one named bias Add (found {biases}); not a "
                                  "BERT export this converter knows")
        name = biases[0][: -len(".bias")] + ".weight"
        if name in mapped:
            raise ConversionError(f"two MatMul weights map to {name}")
        w = inits[anon[0]]
        if w.ndim != 2 or w.shape[1] != inits[biases[0]].shape[0]:
            raise ConversionError(f"{anon[0]} {list(w.shape)} does not fit bias {biases[0]} "
                                  f"{list(inits[biases[0]].shape)}")
        mapped[name] = np.ascontiguousarray(w.T)
    return mapped


def _heads(graph, consts: dict[str, np.ndarray], hidden: int) -> int:
    """Attention heads from the reshape of layer 0's query to [batch, seq, heads, head_dim]."""
    producer = {o: n for n in graph.node for o in n.output}
    query_add = next((n for n in graph.node if n.op_type == "Add" and any(
        i.endswith("encoder.layer.0.attention.self.query.bias") for i in n.input)), None)
    if query_add is None:
        raise ConversionError("no layer-0 query bias Add in the graph")
    for n in graph.node:
        if n.op_type != "Reshape" or n.input[0] != query_add.output[0]:
            continue
        shape = consts.get(n.input[1])
        if shape is None and n.input[1] in producer and producer[n.input[1]].op_type == "Concat":
            parts = [consts.get(i) for i in producer[n.input[1]].input]
            tail = [int(np.asarray(p).reshape(-1)[0]) for p in parts[-2:] if p is not None]
            shape = np.array(tail) if len(tail) == 2 else None
        if shape is not None and len(shape) >= 2:
            h, d = int(shape[-2]), int(shape[-1])
            if h == -1 and d > 0 and hidden % d == 0:
                return hidden // d
            if h > 0 and (d == -1 or h * d == hidden):
                return h
    raise ConversionError("cannot read the number of attention heads from the graph")


def _layer_norm_eps(graph, consts: dict[str, np.ndarray]) -> float:
    """The epsilon added to the variance in the embeddings' decomposed LayerNorm."""
    for n in graph.node:
        if n.op_type == "Add" and "LayerNorm" in n.name and "ReduceMean" in n.input[0]:
            v = consts.get(n.input[1])
            if v is not None and v.size == 1:
                return float(f"{float(v.reshape(-1)[0]):.6g}")  # 1e-12, not its fp32 twin
    return 1e-12  # BERT's default; the probe comparison checks it anyway


def read_onnx_bert(onnx_path: str | Path) -> OnnxBert:
    """Read the BertModel config and state dict out of a BERT encoder ONNX file."""
    onnx, numpy_helper = _onnx()
    try:
        model = onnx.load(str(onnx_path))
    except Exception as e:  # noqa: BLE001 - protobuf raises several unrelated types
        raise ConversionError(f"{onnx_path} is not a readable ONNX model ({e})") from e
    g = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    consts = _constants(g, numpy_helper)
    inputs = {i.name for i in g.input}
    if not {"input_ids", "attention_mask"} <= inputs:
        raise ConversionError(f"graph inputs {sorted(inputs)} lack input_ids/attention_mask")
    outputs = [o.name for o in g.output]
    if "last_hidden_state" not in outputs:
        raise ConversionError(f"graph outputs {outputs} have no last_hidden_state")
    try:
        words = inits["embeddings.word_embeddings.weight"]
        positions = inits["embeddings.position_embeddings.weight"]
        types = inits["embeddings.token_type_embeddings.weight"]
    except KeyError as e:
        raise ConversionError(f"graph has no {e.args[0]} initializer; not a BERT export") from e
    state = {k: v for k, v in inits.items() if not k.startswith("onnx::")}
    state.update(_map_matmul_weights(g, inits))
    layers = sorted({int(m.group(1)) for k in state if (m := _LAYER_RE.match(k))})
    if not layers or layers != list(range(len(layers))):
        raise ConversionError(f"encoder layers {layers} are not 0..N-1")
    hidden = int(words.shape[1])
    ffn = state.get("encoder.layer.0.intermediate.dense.bias")
    if ffn is None:
        raise ConversionError("graph has no encoder.layer.0.intermediate.dense.bias")
    act = "gelu" if any(n.op_type == "Erf" for n in g.node) else None
    if act is None:
        raise ConversionError("no Erf in the graph: the activation is not BERT's exact gelu")
    config = dict(
        model_type="bert", architectures=["BertModel"], vocab_size=int(words.shape[0]),
        hidden_size=hidden, num_hidden_layers=len(layers),
        num_attention_heads=_heads(g, consts, hidden), intermediate_size=int(ffn.shape[0]),
        hidden_act=act, max_position_embeddings=int(positions.shape[0]),
        type_vocab_size=int(types.shape[0]), layer_norm_eps=_layer_norm_eps(g, consts),
        position_embedding_type="absolute", hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1, initializer_range=0.02, pad_token_id=0,
    )
    return OnnxBert(config, state, "last_hidden_state")


def to_bert_model(ob: OnnxBert):
    """A BertModel (eval mode) holding exactly the graph's weights; zeros for the pooler."""
    import torch
    from transformers import BertConfig, BertModel

    model = BertModel(BertConfig(**ob.config)).eval()
    expected = model.state_dict()
    state = {}
    for name, ref in expected.items():
        if name.startswith("pooler."):
            state[name] = torch.zeros_like(ref)
        elif name in ob.state:
            state[name] = torch.from_numpy(np.array(ob.state[name], dtype=np.float32))
        elif name.endswith(("position_ids", "token_type_ids")):
            state[name] = ref  # buffers, not weights
        else:
            raise ConversionError(f"the graph lacks {name}")
        if tuple(state[name].shape) != tuple(ref.shape):
            raise ConversionError(f"{name}: graph shape {list(state[name].shape)} != "
                                  f"BertModel's {list(ref.shape)}")
    model.load_state_dict(state, strict=True)
    return model


def onnx_hidden_states(onnx_path: str | Path, input_ids: np.ndarray,
                       attention_mask: np.ndarray) -> np.ndarray:
    """onnxruntime's ``last_hidden_state`` for a batch (one CPU thread: a small check)."""
    try:
        import onnxruntime as ort
    except ImportError as e:  # pragma: no cover - depends on the installed extras
        raise ConversionError("onnxruntime is needed to check the conversion: "
                              "`pip install onnxruntime` (yuqing[cpu-opt])") from e
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    feeds = {"input_ids": input_ids.astype(np.int64),
             "attention_mask": attention_mask.astype(np.int64)}
    if "token_type_ids" in {i.name for i in sess.get_inputs()}:
        feeds["token_type_ids"] = np.zeros_like(feeds["input_ids"])
    return sess.run(["last_hidden_state"], feeds)[0]


def max_abs_difference(model, onnx_path: str | Path, input_ids: np.ndarray,
                       attention_mask: np.ndarray) -> float:
    """Max |torch - onnxruntime| over the real (unpadded) positions of the batch."""
    import torch

    with torch.no_grad():
        ours = model(input_ids=torch.from_numpy(input_ids.astype(np.int64)),
                     attention_mask=torch.from_numpy(attention_mask.astype(np.int64))
                     ).last_hidden_state.numpy()
    ref = onnx_hidden_states(onnx_path, input_ids, attention_mask)
    if ours.shape != ref.shape:
        raise ConversionError(f"hidden states shape {ours.shape} != onnxruntime's {ref.shape}")
    real = attention_mask.astype(bool)
    return float(np.abs(ours - ref)[real].max())


def fix_tokenizer(tokenizer_json: dict) -> tuple[dict, list[str]]:
    """The tokenizer.json to ship and the changes made to it, with the reason for each.

    An uncased vocabulary (no upper-case ASCII token at all, as bert-base-chinese's) behind
    a normaliser with ``lowercase: false`` turns every capitalised English word, ticker and
    upper-cased cashtag (``models.text`` upper-cases them) into ``[UNK]``; the original
    model lower-cases (``do_lower_case``), so the normaliser is switched to lowercase.
    """
    tok = json.loads(json.dumps(tokenizer_json))
    changes = []
    vocab = tok.get("model", {}).get("vocab", {})
    norm = tok.get("normalizer") or {}
    # special tokens ([CLS], <S>) are matched whole, before normalisation: not words
    words = (t for t in vocab if t.isascii() and not re.fullmatch(r"\[\w+\]|<\w+>", t))
    uncased = bool(vocab) and not any(re.search(r"[A-Z]", t) for t in words)
    if norm.get("type") == "BertNormalizer" and not norm.get("lowercase") and uncased:
        norm["lowercase"] = True
        changes.append("normalizer.lowercase false -> true (the vocabulary is uncased)")
    return tok, changes


def build_bert_folder(onnx_path: str | Path, tokenizer_json: str | Path, out: str | Path,
                      probes: Sequence[str] = PROBES_ZH, tol: float = 1e-4,
                      provenance: dict | None = None) -> float:
    """Write ``out`` (config.json, model.safetensors, tokenizer.json, conversion.json) and
    return the measured max abs difference; raise :class:`ConversionError`, writing
    nothing, when the rebuilt model does not reproduce the graph within ``tol``."""
    from tokenizers import Tokenizer

    from models.sentiment.tokenize import TextEncoder

    ob = read_onnx_bert(onnx_path)
    model = to_bert_model(ob)
    try:
        raw = json.loads(Path(tokenizer_json).read_text(encoding="utf-8"))
        tok, changes = fix_tokenizer(raw)
        Tokenizer.from_str(json.dumps(tok))
    except Exception as e:  # noqa: BLE001 - OSError, JSON errors and tokenizers' Exception
        raise ConversionError(f"{tokenizer_json} is not a usable tokenizer.json ({e})") from e
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok_path = out / "tokenizer.json"
    tok_path.write_text(json.dumps(tok, ensure_ascii=False), encoding="utf-8")
    enc = TextEncoder(tok_path, max_length=min(128, ob.config["max_position_embeddings"]))
    batch = enc.encode(list(probes))
    if int(batch.input_ids.max()) >= ob.config["vocab_size"]:
        tok_path.unlink()
        raise ConversionError("the tokenizer's ids exceed the graph's vocabulary "
                              f"({int(batch.input_ids.max())} >= {ob.config['vocab_size']})")
    diff = max_abs_difference(model, onnx_path, batch.input_ids, batch.attention_mask)
    if not diff <= tol:  # also catches NaN
        tok_path.unlink()
        raise ConversionError(f"the rebuilt BertModel differs from onnxruntime by {diff:.2e} "
                              f"(> {tol:.0e}) on {len(probes)} probe texts")
    model.save_pretrained(str(out))
    (out / "model.safetensors").chmod(0o644)  # safetensors writes 0600
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length":
        ob.config["max_position_embeddings"], "cls_token": "[CLS]", "sep_token": "[SEP]",
        "pad_token": "[PAD]", "unk_token": "[UNK]", "mask_token": "[MASK]"}, indent=2))
    (out / "conversion.json").write_text(json.dumps({
        **(provenance or {}), "graph_output": ob.output, "probe_texts": len(probes),
        "probe_tokens": int(batch.attention_mask.sum()), "max_abs_diff": diff,
        "tolerance": tol, "tokenizer_changes": changes,
        "pooler": "not in the ONNX graph: zeros, unused (yuqing pools last_hidden_state)",
    }, ensure_ascii=False, indent=2) + "\n")
    return diff
