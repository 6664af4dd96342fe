"""Alert subscriptions: what an analyst wants to hear about, where, and how often.

A subscription is stored as one JSON value in a Redis hash (``<prefix>:subs``) so that the API
(which edits it) and the delivery worker (which reads it) share one source of truth without a
database. Timing follows Alertmanager's vocabulary so operators do not learn a new one:

* ``group_wait_s``: how long the first alert for an entity waits for others to join its group;
* ``group_interval_s``: after a group was sent, new alerts for that entity wait at least this long;
* ``repeat_interval_s``: an alert for the same entity *and* topic is not re-notified sooner.

Every lifecycle event of an alert is its own message with its own ``alert_id``: the first
crossing (``firing``) and each severity increase (``escalated``) are always delivered (an
escalation is news, never a "repeat"); the end of the episode (``resolved``) only to
subscriptions with ``notify_resolved``.

Webhook secrets are stored (they are needed to sign) but never leave through the API: every
response model masks them (:meth:`Subscription.public`).
"""
from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from redis.asyncio import Redis

from services.core.backends import redis_errors
from services.core.schemas import Severity, UtcDatetime, utcnow

MASK = "********"

Entity = Annotated[str, Field(min_length=1, max_length=16, pattern=r"^\$?[A-Za-z0-9.\-]+$|^\*$")]
Topic = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\s]+$")]
Source = Annotated[str, Field(min_length=1, max_length=128)]


def _norm_entity(e: str) -> str:
    return e.lstrip("$").upper()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Filters(_Strict):
    """Empty lists match everything; non-empty lists must contain the alert's value."""

    entities: list[Entity] = Field(default_factory=list, max_length=500,
                                   description="Tickers; the alert's entity must be one of them.")
    topics: list[Topic] = Field(default_factory=list, max_length=200,
                                description="Topics; the alert's topic must be one of them.")
    sources: list[Source] = Field(default_factory=list, max_length=200,
                                  description="Sources; one evidence document must come from one.")
    min_severity: Severity = Field("info", description="Lowest severity delivered.")

    @field_validator("entities")
    @classmethod
    def _entities(cls, v: list[str]) -> list[str]:
        return list(dict.fromkeys(_norm_entity(e) for e in v))


class WebhookChannelIn(_Strict):
    type: Literal["webhook"] = "webhook"
    url: str = Field(max_length=2048, pattern=r"^https?://[^\s/]+(/[^\s]*)?$",
                     description="http(s) URL the grouped alerts are POSTed to.")
    secret: SecretStr = Field(min_length=16, max_length=256,
                              description="HMAC-SHA256 key for X-Yuqing-Signature; never returned.")


class KafkaChannel(_Strict):
    type: Literal["kafka"] = "kafka"
    topic: str = Field(min_length=1, max_length=249, pattern=r"^[A-Za-z0-9._\-]+$",
                       description="Kafka topic the grouped alerts are produced to.")


class WebhookChannelOut(BaseModel):
    type: Literal["webhook"] = "webhook"
    url: str
    secret: str = Field(MASK, description="Always masked.")


Channel = Annotated[WebhookChannelIn | KafkaChannel, Field(discriminator="type")]
ChannelOut = Annotated[WebhookChannelOut | KafkaChannel, Field(discriminator="type")]


class SilenceIn(_Strict):
    """Mutes alerts for an entity and/or topic until ``until`` (both given: both must match)."""

    entity: Entity | None = None
    topic: Topic | None = None
    until: UtcDatetime
    comment: str | None = Field(None, max_length=500)

    @field_validator("entity")
    @classmethod
    def _entity(cls, v: str | None) -> str | None:
        return _norm_entity(v) if v else v

    @model_validator(mode="after")
    def _something(self) -> SilenceIn:
        if self.entity is None and self.topic is None:
            raise ValueError("a silence needs an entity, a topic or both")
        return self


class Silence(SilenceIn):
    id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12])
    created_at: UtcDatetime = Field(default_factory=utcnow)


class Timing(_Strict):
    group_wait_s: float = Field(
        30.0, ge=0, le=3600, description="Wait for more alerts of an entity before a first send.")
    group_interval_s: float = Field(
        300.0, ge=0, le=86400, description="After a send, new alerts of an entity wait.")
    repeat_interval_s: float = Field(
        4 * 3600.0, ge=0, le=7 * 86400, description="Same entity+topic is not re-notified sooner.")


NOTIFY_RESOLVED_DOC = ("Also deliver the episode's end (state resolved); first crossings and "
                       "escalations are always delivered.")


class SubscriptionIn(Timing):
    """Body of ``POST /v1/subscriptions``."""

    name: str = Field(min_length=1, max_length=200)
    filters: Filters = Field(default_factory=Filters)
    channel: Channel
    silences: list[SilenceIn] = Field(default_factory=list, max_length=100)
    enabled: bool = True
    notify_resolved: bool = Field(False, description=NOTIFY_RESOLVED_DOC)


