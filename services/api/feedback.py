"""Analyst label feedback: stored twice, durably, for the retraining job.

Each label is produced to ``topic_labels`` with ``acks=all`` (the system of record, replayable by
any consumer) and appended to the Redis stream ``<prefix>:feedback`` (what ``yuqing feedback
export`` reads to write the JSONL file the ML retrain job takes: doc_id, text, label, ts).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from redis.asyncio import Redis

from services.core.backends import redis_errors
from services.core.schemas import Feedback

# Analyst labels kept in the Redis stream (approximate cap, XADD MAXLEN ~): years of a busy
# desk's corrections; the Kafka labels topic keeps the full history for retraining.
FEEDBACK_STREAM_MAXLEN = 1_000_000


class FeedbackStore:
    def __init__(self, redis: Redis, prefix: str, maxlen: int = FEEDBACK_STREAM_MAXLEN) -> None:
        self._redis = redis
        self.key = f"{prefix}:feedback"
        self._maxlen = maxlen

    async def append(self, fb: Feedback) -> str:
        fields = {"doc_id": fb.doc_id, "label": fb.label, "text": fb.text or "",
                  "analyst": fb.analyst or "", "ts": fb.created_at.isoformat()}
        with redis_errors("append"):
            entry_id = await self._redis.xadd(self.key, fields, maxlen=self._maxlen,
                                              approximate=True)
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    async def export(self, path: Path, *, since: datetime | None = None,
                     progress: Callable[[int], None] | None = None) -> int:
        """Write the latest label per document as JSONL; returns the number of rows written."""
        latest: dict[str, dict[str, str]] = {}
        start = "-"
        with redis_errors("export"):
            while True:
                chunk = await self._redis.xrange(self.key, min=start, max="+", count=1000)
                if not chunk:
                    break
                for _entry_id, raw in chunk:
                    row = {k.decode(): v.decode() for k, v in raw.items()}
                    if since is not None and datetime.fromisoformat(row["ts"]) < since:
                        continue
                    latest.pop(row["doc_id"], None)  # re-insert so file order = label order
                    latest[row["doc_id"]] = row
                if progress:
                    progress(len(chunk))
                last = chunk[-1][0].decode()
                start = "(" + last
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            for row in latest.values():
                fh.write(json.dumps({"doc_id": row["doc_id"], "text": row["text"],
                                     "label": row["label"], "ts": row["ts"]},
                                    ensure_ascii=False) + "\n")
        tmp.replace(path)
        return len(latest)
