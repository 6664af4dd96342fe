"""Per-entity sentiment from an (entity, text window) pair model, where one pass cannot tell.

Two kinds, named in the saved config (``kind``):

* ``subject`` (Chinese): which listed entity a negative document is about;
* ``sentiment`` (English): each entity's own three-way label, for texts that name two or
  more entities (with one, the one-pass head and the document agree in practice; see
  ``models.finetune.entity_pair_en`` for the figures).

The one-pass entity head (``entities.py``) pools each entity's mention tokens from the
document's own forward pass, so every entity of a text reads the same contextual states; on
Chinese news naming several companies (a failing lending platform beside its custodian bank,
its auditor, a regulator) it calls the bystanders negative too (on the finnsp dev split 41%
of the non-subject entities of negative items). A pair input, ``[CLS] entity [SEP] window of
the text around its first mention [SEP]``, lets attention condition on the entity, and the
window reaches mentions past the document's ``max_length``.

A ``subject`` pair costs one extra forward pass per entity, so it runs only where it can
change a label: an entity's negative score is ``head_neg ** a * (doc_neg * key) ** (1 - a)``
(``key``: the pair model's probability that the entity is the negative's subject), which
cannot pass the threshold when ``head_neg ** a * doc_neg ** (1 - a)`` does not; those entities (all of a
non-negative text's, typically) are decided not negative with no pair pass. ``a`` and the
threshold are chosen on the dev split and saved with the weights. A ``sentiment`` pair runs
for every linked entity of a text with at least ``min_entities`` of them and its
probabilities are mixed with the head's geometrically (weight ``mix`` on the head's),
renormalised. Either way the passes of many documents (a worker's micro-batch) run as one
length-sorted call (``score_documents``).

The pair model is a fine-tuned copy of the document model's own encoder; what ships is the
difference, small: each linear weight's difference as its best low-rank factors (SVD; rank
64 for Chinese, ~5 MB, rank 80 for English, 7.1 MB) and the few other changed tensors whole,
fp16 (``entity_pair.safetensors``), merged into a copy of the encoder at load time (the
parameters it leaves alone, the word embeddings, shared rather than copied).
"""
from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer

PAIR_CONFIG_FILE = "entity_pair.json"
PAIR_WEIGHTS_FILE = "entity_pair.safetensors"
PAIR_KINDS = {"subject": 2, "sentiment": 3}  # kind -> classes of its head


@dataclass
class PairConfig:
    """Saved as ``entity_pair.json`` beside the weights: all serving needs to rebuild it."""

    max_length: int = 200  # tokens of the pair input
    window: int = 180  # characters of text from ``before`` ahead of the first mention
    before: int = 40
    rank: int = 64  # of each stored linear-weight difference (models.finetune.entity_pair)
    mix: float = 0.5  # a: weight of the entity head's negative probability (geometric)
    threshold: float = 0.35  # on the mixed score
    base_version: str = ""  # the document model whose encoder the update applies to
    kind: str = "subject"  # subject: 2-way "is the negative about it"; sentiment: 3-way label
    min_entities: int = 2  # sentiment: texts naming fewer linked entities keep the head's
    markers: bool = False  # in the window: the entity's mentions in « », the others' in 〈 〉
    training: dict = field(default_factory=dict)

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / PAIR_CONFIG_FILE
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, folder: str | Path) -> PairConfig:
        raw = json.loads((Path(folder) / PAIR_CONFIG_FILE).read_text())
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def pair_window(text: str, start: int, cfg: PairConfig,
                normalize: Callable[[str], str],
                marks: tuple[Sequence[tuple[int, int]], Sequence[tuple[int, int]]] = ((), ())
                ) -> str:
    """The text the pair model reads for a mention starting at ``start`` (shared by training
    and serving): ``window`` characters from ``before`` ahead of it, normalised. With
    ``cfg.markers``, ``marks`` = (the entity's mention spans, the other linked entities'):
    typed markers around each mention inside the window, so the model sees which names are
    this entity and which are the others (a custodian bank beside a failing platform)."""
    s = max(0, start - cfg.before)
    e = s + cfg.window
    if not cfg.markers:
        return normalize(text[s:e])
    cuts = sorted([(a, b, "«", "»") for a, b in marks[0] if s <= a and b <= e]
                  + [(a, b, "〈", "〉") for a, b in marks[1] if s <= a and b <= e])
    out, at = [], s
    for a, b, left, right in cuts:
        if a < at:  # overlaps a mention already marked: leave it unmarked
            continue
        out += [text[at:a], left, text[a:b], right]
        at = b
    out.append(text[at:e])
    return normalize("".join(out))


