"""``/v1/feedback``: an analyst's corrected label for a document, kept for retraining."""
from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from services.api.deps import ESDep, FeedbackDep, MetricsDep, ProducerDep, SettingsDep, SubscribeKey
from services.api.routers.documents import find_document
from services.core.errors import BackendUnavailable
from services.core.schemas import Feedback, Id, Label, utcnow

router = APIRouter(prefix="/v1/feedback", tags=["feedback"])


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    doc_id: Id = Field(description="The document's doc_id ('<kind>:<source>:<id>').")
    label: Label = Field(description="The correct label.")
    text: str | None = Field(None, min_length=1, max_length=100_000,
                             description="The text labelled; default: the indexed document's text.")
    analyst: str | None = Field(None, max_length=200, description="Who labelled (default: key id).")


class FeedbackStored(BaseModel):
    doc_id: str
    label: Label
    created_at: datetime
    stream_id: str
    topic: str


@router.post("", status_code=201, response_model=FeedbackStored,
             summary="Store a corrected label (Kafka acks=all + Redis stream) (scope: subscribe)")
async def post_feedback(body: FeedbackIn, es: ESDep, producer: ProducerDep, store: FeedbackDep,
                        settings: SettingsDep, metrics: MetricsDep,
                        key: SubscribeKey) -> FeedbackStored:
    text = body.text
    if text is None:
        doc = await find_document(es, settings.es_index_prefix, body.doc_id)
        if doc is None:
            raise HTTPException(404, f"document {body.doc_id!r} is not indexed; send its 'text'")
        text = doc.get("text") or doc.get("title") or ""
    fb = Feedback(doc_id=body.doc_id, label=body.label, text=text,
                  analyst=body.analyst or f"key:{key.key_id}", created_at=utcnow())
    try:
        await producer.send_and_wait(settings.topic_labels, fb.model_dump_json().encode(),
                                     key=fb.doc_id.encode())
    except Exception as exc:  # aiokafka raises several unrelated classes here
        raise BackendUnavailable(type(exc).__name__, "kafka") from exc
    stream_id = await store.append(fb)
    metrics.feedback.inc()
    return FeedbackStored(doc_id=fb.doc_id, label=fb.label, created_at=fb.created_at,
                          stream_id=stream_id, topic=settings.topic_labels)
