"""``yuqing backtest`` against the real Elasticsearch: documents indexed by the sink, the
detector replayed from aggregations, equal to the pure replay of the same counts; read-only."""
from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio

from services.alerts import backtest as bt
from services.alerts import replay, rules
from services.alerts.backtest_cli import backtest
from services.alerts.config import detector_config
from services.core.config import Settings
from services.core.schemas import ScoredDoc, Sentiment
from services.index.sink import EsSink

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)
HOURS = 30
SPIKE_H = 26.3


def _doc(i: int, entity: str, at: datetime, negative: bool, topic: str,
         version: str = "m-v1") -> ScoredDoc:
    label = "negative" if negative else "neutral"
    return ScoredDoc(
        doc_id=f"news:bt:{i}", kind="news", source="bt", source_id=str(i),
        title=f"{entity} item {i}", text=f"{entity} item {i}", published_at=at,
        ingested_at=at, classified_at=at, entities=[entity], primary_entity=entity,
        topics=[topic],
        sentiment=Sentiment(label=label, model_version=version,
                            probabilities={"negative": 0.9 if negative else 0.1,
                                           "neutral": 0.1 if negative else 0.9}))


def feed() -> list[ScoredDoc]:
    """~30 h of two entities (a few documents an hour, 20% negative), a 40-negative burst
    for SPIKY, and CALM's model changing to one with more negatives at hour 20."""
    rng = random.Random(11)
    docs: list[ScoredDoc] = []
    for entity, rate in (("CALM", 6.0), ("SPIKY", 6.0)):
        t = 0.0
        while t < HOURS:
            t += rng.expovariate(rate)
            late = entity == "CALM" and t > 20
            docs.append(_doc(len(docs), entity, T0 + timedelta(hours=t),
                             rng.random() < (0.45 if late else 0.2),
                             rng.choice(["earnings", "legal"]),
                             "m-v2" if late else "m-v1"))
    for k in range(40):
        docs.append(_doc(len(docs), "SPIKY", T0 + timedelta(hours=SPIKE_H, seconds=20 * k),
                         True, "legal"))
    return docs


@pytest_asyncio.fixture
async def indexed(es, es_prefix) -> AsyncIterator[tuple[Settings, list[ScoredDoc]]]:
    settings = Settings(namespace=es_prefix)
    sink = EsSink(es, settings.es_index_prefix, alerts_index=settings.es_alerts_index)
    docs = feed()
    res = await sink.write(docs)
    assert res.indexed == len(docs) and not res.failures
    await es.indices.refresh(index=settings.es_index_prefix)
    yield settings, docs
    # the index templates go before the component templates they are composed of
    await es.options(ignore_status=404).indices.delete(index=f"{es_prefix}*",
                                                       expand_wildcards="all")
    await es.options(ignore_status=404).indices.delete_index_template(name=f"{es_prefix}*")
    await es.options(ignore_status=404).cluster.delete_component_template(name=f"{es_prefix}*")


