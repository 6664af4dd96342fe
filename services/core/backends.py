"""Translating client errors into yuqing's tree, in one place per client kind.

Adapters (the trend store, dedup store, delivery state, API stores, sinks) talk to redis-py,
elasticsearch-py and aiokafka; their callers only know :mod:`services.core.errors`. Every
adapter method wraps its client calls in one of these instead of its own ``try/except``, so
a new client error class is handled by editing one line here (the httpx ``_exceptions.py``
idea)::

    with redis_errors("trend record"):
        await pipe.execute()

    @redis_errors("key lookup")          # also decorates ``async def`` methods
    async def get(self, key): ...

``BackendUnavailable`` is what every retry loop (``services.stream.effects.until_durable``)
and every HTTP handler (503) already understands; ``BackendRejected`` means the request itself
was refused and retrying it unchanged will not help (HTTP 4xx from Elasticsearch).
"""
from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from services.core.errors import BackendError, BackendRejected, BackendUnavailable

F = TypeVar("F", bound=Callable[..., Any])


class _Translate:
    """A context manager that is also a decorator of sync and async functions."""

    service = ""

    def __init__(self, what: str) -> None:
        self.what = what

    def translate(self, exc: BaseException) -> BackendError | None:
        raise NotImplementedError

    def __enter__(self) -> _Translate:
        return self

    def __exit__(self, typ, exc, tb) -> bool:
        if exc is None or isinstance(exc, BackendError):
            return False
        err = self.translate(exc)
        if err is None:
            return False
        raise err from exc

    def __call__(self, fn: F) -> F:
        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def awrapper(*args, **kwargs):
                with self:
                    return await fn(*args, **kwargs)
            return awrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self:
                return fn(*args, **kwargs)
        return wrapper  # type: ignore[return-value]


class redis_errors(_Translate):  # noqa: N801 - reads as a statement: ``with redis_errors(...)``
    """Any redis-py error (connection, timeout, cluster moved, script) -> BackendUnavailable."""

    service = "redis"

    def translate(self, exc: BaseException) -> BackendError | None:
        from redis.exceptions import RedisError

        if isinstance(exc, RedisError | OSError | TimeoutError):
            return BackendUnavailable(f"{self.what} failed: {exc}", self.service)
        return None


class es_errors(_Translate):  # noqa: N801
    """Transport errors and 429/5xx -> BackendUnavailable; other HTTP errors -> BackendRejected."""

    service = "elasticsearch"

    def translate(self, exc: BaseException) -> BackendError | None:
        from elasticsearch import ApiError, TransportError

        if isinstance(exc, TransportError | OSError | TimeoutError):
            return BackendUnavailable(f"{self.what}: {exc}", self.service)
        if isinstance(exc, ApiError):
            status = getattr(exc, "status_code", None) or getattr(exc.meta, "status", 0)
            if status == 429 or status >= 500:
                return BackendUnavailable(f"{self.what}: HTTP {status} {exc.message}",
                                          self.service)
            return BackendRejected(f"{self.what}: HTTP {status} {exc.message}", self.service)
        return None


class kafka_errors(_Translate):  # noqa: N801
    """Retriable aiokafka errors, socket errors and timeouts -> BackendUnavailable; errors the
    broker will repeat for the same request (a record too large, an unknown topic
    configuration) -> BackendRejected, so a retry loop stops instead of spinning silently."""

    service = "kafka"

    def translate(self, exc: BaseException) -> BackendError | None:
        from aiokafka import errors as ke

        refused = (ke.MessageSizeTooLargeError, ke.RecordTooLargeError, ke.InvalidTopicError,
                   ke.TopicAuthorizationFailedError, ke.InvalidRequiredAcksError)
        if isinstance(exc, refused):
            return BackendRejected(f"{self.what}: {exc!r}", self.service)
        KafkaError = ke.KafkaError  # noqa: N806
        if isinstance(exc, KafkaError | OSError | TimeoutError):
            return BackendUnavailable(f"{self.what}: {exc!r}", self.service)
        return None
