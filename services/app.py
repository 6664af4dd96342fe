"""The Faust application: which agents run, on which topics, with which delivery guarantees.

Flow (topic names from settings)::

    news.raw ─┐ ingest ┌─ docs.clean ── classify ── docs.scored ─┬─ trends  (Redis)
    comments ─┘        └─ dlq                                    ├─ index   (Elasticsearch)
                                                                 └─ alerts  ── alerts topic + ES

Roles split the agents over processes (``yuqing worker --role ...``): ``ingest``,
``classify``, ``sink`` (trends + index), ``alerts``, or ``all`` in one process. Each role is
its own consumer group (``<app_id>-<role>``), so roles scale independently (more partitions,
more processes of one role) and a slow sink never stalls classification.

No loss, no double counting -- how offsets relate to effects (faust-streaming 0.15):

* every agent reads with ``stream.take_events(max, within)``; Faust acks a batch's events
  only when the agent asks for the next batch (``take_events`` disables per-event acks and
  acks in the generator's ``finally``), and commits (every ``broker_commit_interval``) only
  the contiguous prefix of acked offsets per partition, after flushing its producer;
* the classify agent's actors (``classify_actors``) share each partition, so its acks arrive
  out of order; ``services.stream.faust_commits`` makes sure no commit passes an offset still
  in an actor (faust-streaming's own check has two holes);
* an agent does not ask for the next batch until the batch's effects are durable: Kafka
  sends awaited until acknowledged (``acks=all``, see ``services.stream.topics.deliver``), ES
  bulk succeeded, Redis script returned. Backend outages are retried in place
  (``services.stream.effects.until_durable``); anything unexpected ends the process without
  acking (``os._exit``), never by raising out of the loop (which would ack);
* so a crash at any point leaves the batch uncommitted and it is delivered again; every
  effect is idempotent: ES ``_id`` = ``doc_id``, trend counts and alert counts are guarded by
  per-doc-id sets inside one Redis Lua call, dedup is "first writer wins" by doc id, alert
  ids are deterministic. At-least-once delivery + idempotent effects = exactly-once results.
  (Kafka topics between stages can hold a redelivered copy; their consumers are idempotent.)
"""
from __future__ import annotations

from pathlib import Path

import faust

from services.core.config import Settings
from services.stream.faust_commits import guard_commits
from services.stream.kafka_fetch import FETCH_MAX_WAIT_MS, FETCH_MIN_BYTES, configure_fetches

ROLES = ("ingest", "classify", "sink", "alerts")
ROLE_CHOICES = (*ROLES, "all")


def roles_for(role: str) -> tuple[str, ...]:
    if role == "all":
        return ROLES
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(ROLE_CHOICES)}")
    return (role,)


def app_id_for(settings: Settings, role: str) -> str:
    return settings.app_id if role == "all" else f"{settings.app_id}-{role}"


def create_app(settings: Settings, role: str = "all") -> faust.App:
    """A Faust app running the agents of ``role``; start it with ``faust.Worker(app)``."""
    roles = roles_for(role)
    app_id = app_id_for(settings, role)
    configure_fetches(FETCH_MIN_BYTES, FETCH_MAX_WAIT_MS)
    guard_commits()  # several classify actors ack one partition out of order
    datadir = Path(settings.data_dir) / "faust" / app_id
    datadir.parent.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        app_id,
        broker=[f"kafka://{h.strip()}" for h in settings.kafka_bootstrap.split(",")],
        autodiscover=False,
        store="memory://",  # no Faust tables: all state lives in Redis/ES, idempotently
        datadir=str(datadir),
        web_enabled=False,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        # a killed worker's partitions move on within seconds, not the 60 s default
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        stream_wait_empty=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=1,
        topic_disable_leader=True,
        stream_buffer_maxsize=4096,
    )
    if "ingest" in roles:
        from services.ingest.agent import register as register_ingest

        register_ingest(app, settings)
    if "classify" in roles:
        from services.classify.agent import register as register_classify

        register_classify(app, settings)
    if "sink" in roles:
        from services.index.agent import register as register_index
        from services.trends.agent import register as register_trends

        register_trends(app, settings)
        register_index(app, settings)
    if "alerts" in roles:
        from services.alerts.agent import register as register_alerts

        register_alerts(app, settings)
    return app
