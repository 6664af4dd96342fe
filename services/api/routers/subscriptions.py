"""``/v1/subscriptions``: CRUD, silences, and each subscription's delivery log."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request, Response
from pydantic import BaseModel

from services.alerts.egress import EgressPolicy, WebhookTargetRefused
from services.alerts.subscriptions import (
    KafkaChannel,
    Silence,
    SilenceIn,
    Subscription,
    SubscriptionIn,
    SubscriptionOut,
    SubscriptionPatch,
    WebhookChannelIn,
    apply_patch,
    new_subscription,
)
from services.api.auth import ApiKey
from services.api.deps import (
    DeliveryDep,
    Limit,
    Offset,
    ReadKey,
    SettingsDep,
    SubscribeKey,
    SubsDep,
)
from services.core.config import Settings
from services.core.schemas import utcnow
from services.stream.topics import pipeline_topics

router = APIRouter(prefix="/v1/subscriptions", tags=["subscriptions"])

SubId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")]
SilenceId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")]


class SubscriptionPage(BaseModel):
    items: list[SubscriptionOut]
    total: int
    offset: int
    limit: int


class DeliveryLogPage(BaseModel):
    items: list[dict[str, Any]]
    total: int
    offset: int
    limit: int
    state: dict[str, int]


async def _owned(subs: Any, sub_id: str, key: ApiKey) -> Subscription:
    """The subscription, if ``key`` may change it: the key that created it, or an admin key.
    Teams share one deployment; one desk's subscribe key must not mute, redirect or delete
    another desk's alerts."""
    sub = await _get(subs, sub_id)
    if key.allows("admin") or (sub.owner_key_id is not None and sub.owner_key_id == key.key_id):
        return sub
    raise HTTPException(403, f"subscription {sub_id!r} belongs to another API key; change it "
                             "with the key that created it or an admin key")


def _check_target(body: SubscriptionIn | SubscriptionPatch, settings: Settings) -> None:
    """A webhook aimed at an internal network, or a Kafka channel aimed at one of yuqing's own
    topics (alerts there would be read as pipeline input or training labels), is a 422 now,
    not a dead letter later."""
    channel = body.channel
    if isinstance(channel, KafkaChannel) and channel.topic in pipeline_topics(settings):
        raise HTTPException(422, f"topic {channel.topic!r} is one of yuqing's own pipeline "
                                 "topics; deliver alerts to a topic of your own")
    if isinstance(channel, WebhookChannelIn):
        try:
            EgressPolicy.from_setting(settings.webhook_allow_networks).check_written(channel.url)
        except WebhookTargetRefused as exc:
            raise HTTPException(422, str(exc)) from exc


async def _canonical(request: Request, body: SubscriptionIn | SubscriptionPatch) -> Any:
    """Entities as the pipeline spells them (watchlist canonical tickers, so ``GOOG`` matches
    alerts on ``GOOGL``); an entity yuqing has never seen is a 400, as everywhere in the API."""
    changes: dict[str, Any] = {}
    if body.filters is not None and body.filters.entities:
        resolved = [e if e == "*" else await request.app.state.entities.resolve(e)
                    for e in body.filters.entities]
        changes["filters"] = body.filters.model_copy(
            update={"entities": list(dict.fromkeys(resolved))})
    if body.silences:
        watchlist = request.app.state.watchlist
        changes["silences"] = [s.model_copy(update={"entity": silence_entity(watchlist, s.entity)})
                               if s.entity and s.entity != "*" else s for s in body.silences]
    return body.model_copy(update=changes) if changes else body


def silence_entity(watchlist: Any, entity: str) -> str:
    """A silence's entity as the alerts spell it: any code spelling or a Chinese full or short
    name of a watchlist company becomes its id (贵州茅台 -> 600519.SH). Unlike a filter, a
    ticker yuqing has not seen yet may be muted ahead of time; a name that is neither on the
    watchlist nor spelled like a ticker, or an ambiguous short name, is a 400."""
    found = watchlist.resolve(entity)
    if found.entity:
        return found.entity
    if found.ambiguous is not None:
        options = " or ".join(watchlist.describe(t) for t in found.ambiguous.candidates)
        raise HTTPException(400, f"entity {entity!r} is ambiguous: give {options}")
    if found.ticker:
        return found.ticker
    raise HTTPException(400, f"unknown entity {entity!r}: not a name on the watchlist; give "
                             "its code (600519.SH) or add it to the watchlist")


async def _get(subs: SubsDep, sub_id: str) -> Subscription:
    sub = await subs.get(sub_id)
    if sub is None:
        raise HTTPException(404, f"subscription {sub_id!r} not found")
    return sub


