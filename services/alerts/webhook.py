"""Webhook signing: how a receiver knows a POST really came from yuqing and is fresh.

The signature is ``v1=<hex HMAC-SHA256(secret, "<timestamp>." + raw body)>`` in
``X-Yuqing-Signature``, with the Unix timestamp in ``X-Yuqing-Timestamp``. Binding the timestamp
into the MAC lets receivers reject replays older than a few minutes; signing the raw bytes (not
re-serialised JSON) means the receiver must verify before parsing. ``X-Yuqing-Delivery`` is the
idempotency key: a delivery retried (or resent after a worker restart) keeps its id, so
receivers dedupe on it. See docs/api.md for a verification snippet.
"""
from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Yuqing-Signature"
TIMESTAMP_HEADER = "X-Yuqing-Timestamp"
DELIVERY_HEADER = "X-Yuqing-Delivery"
ATTEMPT_HEADER = "X-Yuqing-Attempt"
SUBSCRIPTION_HEADER = "X-Yuqing-Subscription"
DEFAULT_TOLERANCE_S = 300


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify(secret: str, body: bytes, signature: str | None, timestamp: str | None, *,
           now: float | None = None, tolerance_s: float = DEFAULT_TOLERANCE_S) -> bool:
    """Receiver-side check (also used by the tests): constant-time compare, bounded clock skew."""
    if not signature or not timestamp:
        return False
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature)


def headers(secret: str, body: bytes, delivery_id: str, attempt: int, subscription_id: str,
            now: float | None = None) -> dict[str, str]:
    ts = int(time.time() if now is None else now)
    return {
        "Content-Type": "application/json",
        "User-Agent": "yuqing-webhook/1",
        TIMESTAMP_HEADER: str(ts),
        SIGNATURE_HEADER: sign(secret, ts, body),
        DELIVERY_HEADER: delivery_id,
        ATTEMPT_HEADER: str(attempt),
        SUBSCRIPTION_HEADER: subscription_id,
    }