class SubscriptionPatch(_Strict):
    """Body of ``PATCH /v1/subscriptions/{id}``: only the given fields change."""

    name: str | None = Field(None, min_length=1, max_length=200)
    filters: Filters | None = None
    channel: Channel | None = None
    silences: list[SilenceIn] | None = Field(None, max_length=100)
    enabled: bool | None = None
    notify_resolved: bool | None = Field(None, description=NOTIFY_RESOLVED_DOC)
    group_wait_s: float | None = Field(None, ge=0, le=3600)
    group_interval_s: float | None = Field(None, ge=0, le=86400)
    repeat_interval_s: float | None = Field(None, ge=0, le=7 * 86400)


class SubscriptionOut(BaseModel):
    """A subscription as the API returns it (secret masked)."""

    id: str
    name: str
    filters: Filters
    channel: ChannelOut
    silences: list[Silence]
    enabled: bool
    notify_resolved: bool = False
    group_wait_s: float
    group_interval_s: float
    repeat_interval_s: float
    created_at: datetime
    updated_at: datetime
    owner_key_id: str | None = None


class Subscription(BaseModel):
    """The stored subscription, secret included (only the delivery worker reads it)."""

    id: str
    name: str
    filters: Filters
    channel: Channel
    silences: list[Silence] = Field(default_factory=list)
    enabled: bool = True
    notify_resolved: bool = False
    group_wait_s: float = 30.0
    group_interval_s: float = 300.0
    repeat_interval_s: float = 4 * 3600.0
    created_at: UtcDatetime
    updated_at: UtcDatetime
    owner_key_id: str | None = None

    def public(self) -> SubscriptionOut:
        data = self.model_dump(mode="json", exclude={"channel"})
        if isinstance(self.channel, WebhookChannelIn):
            channel: Any = WebhookChannelOut(url=self.channel.url)
        else:
            channel = self.channel
        return SubscriptionOut(**data, channel=channel)

    def to_json(self) -> str:
        data = self.model_dump(mode="json")
        if isinstance(self.channel, WebhookChannelIn):
            data["channel"]["secret"] = self.channel.secret.get_secret_value()
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: bytes | str) -> Subscription:
        return cls.model_validate_json(raw)

    def __repr__(self) -> str:  # keep secrets out of logs even on accidental repr
        return f"Subscription(id={self.id!r}, name={self.name!r}, channel={self.channel.type})"


def new_subscription(body: SubscriptionIn, owner_key_id: str | None = None) -> Subscription:
    now = utcnow()
    return Subscription(
        id=uuid.uuid4().hex[:16], name=body.name, filters=body.filters, channel=body.channel,
        silences=[Silence(**s.model_dump()) for s in body.silences], enabled=body.enabled,
        notify_resolved=body.notify_resolved,
        group_wait_s=body.group_wait_s, group_interval_s=body.group_interval_s,
        repeat_interval_s=body.repeat_interval_s, created_at=now, updated_at=now,
        owner_key_id=owner_key_id)


def apply_patch(sub: Subscription, patch: SubscriptionPatch) -> Subscription:
    changes: dict[str, Any] = {}
    for name in patch.model_fields_set:
        value = getattr(patch, name)
        if value is None:
            continue
        if name == "silences":
            value = [Silence(**s.model_dump()) for s in value]
        changes[name] = value
    timing = Timing(group_wait_s=changes.get("group_wait_s", sub.group_wait_s),
                    group_interval_s=changes.get("group_interval_s", sub.group_interval_s),
                    repeat_interval_s=changes.get("repeat_interval_s", sub.repeat_interval_s))
    changes.update(timing.model_dump())
    return sub.model_copy(update={**changes, "updated_at": utcnow()})


class SubscriptionStore:
    """Subscriptions in one Redis hash; ``<prefix>:subs:version`` bumps on each change so the
    delivery worker can reload cheaply."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self.key = f"{prefix}:subs"
        self.version_key = f"{prefix}:subs:version"

    async def put(self, sub: Subscription) -> None:
        with redis_errors("put"):
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hset(self.key, sub.id, sub.to_json())
                pipe.incr(self.version_key)
                await pipe.execute()

    async def get(self, sub_id: str) -> Subscription | None:
        with redis_errors("get"):
            raw = await self._redis.hget(self.key, sub_id)
        return Subscription.from_json(raw) if raw else None

    async def all(self) -> list[Subscription]:
        with redis_errors("all"):
            raw = await self._redis.hgetall(self.key)
        subs = [Subscription.from_json(v) for v in raw.values()]
        return sorted(subs, key=lambda s: (s.created_at, s.id))

    async def delete(self, sub_id: str) -> bool:
        with redis_errors("delete"):
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hdel(self.key, sub_id)
                pipe.incr(self.version_key)
                removed, _ = await pipe.execute()
        return bool(removed)

    async def version(self) -> int:
        with redis_errors("version"):
            return int(await self._redis.get(self.version_key) or 0)