@router.post("", status_code=201, response_model=SubscriptionOut,
             summary="Create a subscription (scope: subscribe)")
async def create(request: Request, body: SubscriptionIn, subs: SubsDep, settings: SettingsDep,
                 key: SubscribeKey) -> SubscriptionOut:
    _check_target(body, settings)
    sub = new_subscription(await _canonical(request, body), owner_key_id=key.key_id)
    await subs.put(sub)
    return sub.public()


@router.get("", response_model=SubscriptionPage, summary="List subscriptions (scope: read)")
async def list_(subs: SubsDep, _: ReadKey, offset: Offset = 0,
                limit: Limit = 50) -> SubscriptionPage:
    items = await subs.all()
    return SubscriptionPage(items=[s.public() for s in items[offset:offset + limit]],
                            total=len(items), offset=offset, limit=limit)


@router.get("/{sub_id}", response_model=SubscriptionOut, summary="Get a subscription (scope: read)")
async def get(sub_id: SubId, subs: SubsDep, _: ReadKey) -> SubscriptionOut:
    return (await _get(subs, sub_id)).public()


@router.patch("/{sub_id}", response_model=SubscriptionOut,
              summary="Change some fields of a subscription (scope: subscribe; owner or admin)")
async def update(request: Request, sub_id: SubId, body: SubscriptionPatch, subs: SubsDep,
                 settings: SettingsDep, key: SubscribeKey) -> SubscriptionOut:
    _check_target(body, settings)
    sub = apply_patch(await _owned(subs, sub_id, key), await _canonical(request, body))
    await subs.put(sub)
    return sub.public()


@router.delete("/{sub_id}", status_code=204, response_class=Response,
               summary="Delete a subscription and its delivery state (scope: subscribe; owner or admin)")
async def delete(sub_id: SubId, subs: SubsDep, state: DeliveryDep, key: SubscribeKey) -> Response:
    await _owned(subs, sub_id, key)
    if not await subs.delete(sub_id):
        raise HTTPException(404, f"subscription {sub_id!r} not found")
    await state.purge(sub_id)
    return Response(status_code=204)


@router.post("/{sub_id}/silences", status_code=201, response_model=Silence,
             summary="Mute an entity and/or topic until a time (scope: subscribe; owner or admin)")
async def add_silence(request: Request, sub_id: SubId, body: SilenceIn, subs: SubsDep,
                      key: SubscribeKey) -> Silence:
    sub = await _owned(subs, sub_id, key)
    silence = Silence(**body.model_dump())
    if silence.entity and silence.entity != "*":
        silence.entity = silence_entity(request.app.state.watchlist, silence.entity)
    active = [s for s in sub.silences if s.until > utcnow()]  # expired ones are dropped here
    if len(active) >= 100:
        raise HTTPException(400, "a subscription holds at most 100 active silences")
    await subs.put(sub.model_copy(update={"silences": [*active, silence]}))
    return silence


@router.delete("/{sub_id}/silences/{silence_id}", status_code=204, response_class=Response,
               summary="Remove a silence (scope: subscribe; owner or admin)")
async def delete_silence(sub_id: SubId, silence_id: SilenceId, subs: SubsDep,
                         key: SubscribeKey) -> Response:
    sub = await _owned(subs, sub_id, key)
    kept = [s for s in sub.silences if s.id != silence_id]
    if len(kept) == len(sub.silences):
        raise HTTPException(404, f"silence {silence_id!r} not found")
    await subs.put(sub.model_copy(update={"silences": kept}))
    return Response(status_code=204)


@router.get("/{sub_id}/deliveries", response_model=DeliveryLogPage,
            summary="Delivery log, newest first (scope: read)")
async def deliveries(sub_id: SubId, subs: SubsDep, state: DeliveryDep, _: ReadKey,
                     offset: Offset = 0, limit: Limit = 50) -> DeliveryLogPage:
    await _get(subs, sub_id)
    items, total = await state.read_log(sub_id, offset, limit)
    return DeliveryLogPage(items=items, total=total, offset=offset, limit=limit,
                           state=await state.pending(sub_id))


@router.get("/{sub_id}/dead-letters", response_model=DeliveryLogPage,
            summary="Deliveries that failed every try, newest first (scope: read)")
async def dead_letters(sub_id: SubId, subs: SubsDep, state: DeliveryDep, _: ReadKey,
                       offset: Offset = 0, limit: Limit = 50) -> DeliveryLogPage:
    await _get(subs, sub_id)
    items, total = await state.read_dead(sub_id, offset, limit)
    return DeliveryLogPage(items=items, total=total, offset=offset, limit=limit,
                           state=await state.pending(sub_id))
