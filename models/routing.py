"""Which model scores a document: its language's, the fallback's, or none (pure functions).

Shared by the classify worker (``services.classify.router``) and ``yuqing classify``: a
document is routed by its language (:func:`models.lang.document_language`: the producer's
tag folded to its primary subtag, else the text's dominant script). A language with a model
serving goes to that model; any other to the fallback language's model when one is set and
serving, stamped with :func:`fallback_reason` so a borrowed score is never mistaken for a
native one; with no fallback (or the fallback's model not serving either) the document is
not scored at all and its reason (:func:`no_model_reason`) travels with it to the
dead-letter topic.
"""
from __future__ import annotations

from collections.abc import Collection, Sequence

NO_MODEL = "no_model"
"""The dead-letter reason of a document no model serves."""


def model_language(lang: str, serving: Collection[str], fallback: str | None) -> str | None:
    """The language of the model that scores a document of ``lang``: its own when serving,
    else ``fallback``'s when that is serving, else None (not scored)."""
    if lang in serving:
        return lang
    if fallback is not None and fallback in serving:
        return fallback
    return None


def group_by_model(langs: Sequence[str], serving: Collection[str],
                   fallback: str | None) -> dict[str | None, list[int]]:
    """Positions of ``langs`` per model language (key None: no model), in input order; the
    keys come in the order of their first document."""
    groups: dict[str | None, list[int]] = {}
    memo: dict[str, str | None] = {}
    for i, lang in enumerate(langs):
        m = memo.get(lang, "")
        if m == "":
            m = memo[lang] = model_language(lang, serving, fallback)
        groups.setdefault(m, []).append(i)
    return groups


def fallback_reason(lang: str, model_lang: str) -> str | None:
    """Why a model of another language scored a document of ``lang`` (None: its own did)."""
    if lang == model_lang:
        return None
    return f"no model for language {lang}: scored by the {model_lang} model"


def no_model_reason(lang: str, fallback: str | None) -> str:
    """The one-line error of a document nothing scores."""
    if fallback is None:
        return (f"no model for language {lang} and no fallback: add a {lang} model, or set "
                "a fallback language (YUQING_LANGUAGE_FALLBACK)")
    return (f"no model for language {lang}, and the fallback {fallback} model is not serving "
            "either: run `make model`")
