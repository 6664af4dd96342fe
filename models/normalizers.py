"""Which normaliser (and its version) a model of a language trains and serves with.

One place for the choice, so the tokenizer, the entity head's span mapping, the serving
encoder and training all agree; importing it pulls in both languages' modules, which import
nothing of each other's except ``models.text``.
"""
from __future__ import annotations

from collections.abc import Callable

from models.text import NORMALIZATION_VERSION, normalize_text
from models.text_zh import ZH_NORMALIZATION_VERSION, normalize_zh


def normalizer_for(language: str) -> Callable[[str], str]:
    """``en`` (and any language without its own): :func:`models.text.normalize_text`;
    ``zh``: :func:`models.text_zh.normalize_zh`."""
    return normalize_zh if language == "zh" else normalize_text


def normalization_version(language: str) -> str:
    return ZH_NORMALIZATION_VERSION if language == "zh" else NORMALIZATION_VERSION
