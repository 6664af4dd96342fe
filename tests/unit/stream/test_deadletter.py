"""Dead letters always fit in a Kafka record and still identify the whole original."""
from __future__ import annotations

import base64
import hashlib

from services.core.schemas import SourceRef
from services.stream.deadletter import ORIGINAL_KEEP_MAX, dead_letter, dlq_record

ORIGIN = SourceRef(topic="yuqing.news.raw", partition=3, offset=41)
KAFKA_MAX_REQUEST = 1_048_576


def test_small_original_is_kept_whole() -> None:
    dl = dead_letter(b'{"id": 1', b"k", ORIGIN, "invalid_json", "bad")
    assert base64.b64decode(dl.original_b64) == b'{"id": 1'
    assert not dl.original_truncated and dl.original_size == 8
    assert dl.original_sha256 == hashlib.sha256(b'{"id": 1').hexdigest()


def test_oversized_original_and_key_keep_a_prefix_that_fits_one_record() -> None:
    value = b"x" * 3_000_000  # larger than any record the producer may send
    key = b"k" * 100_000
    dl = dead_letter(value, key, ORIGIN, "too_large", "e" * 10_000)
    topic, rkey, rvalue = dlq_record("yuqing.dlq", dl)
    assert len(rkey) + len(rvalue) < KAFKA_MAX_REQUEST - 10_000
    assert dl.original_truncated and dl.original_size == len(value)
    assert base64.b64decode(dl.original_b64) == value[:ORIGINAL_KEEP_MAX]
    assert dl.original_sha256 == hashlib.sha256(value).hexdigest()
    assert rkey == b"yuqing.news.raw:3:41"  # the idempotency key names the whole original


def test_the_dlq_key_is_the_origin_so_a_redelivery_is_one_record() -> None:
    a = dlq_record("dlq", dead_letter(b"v", None, ORIGIN, "schema", "x"))
    b = dlq_record("dlq", dead_letter(b"v", None, ORIGIN, "schema", "x"))
    assert a[1] == b[1]
