"""Prometheus metrics for the API, in a registry owned by the app (several apps may live in one
process, e.g. in tests, and the default global registry would refuse the second one)."""
from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.routing import Match


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("yuqing_api_requests_total", "HTTP requests by route and status.",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("yuqing_api_request_seconds", "HTTP request latency by route.",
                                 ["method", "route"], registry=self.registry)
        self.feedback = Counter("yuqing_api_feedback_total", "Label feedback stored.",
                                registry=self.registry)

    async def middleware(self, request: Request,
                         call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = _route_template(request)
            self.requests.labels(request.method, route, str(status)).inc()
            self.latency.labels(request.method, route).observe(time.perf_counter() - started)


def _route_template(request: Request) -> str:
    """The matched route's path template (``/v1/subscriptions/{sub_id}``), so ids do not
    explode label cardinality; unmatched paths are counted together."""
    route = request.scope.get("route")
    path = getattr(route, "path", None)
    if path:
        return path
    for r in request.app.router.routes:
        match, _ = r.matches(request.scope)
        if match == Match.FULL and getattr(r, "path", None):
            return r.path
    return "unmatched"
