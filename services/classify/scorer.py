"""The seam between the classify agent and whatever scores its texts.

The agent depends only on :class:`Scorer`: today it is the in-process
:class:`~services.classify.worker.InferenceWorker` (no serialisation, no extra hop, the
model shares the agent's process and its backpressure is a plain awaitable). When several
agents should share one accelerator, a remote scorer implements the same three methods
over HTTP or a Kafka request topic; the agent does not change.

Per-item results are values, not exceptions: one bad text becomes a :class:`ScoreError` in
its slot (the agent dead-letters just that message) and never fails its neighbours.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from models.routing import fallback_reason
from services.core.schemas import Sentiment

EntitySpans = list[list[tuple[int, int]]]
"""For one text: per entity, the character spans ``[start, end)`` of its mentions."""


@dataclass(frozen=True, slots=True)
class EntityScore:
    """One entity's prediction from the model's entity head (``from_entity``), or the
    document's where the head could not read it (all its mentions past truncation)."""

    label: str
    probabilities: dict[str, float]
    from_entity: bool


@dataclass(frozen=True, slots=True)
class Scored:
    """A prediction, stamped with the model version that produced it. ``entities``: one per
    entry of the spans submitted with the text, when the model has an entity head (else
    empty: every entity takes the document's sentiment)."""

    label: str
    probabilities: dict[str, float]
    model_version: str
    truncated: bool = False
    entities: tuple[EntityScore, ...] = ()
    model_language: str = "en"  # the language of the model that produced it

    def to_sentiment(self, lang: str | None = None) -> Sentiment:
        """The message field; ``lang``: the language the document was routed by, so a score
        from another language's model (the fallback) carries its reason."""
        return Sentiment(label=self.label, probabilities=self.probabilities,  # type: ignore[arg-type]
                         model_version=self.model_version, truncated=self.truncated,
                         model_language=self.model_language,
                         fallback=None if lang is None else fallback_reason(lang,
                                                                             self.model_language))


@dataclass(frozen=True, slots=True)
class ScoreError:
    """Why one item could not be scored. ``reason`` is the DLQ code (see DeadLetter.reason)."""

    reason: str  # empty_text | not_text | classify_error | non_finite_output | no_model
    message: str


Result = Scored | ScoreError


@runtime_checkable
class Scorer(Protocol):
    """What the classify agent needs from an inference backend."""

    async def submit_many(self, texts: Sequence[str],
                          spans: Sequence[EntitySpans | None] | None = None,
                          langs: Sequence[str] | None = None) -> list[Result]:
        """Score ``texts``; one result per text, in input order. Waits (never drops) while
        the scorer is saturated. ``spans`` (one entry per text, None for texts without
        entity mentions): score each entity's mentions too (``Scored.entities``). ``langs``
        (one canonical language per text, see ``models.lang.document_language``): route each
        text to its language's model (a one-model scorer scores all with its own); each
        result names the language of the model that scored it (``Scored.model_language``)."""
        ...

    async def wait_for_room(self, n: int = 1) -> None:
        """Return once ``n`` more items can be queued: await it before taking more
        messages from Kafka, so a full queue pauses consumption."""
        ...

    @property
    def queue_full(self) -> bool: ...
