"""Request bodies are bounded before they are read: a client cannot make the API hold more.

FastAPI reads a JSON body whole before validating it, so without a bound one 150 MB POST took
the API from 115 MB to over 1 GB of memory before it answered 422. This ASGI middleware
answers 413 as soon as the declared ``Content-Length`` (or, for a chunked upload, the bytes
received so far) passes the limit, without buffering the rest.
"""
from __future__ import annotations

import json
from typing import Any

Scope = dict[str, Any]


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    def __init__(self, app, max_bytes: int) -> None:  # type: ignore[no-untyped-def]
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send, declared)
            return
        seen = 0
        started = False

        async def counting_receive():  # type: ignore[no-untyped-def]
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message) -> None:  # type: ignore[no-untyped-def]
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send, None)

    async def _refuse(self, send, size: int | None) -> None:  # type: ignore[no-untyped-def]
        told = f"{size} bytes" if size is not None else "the body"
        body = json.dumps({"detail": f"request body too large: {told} is over the "
                                     f"{self.max_bytes}-byte limit (YUQING_API_MAX_BODY_BYTES)"}
                          ).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