def mixed_negative(head_neg: np.ndarray, doc_neg: np.ndarray, key: np.ndarray,
                   mix: float) -> np.ndarray:
    """The entity's negative score: geometric mix of the head's negative probability and the
    document's negative probability times the pair model's "subject" probability."""
    return head_neg ** mix * (doc_neg * key) ** (1.0 - mix)


def mix_probs(head: np.ndarray, pair: np.ndarray, mix: float) -> np.ndarray:
    """``sentiment`` kind: head ** mix * pair ** (1 - mix), renormalised per row."""
    m = np.clip(head, 1e-6, 1.0) ** mix * np.clip(pair, 1e-6, 1.0) ** (1.0 - mix)
    return (m / m.sum(-1, keepdims=True)).astype(np.float32)


def retrain_command(folder: str | Path) -> str:
    """What rebuilds a model's pair file, by the model's language."""
    try:
        lang = json.loads((Path(folder) / "yuqing_model.json").read_text()).get("language")
    except (OSError, ValueError):
        lang = None
    return "make model-pair-zh" if lang == "zh" else "make model-pair"


def could_pass(head_neg: np.ndarray, doc_neg: float, cfg: PairConfig) -> np.ndarray:
    """Entities whose score could pass the threshold with ``key`` = 1: only these need a
    pair pass (the bound is exact, so skipping the others changes no label)."""
    return mixed_negative(head_neg, np.float32(doc_neg), np.float32(1.0), cfg.mix) > cfg.threshold


def apply_pair(ent_probs: np.ndarray, doc_neg: float, key: np.ndarray, rows: np.ndarray,
               cfg: PairConfig, labels: Sequence[str]) -> np.ndarray:
    """Per-entity probabilities after the pair decision, for the entities in ``rows`` (the
    others keep theirs): negative = the mixed score mapped so that the threshold sits at 0.5
    (an entity's top label is negative exactly when the score passes the threshold), the
    rest shared as the head shared it."""
    neg = list(labels).index("negative")
    out = ent_probs.copy()
    if not len(rows):
        return out
    s = mixed_negative(ent_probs[rows, neg], np.float32(doc_neg), key, cfg.mix)
    negative = s > cfg.threshold  # the rule; the probabilities below follow it
    s = np.clip(s, 1e-6, 1 - 1e-6)
    t = min(max(cfg.threshold, 1e-6), 1 - 1e-6)
    p_neg = 1.0 / (1.0 + np.exp(-(np.log(s / (1 - s)) - np.log(t / (1 - t)))))
    rest = np.delete(out[rows], neg, axis=1).astype(np.float64)
    total = rest.sum(1, keepdims=True)
    rest = np.where(total > 0, rest / np.where(total > 0, total, 1.0), 1.0 / rest.shape[1])
    # Keep the top label the rule's: above 0.5 when negative; else below the larger of the
    # other two as well (p < q / (1 + q) for the larger share q).
    q = rest.max(1)
    p_neg = np.where(negative, np.maximum(p_neg, 0.5 + 1e-6),
                     np.minimum(p_neg, q / (1 + q) - 1e-6))
    new = np.insert(rest * (1 - p_neg)[:, None], neg, p_neg, axis=1)
    out[rows] = new.astype(out.dtype)
    return out


def merge_lora(encoder: torch.nn.Module, weights: dict[str, torch.Tensor],
               scale: float) -> torch.nn.Module:
    """A copy of ``encoder`` with ``W += B @ A * scale`` for every ``<module>.lora_A/B``
    and ``p += d`` for every ``<parameter>.delta`` (small tensors stored whole). Parameters
    the update leaves alone (the frozen word embeddings: half of MiniLM) are shared with
    ``encoder``, not copied, when it is fp32: ~45 MB less per worker, and nothing writes them."""
    names = {k.rsplit(".", 1)[0] for k in weights if k.endswith((".lora_A", ".lora_B"))}
    changed = {f"{n}.weight" for n in names} | {k.removesuffix(".delta") for k in weights
                                                 if k.endswith(".delta")}
    shared = {id(p): p for n, p in encoder.named_parameters()
              if n not in changed and p.dtype == torch.float32}
    merged = copy.deepcopy(encoder, memo=shared).float().eval()
    modules = dict(merged.named_modules())
    params = dict(merged.named_parameters())
    with torch.no_grad():
        for name in sorted(names):
            if name not in modules:
                raise ValueError(f"{name} is not a module of the encoder")
            w = modules[name].weight
            a, b = (weights[f"{name}.lora_{x}"].to(device=w.device, dtype=torch.float32)
                    for x in "AB")
            w += (b @ a) * scale
        for key in sorted(k for k in weights if k.endswith(".delta")):
            name = key.removesuffix(".delta")
            if name not in params or params[name].shape != weights[key].shape:
                raise ValueError(f"{name} is not a parameter of the encoder of that shape")
            params[name] += weights[key].to(device=params[name].device, dtype=torch.float32)
    return merged


