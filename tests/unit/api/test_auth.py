"""API keys: format, hashing and scope rules (the Redis side is in tests/integration)."""
from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from services.api.auth import ApiKey, digest, generate_key


def test_keys_are_long_random_and_hashed_with_sha256():
    ids, keys = set(), set()
    for _ in range(50):
        key_id, key = generate_key()
        assert key.startswith(f"yq_{key_id}_")
        assert len(key.split("_", 2)[2]) >= 43  # 32 random bytes, url-safe base64
        ids.add(key_id)
        keys.add(key)
        assert digest(key) == hashlib.sha256(key.encode()).hexdigest()
    assert len(keys) == 50


@pytest.mark.parametrize("scopes,needed,allowed", [
    (["read"], "read", True), (["read"], "subscribe", False), (["read"], "admin", False),
    (["subscribe"], "read", True), (["subscribe"], "subscribe", True),
    (["subscribe"], "admin", False),
    (["admin"], "read", True), (["admin"], "subscribe", True), (["admin"], "admin", True),
])
def test_scope_implications(scopes, needed, allowed):
    key = ApiKey(key_id="k", name="n", scopes=scopes, created_at=datetime.now(UTC))
    assert key.allows(needed) is allowed