def pure(docs: list[ScoredDoc], cfg, upto: int) -> dict[str, replay.ReplayResult]:
    counts: dict[str, dict[int, int]] = defaultdict(dict)
    totals: dict[str, dict[int, int]] = defaultdict(dict)
    versions: dict[str, dict[int, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
    for d in docs:
        w = rules.window_of(d.published_at.timestamp(), cfg.window_s)
        for name in [*d.entities, *(f"*/{t}" for t in d.topics)]:
            counts[name][w] = counts[name].get(w, 0) + (d.sentiment.label == "negative")
            totals[name][w] = totals[name].get(w, 0) + 1
            mv = versions[name][w]
            mv[d.sentiment.model_version] = mv.get(d.sentiment.model_version, 0) + 1
    out = {}
    for name in counts:
        ver = {w: min(v.items(), key=lambda kv: (-kv[1], kv[0]))[0]
               for w, v in versions[name].items()}
        out[name] = replay.replay(counts[name], totals[name], cfg, upto=upto, versions=ver)
    return out


def key(e) -> tuple:
    return (e.kind, e.window, e.severity, round(e.score, 6))


async def test_backtest_equals_the_pure_replay_and_writes_nothing(es, kafka_admin, indexed,
                                                                 tmp_path):
    settings, docs = indexed
    ns = settings.namespace

    async def footprint() -> tuple:
        """This namespace's and production's indices (with their document counts) and topics
        (other tests on the shared stack come and go: they are not compared)."""
        got = await es.options(ignore_status=404).cat.indices(
            index=f"{ns}*,yuqing*", format="json", h="index,docs.count",
            expand_wildcards="all")
        rows = got.body if hasattr(got, "body") else got
        indices = {(r["index"], r["docs.count"]) for r in (rows if isinstance(rows, list) else [])}
        topics = {t for t in await kafka_admin.list_topics()
                  if t.startswith((f"{ns}.", "yuqing."))}
        return indices, topics

    await es.indices.refresh(index=f"{ns}*")
    before = await footprint()
    assert before[0], "the documents' indices should be there"
    until = T0 + timedelta(hours=HOURS + 1)
    result, _ = await backtest(settings, since=T0.isoformat(), until=until.isoformat(), es=es)
    cfg = detector_config(settings)
    want = pure(docs, cfg, upto=int(until.timestamp()) // cfg.window_s - 1)
    got = {s.key.name: s.result for s in result.series}
    assert set(got) == set(want) == {"CALM", "SPIKY", "*/earnings", "*/legal"}
    for name, res in want.items():
        assert [key(e) for e in got[name].events] == [key(e) for e in res.events], name
        assert [x.score for x in got[name].scores] == [x.score for x in res.scores], name
        assert [(n.note, n.window) for n in got[name].notes] == \
            [(n.note, n.window) for n in res.notes], name
    fired = {(k.name, e.window) for k, e in result.firings()}
    assert any(name == "SPIKY" for name, _ in fired), fired
    assert not any(name == "CALM" for name, _ in fired), "CALM's model change fired"
    assert [n.note for n in got["CALM"].notes][:1] == ["model_change"]
    # an override changes the verdicts the same way the pure API does
    strict, _ = await backtest(settings, since=T0.isoformat(), until=until.isoformat(), es=es,
                               overrides=["fire_score=99"], entities=["SPIKY"])
    assert [s.key.name for s in strict.series] == ["SPIKY"]
    cfg99 = bt.config_with(cfg, ["fire_score=99"])
    spiky = pure(docs, cfg99, upto=int(until.timestamp()) // cfg.window_s - 1)["SPIKY"]
    assert [key(e) for e in strict.series[0].result.events] == [key(e) for e in spiky.events]
    # labels: the burst's window detected, nothing else counted against it
    labels = tmp_path / "labels.json"
    a, b = T0 + timedelta(hours=SPIKE_H - 1), T0 + timedelta(hours=SPIKE_H + 2)
    labels.write_text(json.dumps({"SPIKY": {"windows": [[a.isoformat(), b.isoformat()]]}}))
    _, score = await backtest(settings, since=T0.isoformat(), until=until.isoformat(), es=es,
                              entities=["SPIKY"], labels=labels)
    assert score is not None and (score.windows, score.detected) == (1, 1)
    # read-only: no index, no document, no topic appeared
    await es.indices.refresh(index=f"{ns}*")
    assert await footprint() == before


async def test_unknown_entity_and_empty_range_are_one_line_errors(es, indexed):
    settings, _ = indexed
    with pytest.raises(bt.BadInput, match="unknown entity 'NOPE'"):
        await backtest(settings, since=T0.isoformat(), window=None,
                       until=(T0 + timedelta(hours=5)).isoformat(), entities=["NOPE"], es=es)
    with pytest.raises(bt.BadInput, match="no documents"):
        await backtest(settings, since="2020-01-01", until="2020-01-02", es=es)
