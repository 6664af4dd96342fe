"""The finnsp held-out measure, shared by the recipe, the CPU-backend check and the entity
pair model: document negative F1 and entity-level negative F1 through the serving path."""
from __future__ import annotations

import numpy as np

from models.finetune.sources_zh import NewsDoc, uncovered_spans
from models.text import LABELS


def linked_spans(docs: list[NewsDoc]) -> tuple[list, list[tuple]]:
    """Per document, the spans of each listed entity with an uncovered mention (what the
    linker passes), and (doc, entity, its position, first mention start) for each."""
    spans, where = [], []
    for i, d in enumerate(docs):
        s = []
        for ent in d.entities:
            sp = uncovered_spans(d.text, ent, d.entities)
            if sp:
                where.append((i, ent, len(s), sp[0][0]))
                s.append(sp)
        spans.append(s)
    return spans, where


def evaluate_news(model, docs: list[NewsDoc]) -> dict:
    """finnsp held-out: document negative F1 (doc head; and "any entity negative") and
    entity-level negative F1 over every listed entity (an entity with no uncovered mention
    counts as predicted not negative, as the linker would never have linked it). Each
    entity's mentions are all its uncovered occurrences, as the linker passes them."""
    texts = [d.text for d in docs]
    spans, where = linked_spans(docs)
    doc_p, ent_p = model.predict_entities(texts, spans)
    neg = LABELS.index("negative")
    ent_pred = {(i, ent): bool(ent_p[i][j].argmax() == neg) for i, ent, j, _ in where}

    def f1(tp: int, fp: int, fn: int) -> dict:
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        return {"precision": round(p, 4), "recall": round(r, 4),
                "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0, "support": tp + fn}

    def counts(pairs):
        tp = sum(t and p for t, p in pairs)
        return tp, sum(p and not t for t, p in pairs), sum(t and not p for t, p in pairs)

    y_doc = [d.negative for d in docs]
    by_head = [bool(p.argmax() == neg) for p in doc_p]
    by_ents = [any(ent_pred.get((i, e), False) for e in d.entities) for i, d in enumerate(docs)]
    ent_pairs = [(d.negative and e in d.key_entities, ent_pred.get((i, e), False))
                 for i, d in enumerate(docs) for e in d.entities]
    return {"test": f"{len(docs)} held-out finnsp items (split by document), "
                    f"{len(ent_pairs)} listed entities, {len(where)} with a mention",
            "document_negative": f1(*counts(list(zip(y_doc, by_head, strict=True)))),
            "document_negative_any_entity": f1(*counts(list(zip(y_doc, by_ents, strict=True)))),
            "entity_negative": f1(*counts(ent_pairs)),
            "document_accuracy": round(float(np.mean([a == b for a, b in
                                                      zip(y_doc, by_head, strict=True)])), 4)}
