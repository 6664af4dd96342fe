"""Model-change annotations in Elasticsearch (``<ns>-annotations``), one document per event.

The alerts detector notes, per series, when the sentiment model of its documents changes
(scores are then suppressed while the share re-bases) and when the re-base is done; these
documents put that next to the trend in Kibana (the ``yuqing-annotations`` data view and
saved search in ``ops/kibana``). ``_id`` = ``annotation_id`` (series, window, kind): writing
the same event again after a crash overwrites itself.
"""
from __future__ import annotations

from collections.abc import Sequence

from elasticsearch import AsyncElasticsearch

from services.alerts.detector import Annotation
from services.core.backends import es_errors
from services.stream.es_layout import annotation_template


class AnnotationWriter:
    def __init__(self, es: AsyncElasticsearch, index: str, window_s: int) -> None:
        self.es, self.index, self.window_s = es, index, window_s
        self._ready = False

    async def write(self, annotations: Sequence[Annotation]) -> int:
        if not annotations:
            return 0
        with es_errors("annotations"):
            if not self._ready:
                await self.es.indices.put_index_template(name=self.index,
                                                         **annotation_template(self.index))
                self._ready = True
            ops: list[dict] = []
            for a in annotations:
                ops += [{"index": {"_index": self.index, "_id": a.annotation_id}},
                        a.to_source(self.window_s)]
            resp = await self.es.bulk(operations=ops)
        if resp.get("errors"):
            bad = [i for i in resp["items"] if i["index"].get("error")]
            raise RuntimeError(f"annotations not indexed: {bad[:1]}")
        return len(annotations)
