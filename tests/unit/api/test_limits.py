"""Oversized request bodies get 413 before the API reads them."""
from __future__ import annotations

import httpx
from fastapi import FastAPI, Request

from services.api.limits import BodyLimit


def _app(limit: int) -> FastAPI:
    app = FastAPI()
    app.state.read = 0

    @app.post("/echo")
    async def echo(request: Request) -> dict:
        body = await request.body()
        app.state.read += len(body)
        return {"n": len(body)}

    app.add_middleware(BodyLimit, max_bytes=limit)
    return app


async def test_declared_oversize_is_refused_unread() -> None:
    app = _app(1000)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.post("/echo", content=b"x" * 5000)
        assert r.status_code == 413
        assert "YUQING_API_MAX_BODY_BYTES" in r.json()["detail"]
        assert app.state.read == 0
        ok = await c.post("/echo", content=b"x" * 1000)
        assert ok.status_code == 200 and ok.json() == {"n": 1000}


async def test_chunked_upload_is_cut_when_it_passes_the_limit() -> None:
    app = _app(1000)

    async def chunks():
        for _ in range(50):
            yield b"y" * 100

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.post("/echo", content=chunks())
        assert r.status_code == 413
        assert app.state.read == 0
