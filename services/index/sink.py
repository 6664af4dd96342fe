"""STUB (signatures final; body being written)."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from elasticsearch import AsyncElasticsearch

from services.core.schemas import Alert, ScoredDoc


class EsSink:
    def __init__(self, es: AsyncElasticsearch, prefix: str, *, max_docs: int = 500,
                 retries: int = 5, backoff_s: float = 0.5, backoff_max_s: float = 30.0,
                 alerts_index: str = "yuqing-alerts", replicas: int = 0) -> None:
        self.es, self.prefix, self.max_docs = es, prefix, max_docs

    def add(self, doc: ScoredDoc) -> None:
        raise NotImplementedError

    async def flush(self):
        raise NotImplementedError

    async def ensure_templates(self) -> None:
        raise NotImplementedError

    async def retention(self, days: int, now: datetime | None = None) -> list[str]:
        raise NotImplementedError

    async def index_alerts(self, alerts: Sequence[Alert]):
        raise NotImplementedError
