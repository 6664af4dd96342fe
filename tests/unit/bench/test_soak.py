"""The soak harness: it refuses the default stack, and its malformed cases are what it says."""
from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from bench.soak import SoakArgs, SoakRefused, malformed_cases, plan_feed, stack_for
from services.core.config import Settings
from services.core.errors import InputError
from services.ingest.decode import decode
from services.ingest.pipeline import Ingestor


def test_refuses_default_ports_and_non_loopback(monkeypatch):
    monkeypatch.delenv("YUQING_STACK_DIR", raising=False)
    # the defaults spelled out: this shell's YUQING_* (CI may use other ports) must not count
    default = Settings(kafka_bootstrap="127.0.0.1:9092", es_url="http://127.0.0.1:9200",
                       redis_url="redis://127.0.0.1:6379/0")
    with pytest.raises(SoakRefused, match="default port"):
        stack_for(default, SoakArgs(stack_dir="/tmp/x"))
    own = Settings(kafka_bootstrap="127.0.0.1:29092", es_url="http://127.0.0.1:29200",
                   redis_url="redis://127.0.0.1:26379/0")
    st = stack_for(own, SoakArgs(stack_dir="/tmp/x"))
    assert st.env["YUQING_KAFKA_PORT"] == "29092" and st.env["YUQING_REDIS_PORT"] == "26379"
    with pytest.raises(SoakRefused, match="YUQING_STACK_DIR"):
        stack_for(own, SoakArgs(stack_dir=None))
    with pytest.raises(SoakRefused, match="loopback"):
        stack_for(own.model_copy(update={"es_url": "http://10.1.2.3:29200"}),
                  SoakArgs(stack_dir="/tmp/x"))
    assert stack_for(default, SoakArgs(stack_dir="/tmp/x", allow_default_stack=True))


def test_each_malformed_case_gets_the_reason_the_harness_expects():
    now = datetime.now(UTC)
    ing = Ingestor(linker=None, tagger=None, dedup_store=None, max_bytes=1_000_000,
                   max_chars=20_000, clock=lambda: now)
    for case, kind, make, reason in malformed_cases(now, "t"):
        value = make(3)
        try:
            ing.clean(decode(value, kind, 1_000_000), kind, None)
            got = "valid"
        except InputError as exc:
            got = exc.reason
        assert got == reason, case


def test_plan_mixes_every_case_in():
    plan, info = plan_feed(SoakArgs(minutes=2, rate=4), "t", datetime.now(UTC))
    cases = Counter(p.case for p in plan)
    assert {c for c, *_ in malformed_cases(datetime.now(UTC), "t")} <= set(cases)
    assert cases["title_800k"] == cases["value_2mb"] == cases["near_1mb"] == 3
    assert cases["copy"] > 0 and cases["resend"] > 0
    assert datetime.fromisoformat(info["feed_end"]) <= datetime.now(UTC)
    assert datetime.fromisoformat(info["feed_start"]) > datetime.now(UTC) - timedelta(days=2)
