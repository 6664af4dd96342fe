"""API keys with scopes, stored as SHA-256 digests.

A key is ``yq_<key id>_<43 url-safe chars>``: the random part carries 256 bits from
:func:`secrets.token_urlsafe`, so a fast hash is enough. Slow, salted hashes (bcrypt, argon2)
exist to stop dictionary attacks on *low-entropy* human passwords; nobody can enumerate 2^256
candidates, so SHA-256 gives the same protection for a leaked Redis dump while letting a request
be authenticated with one O(1) lookup of ``sha256(key)``. The plain key is shown once, at
creation (``yuqing keys create``), and never stored or logged; the key id (not secret) names
the key in listings, logs and audit fields.

Scopes: ``read`` (GET endpoints), ``subscribe`` (manage subscriptions and silences, send label
feedback; implies read), ``admin`` (everything, including API keys; implies all).
"""
from __future__ import annotations

import hashlib
import json
import secrets
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field
from redis.asyncio import Redis

from services.core.backends import redis_errors
from services.core.schemas import utcnow

Scope = Literal["read", "subscribe", "admin"]
SCOPES: tuple[str, ...] = ("read", "subscribe", "admin")
_IMPLIES: dict[str, set[str]] = {
    "read": {"read"},
    "subscribe": {"subscribe", "read"},
    "admin": {"admin", "subscribe", "read"},
}
KEY_PREFIX = "yq_"


class ApiKey(BaseModel):
    """What is stored about a key (never the key itself)."""

    key_id: str
    name: str
    scopes: list[Scope]
    created_at: datetime
    created_by: str | None = None

    def allows(self, scope: str) -> bool:
        return any(scope in _IMPLIES[s] for s in self.scopes)


class ApiKeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    scopes: list[Scope] = Field(min_length=1, max_length=3)


class ApiKeyCreated(ApiKey):
    key: str = Field(description="The API key. Shown only now; store it safely.")


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key() -> tuple[str, str]:
    """A new (key id, key) pair."""
    key_id = secrets.token_hex(4)
    return key_id, f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


class KeyStore:
    """``<prefix>:apikeys`` maps sha256(key) -> ApiKey JSON; ``<prefix>:apikeys:ids`` maps
    key id -> digest (for listing and revoking by id)."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self.key = f"{prefix}:apikeys"
        self.ids_key = f"{prefix}:apikeys:ids"

    async def create(self, name: str, scopes: list[str],
                     created_by: str | None = None) -> ApiKeyCreated:
        unknown = set(scopes) - set(SCOPES)
        if unknown or not scopes:
            raise ValueError(f"scopes must be some of {', '.join(SCOPES)}; got {sorted(scopes)}")
        key_id, key = generate_key()
        meta = ApiKey(key_id=key_id, name=name, scopes=sorted(set(scopes), key=SCOPES.index),
                      created_at=utcnow(), created_by=created_by)
        with redis_errors("create"):
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hset(self.key, digest(key), meta.model_dump_json())
                pipe.hset(self.ids_key, key_id, digest(key))
                await pipe.execute()
        return ApiKeyCreated(**meta.model_dump(), key=key)

    async def lookup(self, key: str) -> ApiKey | None:
        if not key.startswith(KEY_PREFIX) or len(key) > 200:
            return None
        with redis_errors("lookup"):
            raw = await self._redis.hget(self.key, digest(key))
        return ApiKey.model_validate_json(raw) if raw else None

    async def list(self) -> list[ApiKey]:
        with redis_errors("list"):
            raw = await self._redis.hgetall(self.key)
        keys = [ApiKey.model_validate(json.loads(v)) for v in raw.values()]
        return sorted(keys, key=lambda k: (k.created_at, k.key_id))

    async def revoke(self, key_id: str) -> bool:
        with redis_errors("revoke"):
            d = await self._redis.hget(self.ids_key, key_id)
            if not d:
                return False
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hdel(self.key, d)
                pipe.hdel(self.ids_key, key_id)
                await pipe.execute()
        return True