class EntityPairScorer:
    """The loaded pair model; its scoring is thread-safe (no state changes)."""

    def __init__(self, encoder: torch.nn.Module, head_w: torch.Tensor, head_b: torch.Tensor,
                 cfg: PairConfig, tokenizer_path: str | Path,
                 normalize: Callable[[str], str]):
        self.encoder = encoder.eval()
        self.head_w, self.head_b = head_w.float(), head_b.float()
        self.cfg = cfg
        self.normalize = normalize
        self.tokenizer_path = Path(tokenizer_path)
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=cfg.max_length)
        self.device = next(encoder.parameters()).device

    @classmethod
    def load(cls, folder: str | Path, doc_encoder: torch.nn.Module,
             normalize: Callable[[str], str]) -> EntityPairScorer | None:
        """None when the folder has no pair model; ValueError naming a corrupt file."""
        folder = Path(folder)
        wpath, cpath = folder / PAIR_WEIGHTS_FILE, folder / PAIR_CONFIG_FILE
        if not wpath.is_file() and not cpath.is_file():
            return None
        try:
            cfg = PairConfig.load(folder)
            sd = load_file(str(wpath))
            unknown = [k for k in sd if not k.startswith("head.")
                       and not k.endswith((".lora_A", ".lora_B", ".delta"))]
            if unknown:
                raise ValueError(f"unknown tensors {unknown[:3]}")
            if cfg.kind not in PAIR_KINDS:
                raise ValueError(f"kind {cfg.kind!r} is not one of {sorted(PAIR_KINDS)}")
            head_w, head_b = sd["head.weight"], sd["head.bias"]
            hidden, k = doc_encoder.config.hidden_size, PAIR_KINDS[cfg.kind]
            if tuple(head_w.shape) != (k, hidden) or tuple(head_b.shape) != (k,):
                raise ValueError(f"head is {tuple(head_w.shape)}, not ({k}, {hidden})")
            if not (0.0 <= float(cfg.mix) <= 1.0 and 0.0 < float(cfg.threshold) < 1.0):
                raise ValueError(f"mix {cfg.mix} / threshold {cfg.threshold} out of range")
            encoder = merge_lora(doc_encoder, sd, 1.0)
        except Exception as e:  # missing half, bad json, truncated safetensors, wrong shapes
            raise ValueError(f"{folder}'s entity pair model is unusable ({e}); "
                             f"retrain it ({retrain_command(folder)}) or repack the model") from e
        return cls(encoder, head_w, head_b, cfg, folder / "tokenizer.json", normalize)

    def probs(self, pairs: Sequence[tuple[str, str]], batch_size: int = 32) -> np.ndarray:
        """The head's probabilities [n, classes] for each (entity, window) pair."""
        out = np.zeros((len(pairs), self.head_w.shape[0]), dtype=np.float32)
        for s in range(0, len(pairs), batch_size):
            out[s : s + batch_size] = self._forward(pairs[s : s + batch_size])
        return out

    def key_probs(self, pairs: Sequence[tuple[str, str]], batch_size: int = 32) -> np.ndarray:
        """``subject`` kind: P(the entity is the negative's subject) for each pair."""
        return self.probs(pairs, batch_size)[:, 1]

    def tensors(self, pairs: Sequence[tuple[str, str]]
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(input_ids, token_type_ids, attention_mask) of a batch of pairs, padded."""
        encs = self.tokenizer.encode_batch([(e, w) for e, w in pairs])
        L = max(len(e.ids) for e in encs)
        ids = np.zeros((len(encs), L), dtype=np.int64)
        types = np.zeros_like(ids)
        mask = np.zeros_like(ids)
        for i, e in enumerate(encs):
            k = len(e.ids)
            ids[i, :k], types[i, :k], mask[i, :k] = e.ids, e.type_ids, 1
        return tuple(torch.from_numpy(a).to(self.device) for a in (ids, types, mask))

    @torch.inference_mode()
    def _forward(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        ids, types, mask = self.tensors(pairs)
        h = self.encoder(input_ids=ids, token_type_ids=types,
                         attention_mask=mask).last_hidden_state.float()
        m = mask.unsqueeze(-1).float()
        v = (h * m).sum(1) / m.sum(1).clamp(min=1.0)
        logits = v @ self.head_w.to(v.device).T + self.head_b.to(v.device)
        return torch.softmax(logits, -1).cpu().numpy()

    def pairs_of(self, text: str, spans: Sequence[Sequence[tuple[int, int]]],
                 rows: Sequence[int]) -> list[tuple[str, str]]:
        """(entity as written at its first mention, window around it) of entities ``rows``
        (``spans``: every linked entity's mentions, the others' marked too with markers)."""
        def marks(r: int) -> tuple:
            if not self.cfg.markers:  # the shipped models: no per-entity span lists built
                return ((), ())
            return spans[r], [x for j, sp in enumerate(spans) if j != r for x in sp]

        return [(text[spans[r][0][0]:spans[r][0][1]],
                 pair_window(text, spans[r][0][0], self.cfg, self.normalize, marks(r)))
                for r in rows]

    def score_document(self, text: str, spans: Sequence[Sequence[tuple[int, int]]],
                       doc_probs: np.ndarray, ent_probs: np.ndarray,
                       labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """One document's :meth:`score_documents`."""
        return self.score_documents([(text, spans, doc_probs, ent_probs)], labels)[0]

    def score_documents(self, docs: Sequence[tuple[str, Sequence[Sequence[tuple[int, int]]],
                                                   np.ndarray, np.ndarray]],
                        labels: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per document ``(text, spans, doc_probs, ent_probs)``: its per-entity probabilities
        with the pair decision applied, and the entities it decided. The pair passes of all
        the documents run as one length-sorted batched call (a worker's micro-batch at once,
        not a call per document).

        ``subject``: every entity with a mention is decided, a pass only for those whose
        label it can change (the others are not negative by the exact bound). ``sentiment``:
        every entity with a mention of a text naming ``min_entities`` or more."""
        neg = list(labels).index("negative")
        plans: list[tuple[np.ndarray, np.ndarray]] = []  # (decided rows, rows needing a pass)
        pairs: list[tuple[str, str]] = []
        for text, spans, doc_probs, ent_probs in docs:
            rows = np.flatnonzero([bool(x) for x in spans])
            if self.cfg.kind == "sentiment":
                # distinct entities, not mentions: the head already reads a lone entity well
                rows = rows if len(rows) >= self.cfg.min_entities else rows[:0]
                need = np.arange(len(rows))
            else:
                # key = 1 is the bound: where even it cannot pass, the entity is not negative
                need = np.flatnonzero(could_pass(ent_probs[rows, neg],
                                                 float(doc_probs[neg]), self.cfg))
            plans.append((rows, need))
            pairs += self.pairs_of(text, spans, rows[need].tolist())
        got = self._sorted_probs(pairs)
        out: list[tuple[np.ndarray, np.ndarray]] = []
        k = 0
        for (_, _, doc_probs, ent_probs), (rows, need) in zip(docs, plans, strict=True):
            mine, k = got[k : k + len(need)], k + len(need)
            if not len(rows):
                out.append((ent_probs, rows))
            elif self.cfg.kind == "sentiment":
                new = ent_probs.copy()
                new[rows] = mix_probs(ent_probs[rows], mine, self.cfg.mix)
                out.append((new, rows))
            else:
                key = np.ones(len(rows), dtype=np.float32)
                key[need] = mine[:, 1]
                out.append((apply_pair(ent_probs, float(doc_probs[neg]), key, rows, self.cfg,
                                       labels), rows))
        return out

    def _sorted_probs(self, pairs: list[tuple[str, str]], batch_size: int = 64) -> np.ndarray:
        """:meth:`probs` over length-sorted batches (little padding), in input order."""
        if not pairs:
            return np.zeros((0, self.head_w.shape[0]), dtype=np.float32)
        order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
        got = self.probs([pairs[i] for i in order], batch_size=batch_size)
        out = np.empty_like(got)
        out[order] = got
        return out
