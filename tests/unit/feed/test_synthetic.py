"""The synthetic feed says the truth about itself: what is valid, a copy, a spike."""
from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta

from services.core.errors import InputError
from services.feed.synthetic import (
    COMPANIES,
    FeedItem,
    FeedSpec,
    SpikeSpec,
    generate,
    read_jsonl,
    write_jsonl,
)
from services.ingest.decode import decode
from services.ingest.dedup import story_fingerprint

START = datetime(2026, 11, 27, tzinfo=UTC)


def _spec(**kw) -> FeedSpec:
    return FeedSpec(start=START, items=kw.pop("items", 1200), **kw)


def test_deterministic_for_a_seed_and_different_across_seeds() -> None:
    a, b = generate(_spec(seed=3)), generate(_spec(seed=3))
    assert [x.value for x in a] == [x.value for x in b]
    assert [x.value for x in generate(_spec(seed=4))] != [x.value for x in a]


def test_sorted_within_span_and_about_the_requested_size() -> None:
    items = generate(_spec(invalid_share=0.02))
    times = [it.published_at for it in items]
    assert times == sorted(times)
    assert START <= times[0] and times[-1] <= START + timedelta(days=1, minutes=15)
    assert 1200 <= len(items) <= 1200 * 1.05  # + syndicated copies


def test_every_valid_item_decodes_and_every_invalid_one_fails_with_its_reason() -> None:
    items = generate(_spec(invalid_share=0.05))
    reasons = Counter()
    for it in items:
        bad = it.meta.get("invalid")
        try:
            decode(it.value, it.kind, 1_000_000)
        except InputError as exc:
            assert bad == exc.reason, (it.value, exc)
            reasons[exc.reason] += 1
        else:
            assert bad is None, it.value
    assert sum(reasons.values()) == round(1200 * 0.05)
    assert {"invalid_json", "not_utf8", "schema", "not_object"} >= set(reasons)


def test_copies_are_duplicates_and_nothing_else_is() -> None:
    """The feed's duplicates are exactly what ingest's fingerprint calls duplicates."""
    items = [it for it in generate(_spec(items=2000, copy_share=0.05))
             if not it.meta.get("invalid")]
    owner: dict[str, str] = {}
    dups = 0
    for it in items:
        v = json.loads(it.value)
        fp = (story_fingerprint("news", v["title"], v["body"]) if it.kind == "news"
              else story_fingerprint("comment", None, v["text"]))
        if fp is None:
            continue
        if fp in owner:
            assert it.meta.get("copy_of") == owner[fp], (v, owner[fp])
            dups += 1
        else:
            assert not it.meta.get("copy_of"), v
            owner[fp] = v["id"]
    assert dups == sum(1 for it in items if it.meta.get("copy_of")) > 0


def test_spike_is_negative_news_and_comments_for_one_company_in_a_few_minutes() -> None:
    spike = SpikeSpec(ticker="NVDA", at_s=10 * 3600, duration_s=240, items=30)
    items = generate(_spec(spike=spike))
    spiked = [it for it in items if it.meta["spike"]]
    assert len(spiked) == 30
    assert {it.meta["ticker"] for it in spiked} == {"NVDA"}
    assert {it.meta["label"] for it in spiked} == {"negative"}
    assert {it.kind for it in spiked} == {"news", "comment"}
    t0 = START + timedelta(seconds=spike.at_s)
    assert all(t0 <= it.published_at <= t0 + timedelta(seconds=240) for it in spiked)
    first = json.loads(spiked[0].value)
    assert "Nvidia" in first.get("title", first.get("text", ""))


def test_a_dozen_companies_with_uneven_volume() -> None:
    items = [it for it in generate(_spec(items=3000, spike=None)) if it.meta.get("ticker")]
    per = Counter(it.meta["ticker"] for it in items)
    assert set(per) == {t for t, _ in COMPANIES}
    assert max(per.values()) > 2 * min(per.values())


def test_jsonl_roundtrip_keeps_bytes_kinds_times(tmp_path) -> None:
    items = generate(_spec(items=200, invalid_share=0.05))
    path = tmp_path / "feed.jsonl"
    assert write_jsonl(items, path) == len(items)
    back = list(read_jsonl(path))
    assert [(b.kind, b.published_at) for b in back] == [(a.kind, a.published_at) for a in items]
    for a, b in zip(items, back, strict=True):
        if a.meta.get("invalid") in ("invalid_json", "not_utf8"):
            assert a.value == b.value
        else:
            assert json.loads(a.value) == json.loads(b.value)


def test_read_jsonl_accepts_bare_producer_messages(tmp_path) -> None:
    path = tmp_path / "bare.jsonl"
    path.write_text(
        json.dumps({"id": "1", "source": "x", "published_at": "2026-11-27T10:00:00Z",
                    "title": "Apple beats"}) + "\n\n"
        + json.dumps({"id": "2", "source": "y", "published_at": "2026-11-27T09:00:00",
                      "text": "$TSLA lol", "author": "a", "ticker": "TSLA"}) + "\n")
    got = list(read_jsonl(path))
    assert [g.kind for g in got] == ["news", "comment"]
    assert got[1].published_at == datetime(2026, 11, 27, 9, tzinfo=UTC)
    assert got[1].key == b"TSLA"
    assert isinstance(got[0], FeedItem)


def test_chinese_items_and_one_chinese_spike() -> None:
    from services.feed.synthetic import COMPANIES_ZH

    spike = SpikeSpec(ticker="300750.SZ", at_s=10 * 3600, duration_s=240, items=20)
    items = generate(_spec(items=1500, zh_share=0.3, spike_zh=spike))
    zh = [it for it in items if it.meta.get("lang") == "zh"]
    assert 0.2 < len(zh) / len(items) < 0.4
    assert {it.meta["ticker"] for it in zh} <= {t for t, _ in COMPANIES_ZH}
    spiked = [it for it in zh if it.meta["spike"]]
    assert len(spiked) == 20 and {it.meta["ticker"] for it in spiked} == {"300750.SZ"}
    assert {it.kind for it in spiked} == {"news", "comment"}
    values = [json.loads(it.value) for it in zh]
    assert all("宁德时代" in v.get("title", v.get("text", "")) for v in
               (json.loads(it.value) for it in spiked))
    tagged = sum(1 for v in values if "lang" in v)
    assert 0 < tagged < len(values)  # some untagged: ingest must detect the script
    # English items are as before: no Chinese item is a syndicated copy or an English company
    assert not any(it.meta.get("copy_of") for it in zh)
