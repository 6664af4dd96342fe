"""The FastAPI app: ``create_app(settings)`` wires routers, auth and clients.

Clients (Redis, Elasticsearch, a lazily started Kafka producer) are opened in the lifespan and
closed after it, so importing this module or building the app touches no network; tests build
one app per settings object. Backend failures become 503 with ``Retry-After`` and a reason,
refused requests 400, never a bare 500.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from elasticsearch import AsyncElasticsearch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from redis.asyncio import Redis

from models.text_zh import to_simplified
from services.alerts.delivery_state import DeliveryState
from services.alerts.subscriptions import SubscriptionStore
from services.api.auth import KeyStore
from services.api.feedback import FeedbackStore
from services.api.kafka import KafkaGate
from services.api.limits import BodyLimit
from services.api.metrics import ApiMetrics
from services.api.params import EntityResolver
from services.api.routers import alerts, documents, feedback, health, keys, subscriptions, trends
from services.api.text_query import LegacyIndices
from services.core.config import Settings
from services.core.errors import BackendRejected, BackendUnavailable, InputError
from services.core.watchlist import Watchlist
from services.trends.store import TrendStore

DESCRIPTION = """Real-time financial sentiment: subscriptions to spike alerts (webhook or Kafka),
trends, alerts, document search and label feedback.

Authenticate with an API key in the `X-API-Key` header (`yuqing keys create --scopes read`).
Scopes: `read` (GET), `subscribe` (subscriptions, silences, feedback; implies read),
`admin` (everything, including keys)."""


def create_app(settings: Settings) -> FastAPI:
    metrics = ApiMetrics()
    watchlist = Watchlist.from_file(settings.watchlist_path, fold=to_simplified)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = Redis.from_url(settings.redis_url, decode_responses=False, socket_timeout=5,
                               socket_connect_timeout=5)
        es = AsyncElasticsearch(settings.es_url, request_timeout=10)
        kafka = KafkaGate(settings.kafka_bootstrap)
        st = app.state
        st.redis, st.es, st.kafka = redis, es, kafka
        st.keys = KeyStore(redis, settings.redis_prefix)
        st.subs = SubscriptionStore(redis, settings.redis_prefix)
        st.delivery = DeliveryState(redis, settings.redis_prefix)
        st.trends = TrendStore(redis, settings.redis_prefix, settings.trends_retention_h * 3600)
        st.feedback = FeedbackStore(redis, settings.redis_prefix)
        st.entities = EntityResolver(watchlist, es, settings.es_index_prefix)
        st.zh_legacy = LegacyIndices(es, settings.es_index_prefix)
        try:
            yield
        finally:
            await kafka.close()
            await es.close()
            await redis.aclose()

    app = FastAPI(title="yuqing API", version="1", description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.watchlist = watchlist
    app.middleware("http")(metrics.middleware)
    app.add_middleware(BodyLimit, max_bytes=settings.api_max_body_bytes)

    @app.exception_handler(BackendUnavailable)
    async def _unavailable(request: Request, exc: BackendUnavailable) -> JSONResponse:
        return JSONResponse({"detail": f"{exc.service} is unavailable; retry shortly"},
                            status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(BackendRejected)
    async def _rejected(request: Request, exc: BackendRejected) -> JSONResponse:
        return JSONResponse({"detail": f"query refused by {exc.service}: {exc}"}, status_code=400)

    @app.exception_handler(InputError)
    async def _bad_input(request: Request, exc: InputError) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "reason": exc.reason}, status_code=400)

    for r in (health, subscriptions, trends, alerts, documents, feedback, keys):
        app.include_router(r.router)
    return app


def openapi_json(app: FastAPI) -> str:
    """The OpenAPI document as committed in docs/openapi.json (stable key order)."""
    import json

    return json.dumps(app.openapi(), indent=2, ensure_ascii=False) + "\n"
