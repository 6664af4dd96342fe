"""A real local HTTP receiver for webhook tests (aiohttp on 127.0.0.1, a free port).

Each path has a script of responses (status codes, or ``"hang"`` to sleep past the sender's
timeout); after the script the path answers 200. Every request is recorded with its headers
and raw body, and receivers dedupe by ``X-Yuqing-Delivery`` like real ones should.
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from services.alerts import webhook


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    arrived: float

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def delivery_id(self) -> str:
        return self.headers[webhook.DELIVERY_HEADER]


@dataclass
class Receiver:
    scripts: dict[str, list[Any]] = field(default_factory=dict)
    hang_s: float = 30.0
    requests: list[Received] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    base_url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        script = self.scripts.setdefault(request.path, [])
        action = script.pop(0) if script else 200
        loop = asyncio.get_running_loop()
        rec = Received(request.path, dict(request.headers), body,
                       action if isinstance(action, int) else 0, loop.time())
        self.requests.append(rec)
        self.arrived.set()
        if action == "hang":
            await asyncio.sleep(self.hang_s)
            return web.Response(status=200)
        return web.Response(status=action, text="ok" if action < 300 else "nope")

    def at(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    def delivered(self, path: str) -> dict[str, Received]:
        """Successful requests by delivery id (what a deduping receiver keeps)."""
        out: dict[str, Received] = {}
        for r in self.at(path):
            if 200 <= r.status < 300:
                out.setdefault(r.delivery_id, r)
        return out

    async def wait_for(self, predicate, within_s: float = 20.0) -> None:
        async def loop() -> None:
            while not predicate():
                self.arrived.clear()
                try:
                    await asyncio.wait_for(self.arrived.wait(), 0.2)
                except TimeoutError:
                    pass
        await asyncio.wait_for(loop(), within_s)
