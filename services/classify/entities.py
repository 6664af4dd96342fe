"""Per-entity sentiment of a document: which spans go to the model, and what each entity gets.

"Bank A sues Company B" is negative for B, not for A. Ingest records where each linked entity
is mentioned (``CleanDoc.mentions``); the inference worker scores each entity's mentions with
the model's entity head in the document's own forward pass (``Scored.entities``). Every entity
of the document gets an :class:`~services.core.schemas.EntitySentiment`: its own where the head
read its mentions (source ``entity``), the document's otherwise (source ``document``: a ticker
only the producer named, mentions past the model's truncation, a model without an entity head).
"""
from __future__ import annotations

from services.classify.scorer import EntitySpans, Scored
from services.core.schemas import CleanDoc, EntitySentiment


def mention_spans(doc: CleanDoc) -> tuple[list[str], EntitySpans]:
    """(entities, their spans) for the entities of ``doc`` mentioned in its text, in the
    order of ``doc.mentions``; what ``Scorer.submit_many`` takes per text."""
    known = set(doc.entities)
    ents: list[str] = []
    spans: EntitySpans = []
    for m in doc.mentions:
        if m.spans and m.entity in known and m.entity not in ents:
            ents.append(m.entity)
            spans.append([(int(a), int(b)) for a, b in m.spans])
    return ents, spans


def entity_sentiment(doc: CleanDoc, scored: Scored, scored_entities: list[str]
                     ) -> list[EntitySentiment]:
    """One :class:`EntitySentiment` per entity of ``doc`` (its order). ``scored_entities``:
    the entities whose spans were submitted, in the order of ``scored.entities``."""
    own = dict(zip(scored_entities, scored.entities, strict=False))
    out = []
    for e in dict.fromkeys(doc.entities):
        s = own.get(e)
        if s is not None and s.from_entity:
            out.append(EntitySentiment(entity=e, label=s.label,  # type: ignore[arg-type]
                                       probabilities=s.probabilities, source="entity"))
        else:
            out.append(EntitySentiment(entity=e, label=scored.label,  # type: ignore[arg-type]
                                       probabilities=scored.probabilities, source="document"))
    return out
