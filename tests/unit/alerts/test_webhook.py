"""Webhook signatures: what receivers verify (docs/api.md shows the same steps)."""
from __future__ import annotations

import hashlib
import hmac

from services.alerts import webhook

SECRET = "s3cret-0123456789abcdef"
BODY = b'{"delivery_id":"d1","alerts":[]}'


def test_signature_is_hmac_sha256_of_timestamp_dot_body():
    sig = webhook.sign(SECRET, 1_700_000_000, BODY)
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert sig == "v1=" + expected


def test_headers_verify():
    h = webhook.headers(SECRET, BODY, "d1", 2, "sub1", now=1_700_000_000)
    assert h[webhook.DELIVERY_HEADER] == "d1"
    assert h[webhook.ATTEMPT_HEADER] == "2"
    assert webhook.verify(SECRET, BODY, h[webhook.SIGNATURE_HEADER], h[webhook.TIMESTAMP_HEADER],
                          now=1_700_000_010)


def test_verify_rejects_tampering_wrong_secret_and_stale_timestamps():
    ts = 1_700_000_000
    sig = webhook.sign(SECRET, ts, BODY)
    assert not webhook.verify(SECRET, BODY + b" ", sig, str(ts), now=ts)
    assert not webhook.verify("another-secret-0123456789", BODY, sig, str(ts), now=ts)
    assert not webhook.verify(SECRET, BODY, sig, str(ts), now=ts + 301)
    assert not webhook.verify(SECRET, BODY, sig, str(ts + 1), now=ts)  # timestamp is signed
    assert not webhook.verify(SECRET, BODY, None, str(ts), now=ts)
    assert not webhook.verify(SECRET, BODY, sig, "yesterday", now=ts)
