"""All of yuqing's settings, and the only module that reads the environment.

Components never call ``os.environ``: they receive plain values (a bootstrap string, a URL,
a topic name) from a :class:`Settings` built once at process start. That keeps every stage
testable with explicit arguments and makes this file the single list of knobs, which the
README's configuration table is checked against (``tests/unit/core/test_config.py``).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


class Settings(BaseSettings):
    """Runtime configuration. Every field is read from the environment variable in its alias."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", populate_by_name=True, frozen=True)

    # -- connections
    kafka_bootstrap: str = Field("127.0.0.1:9092", validation_alias=_env("YUQING_KAFKA_BOOTSTRAP"),
                                 description="Kafka bootstrap servers, comma separated.")
    es_url: str = Field("http://127.0.0.1:9200", validation_alias=_env("YUQING_ES_URL"),
                        description="Elasticsearch URL.")
    redis_url: str = Field("redis://127.0.0.1:6379/0", validation_alias=_env("YUQING_REDIS_URL"),
                           description="Redis URL.")

    # -- topics
    topic_news_raw: str = Field("yuqing.news.raw", validation_alias=_env("YUQING_TOPIC_NEWS_RAW"),
                                description="Raw news input topic.")
    topic_comments_raw: str = Field("yuqing.comments.raw", validation_alias=_env("YUQING_TOPIC_COMMENTS_RAW"),
                                    description="Raw comments input topic.")
    topic_docs_clean: str = Field("yuqing.docs.clean", validation_alias=_env("YUQING_TOPIC_DOCS_CLEAN"),
                                  description="Validated, linked documents (keyed by primary entity).")
    topic_docs_scored: str = Field("yuqing.docs.scored", validation_alias=_env("YUQING_TOPIC_DOCS_SCORED"),
                                   description="Documents with sentiment.")
    topic_alerts: str = Field("yuqing.alerts", validation_alias=_env("YUQING_TOPIC_ALERTS"),
                              description="Spike alerts.")
    topic_dlq: str = Field("yuqing.dlq", validation_alias=_env("YUQING_TOPIC_DLQ"),
                           description="Dead-letter topic: rejected input with its reason.")
    topic_labels: str = Field("yuqing.labels", validation_alias=_env("YUQING_TOPIC_LABELS"),
                              description="Analysts' corrected labels (feedback for retraining).")
    topic_partitions: int = Field(4, validation_alias=_env("YUQING_TOPIC_PARTITIONS"),
                                  description="Partitions for topics yuqing creates.")

    # -- stream processing
    app_id: str = Field("yuqing", validation_alias=_env("YUQING_APP_ID"),
                        description="Faust application id (consumer group prefix).")
    data_dir: Path = Field(Path("var"), validation_alias=_env("YUQING_DATA_DIR"),
                           description="Local state folder (Faust tables, delivery state).")
    max_message_bytes: int = Field(1_000_000, validation_alias=_env("YUQING_MAX_MESSAGE_BYTES"),
                                   description="Larger raw messages go to the DLQ.")
    max_text_chars: int = Field(20_000, validation_alias=_env("YUQING_MAX_TEXT_CHARS"),
                                description="Normalised text is cut to this many characters.")
    watchlist_path: Path | None = Field(None, validation_alias=_env("YUQING_WATCHLIST"),
                                        description="Watchlist file (company names/aliases to tickers); default: the shipped example.")
    taxonomy_path: Path | None = Field(None, validation_alias=_env("YUQING_TAXONOMY"),
                                       description="Topic taxonomy file; default: the shipped taxonomy.")
    dedup_window_s: int = Field(6 * 3600, validation_alias=_env("YUQING_DEDUP_WINDOW_S"),
                                description="Duplicates of a story within this window are dropped and counted.")

    # -- classification
    model_registry: Path = Field(Path("var/models"), validation_alias=_env("YUQING_MODEL_REGISTRY"),
                                 description="Model registry folder (versions and the production pointer).")
    model_path: Path | None = Field(None, validation_alias=_env("YUQING_MODEL_PATH"),
                                    description="Serve this checkpoint folder instead of the registry's production version.")
    device: str = Field("auto", validation_alias=_env("YUQING_DEVICE"),
                        description="Inference device: auto, cpu or cuda.")
    classify_max_batch: int = Field(0, validation_alias=_env("YUQING_CLASSIFY_MAX_BATCH"),
                                    description="Most documents per inference batch; 0: auto (64 on CPU, 256 on CUDA).")
    classify_max_tokens: int = Field(16_384, validation_alias=_env("YUQING_CLASSIFY_MAX_TOKENS"),
                                     description="Most padded tokens per inference batch.")
    ingest_max_wait_ms: int = Field(100, validation_alias=_env("YUQING_INGEST_MAX_WAIT_MS"),
                                    description="Longest a raw item waits for its ingest batch to fill (larger batches: less CPU per item).")
    classify_max_wait_ms: int = Field(50, validation_alias=_env("YUQING_CLASSIFY_MAX_WAIT_MS"),
                                      description="Longest a document waits for its batch to fill (larger batches: less CPU per item).")
    classify_actors: int = Field(4, ge=1, le=16, validation_alias=_env("YUQING_CLASSIFY_ACTORS"),
                                 description="Classify agent actors per process sharing its one inference worker: while some wait for results, others fill the next batch.")
    classify_queue_size: int = Field(4096, validation_alias=_env("YUQING_CLASSIFY_QUEUE_SIZE"),
                                     description="Bounded inference queue; when full, consumption pauses.")
    model_poll_s: float = Field(5.0, validation_alias=_env("YUQING_MODEL_POLL_S"),
                                description="How often the worker checks the registry's production pointer.")
    classify_backend: str = Field("auto", validation_alias=_env("YUQING_CLASSIFY_BACKEND"),
                                  description="CPU inference backend: auto (picked per host), fp32, int8 or onnx. CUDA runs bf16.")
    classify_forward_threads: int = Field(0, validation_alias=_env("YUQING_CLASSIFY_FORWARD_THREADS"),
                                          description="CPU: batches run side by side, the cores split between them; 0: auto (one per core, at most 4).")
    classify_tokenizer_threads: int = Field(2, validation_alias=_env("YUQING_CLASSIFY_TOKENIZER_THREADS"),
                                            description="Threads tokenising ahead of the forward pass.")
    classify_tokenizer_processes: int = Field(0, validation_alias=_env("YUQING_CLASSIFY_TOKENIZER_PROCESSES"),
                                              description="Tokenise in this many processes instead of threads (GPU hosts with many cores); 0: threads.")
    classify_cache_size: int = Field(50_000, validation_alias=_env("YUQING_CLASSIFY_CACHE_SIZE"),
                                     description="Repeated texts whose token ids are cached (0 turns the cache off).")
    classify_compile: str | None = Field(None, validation_alias=_env("YUQING_CLASSIFY_COMPILE"),
                                         description="torch.compile mode for the CUDA path (e.g. reduce-overhead); unset: off.")

    kafka_fetch_min_bytes: int = Field(65_536, ge=1, validation_alias=_env("YUQING_KAFKA_FETCH_MIN_BYTES"),
                                       description="Stream consumers: a fetch waits for this many bytes...")
    kafka_fetch_max_wait_ms: int = Field(100, ge=1, validation_alias=_env("YUQING_KAFKA_FETCH_MAX_WAIT_MS"),
                                         description="...or this long (fewer, fuller fetches: less CPU per message).")
    sink_max_wait_ms: int = Field(150, validation_alias=_env("YUQING_SINK_MAX_WAIT_MS"),
                                  description="Longest a scored document waits before the sinks write its batch.")
    stop_grace_s: float = Field(30.0, ge=0, validation_alias=_env("YUQING_STOP_GRACE_S"),
                                description="A stopping worker finishes its batches in flight for up to this long; past it, it exits without committing them (they are processed again).")
    worker_role: str = Field("all", validation_alias=_env("YUQING_WORKER_ROLE"),
                             description="Default `yuqing worker` role: ingest, classify, sink, alerts or all.")

    # -- trends (Redis)
    redis_prefix: str = Field("yq", validation_alias=_env("YUQING_REDIS_PREFIX"),
                              description="Prefix of every Redis key yuqing writes.")
    trends_retention_h: int = Field(48, validation_alias=_env("YUQING_TRENDS_RETENTION_H"),
                                    description="Minute buckets expire after this many hours.")

    # -- index (Elasticsearch)
    es_index_prefix: str = Field("yuqing-docs", validation_alias=_env("YUQING_ES_INDEX_PREFIX"),
                                 description="Daily document indices are <prefix>-YYYY.MM.DD; the alias is <prefix>.")
    es_alerts_index: str = Field("yuqing-alerts", validation_alias=_env("YUQING_ES_ALERTS_INDEX"),
                                 description="Index holding alerts (for Kibana and the API).")
    es_retention_days: int = Field(30, validation_alias=_env("YUQING_ES_RETENTION_DAYS"),
                                   description="Daily indices older than this are deleted by the retention job.")
    es_bulk_max_docs: int = Field(500, validation_alias=_env("YUQING_ES_BULK_MAX_DOCS"),
                                  description="Most documents per bulk request.")

    # -- alerts
    alert_min_count: int = Field(5, validation_alias=_env("YUQING_ALERT_MIN_COUNT"),
                                 description="A window needs at least this many negative documents to alert.")
    alert_cooldown_s: int = Field(900, validation_alias=_env("YUQING_ALERT_COOLDOWN_S"),
                                  description="No repeat alert for the same entity/topic within this time.")
    alert_window_s: int = Field(300, validation_alias=_env("YUQING_ALERT_WINDOW_S"),
                                description="Spike detection window.")

    alert_warmup_windows: int = Field(6, validation_alias=_env("YUQING_ALERT_WARMUP_WINDOWS"),
                                      description="Windows of history a series needs before it may alert.")
    alert_lateness_s: int = Field(60, validation_alias=_env("YUQING_ALERT_LATENESS_S"),
                                  description="A window closes (joins the baseline) this long after its end, in event time.")

    # -- HTTP API
    api_host: str = Field("127.0.0.1", validation_alias=_env("YUQING_API_HOST"), description="API bind address.")
    api_port: int = Field(8080, validation_alias=_env("YUQING_API_PORT"), description="API port.")
    api_max_range_days: int = Field(90, validation_alias=_env("YUQING_API_MAX_RANGE_DAYS"),
                                    description="Longest time range a trends/alerts/documents query may span.")
    feedback_stream_maxlen: int = Field(1_000_000, validation_alias=_env("YUQING_FEEDBACK_STREAM_MAXLEN"),
                                        description="Analyst labels kept in the Redis feedback stream (approximate cap).")

    # -- alert delivery (subscriptions, webhooks)
    deliver_group_id: str = Field("yuqing-deliver", validation_alias=_env("YUQING_DELIVER_GROUP_ID"),
                                  description="Kafka consumer group of the delivery worker (`yuqing deliver`).")
    deliver_max_attempts: int = Field(6, validation_alias=_env("YUQING_DELIVER_MAX_ATTEMPTS"),
                                      description="Webhook tries before a delivery becomes a dead letter.")
    deliver_backoff_base_s: float = Field(2.0, validation_alias=_env("YUQING_DELIVER_BACKOFF_BASE_S"),
                                          description="First retry delay; doubles each try (with jitter).")
    deliver_backoff_max_s: float = Field(600.0, validation_alias=_env("YUQING_DELIVER_BACKOFF_MAX_S"),
                                         description="Longest delay between two tries of one delivery.")
    deliver_timeout_s: float = Field(10.0, validation_alias=_env("YUQING_DELIVER_TIMEOUT_S"),
                                     description="Per-request webhook timeout.")
    deliver_poll_s: float = Field(1.0, validation_alias=_env("YUQING_DELIVER_POLL_S"),
                                  description="Longest a subscription's sender sleeps before re-checking due work.")
    deliver_log_max: int = Field(1000, validation_alias=_env("YUQING_DELIVER_LOG_MAX"),
                                 description="Delivery log entries kept per subscription.")
    webhook_allow_networks: str = Field("", validation_alias=_env("YUQING_WEBHOOK_ALLOW_NETWORKS"),
                                        description="Comma-separated CIDRs webhooks may reach although loopback/private/link-local (e.g. 10.20.0.0/16 for an on-prem receiver); public addresses are always allowed.")

    @field_validator("webhook_allow_networks")
    @classmethod
    def _networks(cls, v: str) -> str:
        import ipaddress

        for part in (p.strip() for p in v.split(",")):
            if part:
                try:
                    ipaddress.ip_network(part, strict=False)
                except ValueError as exc:
                    raise ValueError(f"not a network (CIDR or address): {part!r}") from exc
        return v

    log_level: str = Field("INFO", validation_alias=_env("YUQING_LOG_LEVEL"), description="Log level.")


def env_name(field: str) -> str:
    """The environment variable that sets ``field``."""
    alias = Settings.model_fields[field].validation_alias
    assert isinstance(alias, AliasChoices)
    return str(alias.choices[0])


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def child_env(settings: Settings) -> dict[str, str]:
    """The environment for a child process (a worker started by ``yuqing demo``, a test or a
    benchmark) that builds exactly ``settings``: this process's environment plus every field."""
    import os

    env = dict(os.environ)
    for field in Settings.model_fields:
        value = getattr(settings, field)
        if value is not None:
            env[env_name(field)] = str(value)
    return env
