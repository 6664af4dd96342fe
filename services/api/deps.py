"""FastAPI dependencies as ``Annotated`` aliases: routers declare what they need by type.

Clients are opened once in the app's lifespan (:mod:`services.api.app`) and read from
``app.state`` here; nothing opens a connection per request.
"""
from __future__ import annotations

from typing import Annotated

from aiokafka import AIOKafkaProducer
from elasticsearch import AsyncElasticsearch
from fastapi import Depends, HTTPException, Query, Request, Security
from fastapi.security import APIKeyHeader

from services.alerts.delivery_state import DeliveryState
from services.alerts.subscriptions import SubscriptionStore
from services.api.auth import ApiKey, KeyStore
from services.api.feedback import FeedbackStore
from services.api.metrics import ApiMetrics
from services.core.config import Settings
from services.core.errors import BackendUnavailable
from services.trends.store import TrendStore

API_KEY_HEADER = "X-API-Key"
_api_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False,
                               description="An API key from `yuqing keys create`.")


def _state(name: str):
    def get(request: Request):
        return getattr(request.app.state, name)

    return get


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _es(request: Request) -> AsyncElasticsearch:
    return request.app.state.es


async def _producer(request: Request) -> AIOKafkaProducer:
    gate = request.app.state.kafka
    producer = await gate.get()
    if producer is None:
        raise BackendUnavailable(gate.error or "not connected", "kafka")
    return producer


SettingsDep = Annotated[Settings, Depends(_settings)]
ESDep = Annotated[AsyncElasticsearch, Depends(_es)]
ProducerDep = Annotated[AIOKafkaProducer, Depends(_producer)]
KeysDep = Annotated[KeyStore, Depends(_state("keys"))]
SubsDep = Annotated[SubscriptionStore, Depends(_state("subs"))]
DeliveryDep = Annotated[DeliveryState, Depends(_state("delivery"))]
TrendsDep = Annotated[TrendStore, Depends(_state("trends"))]
FeedbackDep = Annotated[FeedbackStore, Depends(_state("feedback"))]
MetricsDep = Annotated[ApiMetrics, Depends(_state("metrics"))]


def require(scope: str):
    """Dependency: the request's API key, which must grant ``scope`` (401 / 403 otherwise)."""

    async def check(request: Request,
                    header: Annotated[str | None, Security(_api_key_header)] = None) -> ApiKey:
        presented = header
        if not presented:
            auth = request.headers.get("authorization", "")
            if auth.lower().startswith("bearer "):
                presented = auth[7:].strip()
        if not presented:
            raise HTTPException(401, f"missing API key: send it in the {API_KEY_HEADER} header "
                                     "(create one with `yuqing keys create`)",
                                headers={"WWW-Authenticate": API_KEY_HEADER})
        key = await request.app.state.keys.lookup(presented)
        if key is None:
            raise HTTPException(401, "invalid API key (unknown or revoked)",
                                headers={"WWW-Authenticate": API_KEY_HEADER})
        if not key.allows(scope):
            raise HTTPException(403, f"this API key lacks the '{scope}' scope "
                                     f"(it has: {', '.join(key.scopes)})")
        request.state.key_id = key.key_id
        return key

    return check


ReadKey = Annotated[ApiKey, Depends(require("read"))]
SubscribeKey = Annotated[ApiKey, Depends(require("subscribe"))]
AdminKey = Annotated[ApiKey, Depends(require("admin"))]

Offset = Annotated[int, Query(ge=0, le=10_000, description="Items to skip.")]
Limit = Annotated[int, Query(ge=1, le=200, description="Items per page.")]
