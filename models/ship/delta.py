"""Encoder tensors as a delta over the base, and back.

Why a delta and fp16: full fine-tuning leaves the word embeddings (half the parameters) and
the unused pooler exactly as in the base, so they cost nothing; the ~10.8M tensors training
moved are stored as (finetuned - base) in fp16. The rounding error of an fp16 difference is
~1e-3 of the (small) difference itself, far below what moves a prediction, whereas fp16
*weights* would round the weights themselves. Rebuilding adds the fp16 difference to the fp32
base in fp32: deterministic, so every machine rebuilds the same weights from the same files.

Keys of the safetensors file: ``delta.<name>`` (fp16 difference) or ``full.<name>`` (a tensor
the base lacks or has in another shape/dtype, stored as it is). Names the manifest lists but
the file does not hold are taken unchanged from the base.
"""
from __future__ import annotations

import torch

from models.ship.manifest import ShipError

DELTA_PREFIX = "delta."
FULL_PREFIX = "full."


def make_delta(source: dict[str, torch.Tensor],
               base: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors to store, summary) for the encoder state ``source`` over ``base``."""
    out: dict[str, torch.Tensor] = {}
    unchanged, full = [], []
    for name, t in source.items():
        b = base.get(name)
        comparable = b is not None and b.shape == t.shape and b.dtype == t.dtype
        if comparable and torch.equal(b, t):
            unchanged.append(name)
            continue
        if comparable and t.is_floating_point():
            d = (t.float() - b.float()).to(torch.float16)
            if bool(torch.isfinite(d).all()):
                out[DELTA_PREFIX + name] = d.contiguous()
                continue
        out[FULL_PREFIX + name] = t.detach().clone().contiguous()
        full.append(name)
    summary = {
        "keys": sorted(source),
        "unchanged": len(unchanged),
        "delta": len(source) - len(unchanged) - len(full),
        "full": sorted(full),
        "stored_params": sum(t.numel() for t in out.values()),
        "unchanged_params": sum(source[n].numel() for n in unchanged),
        "dtype": "float16",
    }
    return out, summary


def rebuild(stored: dict[str, torch.Tensor], keys: list[str],
            base: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The encoder state dict: base + delta, full tensors as stored, the rest from the base."""
    known = {DELTA_PREFIX + k for k in keys} | {FULL_PREFIX + k for k in keys}
    stray = sorted(set(stored) - known)
    if stray:
        raise ShipError(f"the delta holds tensors the manifest does not list ({', '.join(stray[:3])}"
                        "...): the delta and the manifest come from different packs")
    out: dict[str, torch.Tensor] = {}
    for name in keys:
        if FULL_PREFIX + name in stored:
            out[name] = stored[FULL_PREFIX + name].contiguous()
            continue
        b = base.get(name)
        if b is None:
            raise ShipError(f"the base encoder has no tensor {name}: the shipped model was packed "
                            "against another base")
        d = stored.get(DELTA_PREFIX + name)
        if d is None:
            out[name] = b.contiguous()
        elif d.shape != b.shape:
            raise ShipError(f"delta {name} has shape {tuple(d.shape)}, the base {tuple(b.shape)}: "
                            "the shipped model was packed against another base")
        else:
            out[name] = (b.float() + d.float()).to(b.dtype).contiguous()
    return out
