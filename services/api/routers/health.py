"""Liveness, readiness and Prometheus metrics (no API key: probes and scrapers have none)."""
from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from services.api.es import ping as es_ping

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def _redis_ok(request: Request) -> bool:
    try:
        return bool(await asyncio.wait_for(request.app.state.redis.ping(), 3))
    except (RedisError, TimeoutError, OSError):
        return False


@router.get("/readyz", summary="Kafka, Redis and Elasticsearch answer (503 if one does not)")
async def readyz(request: Request) -> JSONResponse:
    kafka, redis, es = await asyncio.gather(request.app.state.kafka.ping(), _redis_ok(request),
                                            es_ping(request.app.state.es))
    checks = {"kafka": kafka, "redis": redis, "elasticsearch": es}
    ok = all(checks.values())
    return JSONResponse({"status": "ready" if ok else "not ready",
                         "checks": {k: "ok" if v else "down" for k, v in checks.items()}},
                        status_code=200 if ok else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry),
                    media_type=CONTENT_TYPE_LATEST)
