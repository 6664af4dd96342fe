"""Model-change annotations: deterministic ids, documents that fit their mapping."""
from __future__ import annotations

from datetime import UTC, datetime

from services.alerts.detector import Annotation, window_version
from services.stream.es_layout import ANNOTATION_PROPERTIES, annotation_template


def test_window_version_is_the_majority_ties_by_name() -> None:
    assert window_version({}) is None
    assert window_version({"b": 2, "a": 1}) == "b"
    assert window_version({"b": 2, "a": 2}) == "a"  # Elasticsearch's terms order


def test_annotation_document_fits_the_template() -> None:
    at = datetime(2026, 3, 1, 9, 5, tzinfo=UTC)
    a = Annotation("AAPL", "*", "model_change", at, {"from": "v1", "to": "v2",
                                                     "settle_windows": 72})
    assert a.annotation_id == Annotation("AAPL", "*", "model_change", at, {}).annotation_id
    assert a.annotation_id != Annotation("AAPL", "*", "rebased", at, {}).annotation_id
    src = a.to_source(300)
    assert set(src) <= set(ANNOTATION_PROPERTIES)
    assert src["from_version"] == "v1" and "v1 -> v2" in src["text"]
    tpl = annotation_template("acme-annotations")
    assert tpl["index_patterns"] == ["acme-annotations"]
    assert tpl["template"]["mappings"]["properties"] is ANNOTATION_PROPERTIES
