"""All of yuqing's settings, and the only module that reads the environment.

Components never call ``os.environ``: they receive plain values (a bootstrap string, a URL,
a topic name) from a :class:`Settings` built once at process start. That keeps every stage
testable with explicit arguments and makes this file the single list of knobs, which the
README's configuration table is checked against (``tests/unit/core/test_config.py``).

Every field is read from ``YUQING_<FIELD>`` (two keep their historical short names). Only
what an operator has a reason to vary is a setting: tuning constants that nobody varies
(batch windows, fetch sizes, pool sizes) live as named constants beside the code they tune,
with the measurement that chose them. Every name yuqing gives to topics, consumer groups,
indices and Redis keys derives from one ``namespace`` (the properties below), so a test, the
demo or a second deployment on the same cluster never touches another's data.
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.core.errors import ConfigError

ENV_PREFIX = "YUQING_"
NO_FALLBACK = "none"
_LANG_RE = re.compile(r"^[a-z]{2,3}$")


class Settings(BaseSettings):
    """Runtime configuration (``YUQING_<FIELD>``, see the README's table)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=None, extra="ignore",
                                      populate_by_name=True, frozen=True)

    # -- connections
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, comma separated.")
    es_url: str = Field("http://127.0.0.1:9200", description="Elasticsearch URL.")
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis URL.")

    # -- one namespace for every name yuqing gives to things it creates (see Names below)
    namespace: str = Field("yuqing", pattern=r"^[a-z0-9][a-z0-9._-]{0,79}$",
                           description="Names topics (<ns>.news.raw, <ns>.docs.clean, ...), consumer groups (<ns>-<role>), Elasticsearch indices (<ns>-docs-*, <ns>-alerts) and Redis keys (<ns>:...); one value per deployment, tests and the demo each use their own.")
    topic_partitions: int = Field(4, description="Partitions for topics yuqing creates.")

    # -- stream processing
    data_dir: Path = Field(Path("var"), description="Local state folder (Faust tables, delivery state).")
    max_message_bytes: int = Field(1_000_000, description="Larger raw messages go to the DLQ.")
    watchlist_path: Path | None = Field(None, validation_alias=AliasChoices("YUQING_WATCHLIST"),
                                        description="Watchlist file (company names/aliases to tickers); default: the shipped example.")
    taxonomy_path: Path | None = Field(None, validation_alias=AliasChoices("YUQING_TAXONOMY"),
                                       description="Topic taxonomy file; default: the shipped taxonomy.")
    max_event_age_days: float = Field(30.0, gt=0, description="Items whose published_at is older go to the DLQ (reason stale_published_at) instead of creating stray daily indices; raise it for a backfill.")
    dedup_window_s: int = Field(6 * 3600, description="Duplicates of a story within this window are dropped and counted.")

    # -- classification
    model_registry: Path = Field(Path("var/models"), description="Model registry folder (versions and a production pointer per language).")
    model_path: Path | None = Field(None, description="Serve this checkpoint folder instead of the registry's production models: it serves its own language, the others follow YUQING_LANGUAGE_FALLBACK.")
    device: str = Field("auto", description="Inference device: auto, cpu or cuda.")
    classify_max_batch: int = Field(0, description="Most documents per inference batch; 0: auto (64 on CPU, 256 on CUDA).")
    classify_actors: int = Field(4, ge=1, le=16, description="Classify agent actors per process sharing its one inference worker: while some wait for results, others fill the next batch.")
    model_poll_s: float = Field(5.0, description="How often the worker checks the registry's production pointer.")
    classify_backend: Literal["auto", "fp32", "int8", "onnx", "onnx-int8", "onnx-int8-ffn"] = Field("auto", description="CPU inference backend: auto (the model's own measured choice, e.g. onnx-int8 for the Chinese model, else onnx when installed, else fp32), fp32, int8 (torch), onnx, onnx-int8 or onnx-int8-ffn (int8 feed-forward layers only: ~1.5x onnx for the English model, docs/model.md). CUDA runs bf16.")
    classify_forward_threads: int = Field(0, description="CPU: batches run side by side, the cores split between them; 0: auto (one per core, at most 4).")
    classify_compile: str | None = Field(None, description="torch.compile mode for the CUDA path (e.g. reduce-overhead); unset: off.")
    languages: str = Field("en,zh", description="Languages the classify worker serves, comma separated: one model each, the registry's production pointer of that language (production.json for en, production-<lang>.json), each hot-loaded; one with no model yet is logged at start-up and follows the fallback until its pointer appears.")
    language_fallback: str = Field("en", description="A document whose language has no model serving: a language of YUQING_LANGUAGES scores it (stamped sentiment.fallback), or none: it goes to the DLQ (reason no_model).")

    stop_grace_s: float = Field(30.0, ge=0, description="A stopping worker finishes its batches in flight for up to this long; past it, it exits without committing them (they are processed again).")

    # -- trends (Redis)
    trends_retention_h: int = Field(48, description="Minute buckets expire after this many hours.")

    # -- index (Elasticsearch)
    es_retention_days: int = Field(30, description="Daily indices older than this are deleted by the retention job.")
    es_zh_analysis: str = Field("bigram", pattern=r"^(bigram|smartcn|ik)$", description="How Chinese is analysed in the title.zh/text.zh subfields of new daily indices: bigram (built in, searched as phrases), or smartcn / ik when the cluster has that analysis plugin (searched as all-words matches); see docs/search.md.")

    # -- alerts
    alert_window_s: int = Field(300, description="Detection window (seconds of event time); each is scored on the trailing 30 minutes and the trailing hour.")
    alert_min_count: int = Field(5, description="A trailing span (30 minutes, 1 hour) is not judged while it holds fewer negative documents than this.")
    alert_fire_score: float = Field(50.0, ge=1, le=100, description="Anomaly score (0-100) at which an episode fires (severity info; warning from 75, critical from 90).")
    alert_warmup_hours: int = Field(2, ge=0, description="Hours of history a series needs before it may alert (until it has weeks, its expectation leans on its recent median).")
    alert_lateness_s: int = Field(60, description="A window is judged (and joins the baseline) this long after its end, in event time: later documents still count but cannot change its verdict.")

    # -- HTTP API
    api_host: str = Field("127.0.0.1", description="API bind address.")
    api_port: int = Field(8080, description="API port.")
    api_max_range_days: int = Field(90, description="Longest time range a trends/alerts/documents query may span.")
    api_max_body_bytes: int = Field(1_048_576, ge=1024, description="Larger request bodies are refused with 413 before they are read.")

    # -- alert delivery (subscriptions, webhooks)
    deliver_max_attempts: int = Field(6, description="Webhook tries before a delivery becomes a dead letter.")
    deliver_timeout_s: float = Field(10.0, description="Per-request webhook timeout.")
    webhook_allow_networks: str = Field("", description="Comma-separated CIDRs webhooks may reach although loopback/private/link-local (e.g. 10.20.0.0/16 for an on-prem receiver); public addresses are always allowed.")


    def model_copy(self, *, update=None, deep: bool = False) -> Settings:  # type: ignore[override]
        """As pydantic's, but an unknown key is an error: updating a derived name (a topic, a
        prefix) would otherwise be silently ignored -- change ``namespace`` instead."""
        unknown = set(update or {}) - set(type(self).model_fields)
        if unknown:
            raise TypeError(f"not settings: {sorted(unknown)} (derived names follow namespace)")
        return super().model_copy(update=update, deep=deep)

    # -- names derived from the namespace
    @property
    def topic_news_raw(self) -> str:
        return f"{self.namespace}.news.raw"

    @property
    def topic_comments_raw(self) -> str:
        return f"{self.namespace}.comments.raw"

    @property
    def topic_docs_clean(self) -> str:
        return f"{self.namespace}.docs.clean"

    @property
    def topic_docs_scored(self) -> str:
        return f"{self.namespace}.docs.scored"

    @property
    def topic_alerts(self) -> str:
        return f"{self.namespace}.alerts"

    @property
    def topic_dlq(self) -> str:
        return f"{self.namespace}.dlq"

    @property
    def topic_labels(self) -> str:
        return f"{self.namespace}.labels"

    @property
    def app_id(self) -> str:
        """Faust application id: the consumer groups are ``<app_id>-<role>``."""
        return self.namespace

    @property
    def deliver_group_id(self) -> str:
        return f"{self.namespace}-deliver"

    @property
    def es_index_prefix(self) -> str:
        """Daily document indices are ``<prefix>-YYYY.MM.DD`` behind the alias ``<prefix>``."""
        return f"{self.namespace}-docs"

    @property
    def es_alerts_index(self) -> str:
        return f"{self.namespace}-alerts"

    @property
    def es_annotations_index(self) -> str:
        """Model-change annotations written by the alerts detector."""
        return f"{self.namespace}-annotations"

    @property
    def redis_prefix(self) -> str:
        return self.namespace

    @property
    def language_list(self) -> tuple[str, ...]:
        """``languages`` as a tuple, in the configured order."""
        return tuple(self.languages.split(","))

    @property
    def fallback_language(self) -> str | None:
        """The language whose model scores documents of a language with none; None: DLQ."""
        return None if self.language_fallback == NO_FALLBACK else self.language_fallback

    @field_validator("languages")
    @classmethod
    def _languages(cls, v: str) -> str:
        langs = [p.strip().lower() for p in v.split(",") if p.strip()]
        bad = [p for p in langs if not _LANG_RE.match(p)]
        if bad or not langs:
            raise ValueError("expected comma-separated language codes such as en,zh"
                             + (f" (not a code: {', '.join(bad)})" if bad else ""))
        return ",".join(dict.fromkeys(langs))

    @field_validator("language_fallback")
    @classmethod
    def _language_fallback(cls, v: str) -> str:
        v = v.strip().lower()
        if v != NO_FALLBACK and not _LANG_RE.match(v):
            raise ValueError(f"expected a language code such as en, or {NO_FALLBACK}")
        return v

    @model_validator(mode="after")
    def _fallback_is_served(self) -> Settings:
        if self.language_fallback != NO_FALLBACK and self.language_fallback not in self.language_list:
            raise ValueError(f"YUQING_LANGUAGE_FALLBACK={self.language_fallback} is not one of "
                             f"YUQING_LANGUAGES ({self.languages}): add it there, or use "
                             f"{NO_FALLBACK} to dead-letter such documents")
        return self

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

    log_level: str = Field("INFO", description="Log level.")


def env_name(field: str) -> str:
    """The environment variable that sets ``field``."""
    alias = Settings.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return ENV_PREFIX + field.upper()


def load_settings() -> Settings:
    """Settings from the environment; a bad value is a :class:`ConfigError` whose one-line
    message names the variable, the value and what is wrong (no traceback for a typo)."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            if not err["loc"]:  # a rule across fields: its message names them
                problems.append(err["msg"].removeprefix("Value error, "))
                continue
            field = str(err["loc"][0]) if err["loc"] else "?"
            name = env_name(field) if field in Settings.model_fields else field
            problems.append(f"{name}={err.get('input')!r}: {err['msg']}")
        raise ConfigError("bad setting " + "; ".join(problems)) from exc


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()


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
