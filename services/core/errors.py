"""yuqing's error tree. Adapters translate client errors into these with ``raise ... from exc``.

Catch the narrowest class that lets the caller act; the tree says what each one means::

    YuqingError                      root: anything yuqing raises on purpose
    ├── ConfigError                  a setting or file is unusable; fix config and restart
    ├── InputError                   one message/request is bad; it goes to the DLQ or a 4xx
    │   ├── DecodeError              not UTF-8 / not JSON / too large
    │   └── SchemaError              JSON that does not match the message schema
    ├── ModelError                   the classifier cannot be loaded or run
    │   └── ModelLoadError           a checkpoint folder is missing or corrupt
    └── BackendError                 Kafka, Redis or Elasticsearch failed
        ├── BackendUnavailable       cannot reach it now; retry later
        │   └── SinkBackpressure     a sink is overloaded: pause consumption for retry_after seconds
        └── BackendRejected          the request was refused (mapping conflict, bad query...)
"""
from __future__ import annotations


class YuqingError(Exception):
    """Root of every error yuqing raises on purpose."""


class ConfigError(YuqingError):
    pass


class InputError(YuqingError):
    """One input is bad; ``reason`` is a short machine-readable code stored with the DLQ record."""

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


class DecodeError(InputError):
    pass


class SchemaError(InputError):
    pass


class ModelError(YuqingError):
    pass


class ModelLoadError(ModelError):
    pass


class BackendError(YuqingError):
    """``service`` names the backend: kafka, redis or elasticsearch."""

    def __init__(self, message: str, service: str) -> None:
        super().__init__(f"{service}: {message}")
        self.service = service


class BackendUnavailable(BackendError):
    pass


class SinkBackpressure(BackendUnavailable):
    """Raised by a sink that cannot take more now; the caller pauses consumption and retries."""

    def __init__(self, message: str, service: str, retry_after: float) -> None:
        super().__init__(message, service)
        self.retry_after = retry_after


class BackendRejected(BackendError):
    pass
