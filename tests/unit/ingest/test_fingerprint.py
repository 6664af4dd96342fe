from __future__ import annotations

import pytest

from services.ingest.dedup import canonical, story_fingerprint, strip_source_marks

BODY = ("Apple Inc reported quarterly revenue of $94.9 billion on Thursday, beating Wall Street "
        "estimates as iPhone sales rose 6% in the September quarter.")
TITLE = "Apple beats estimates as iPhone sales rise"


@pytest.mark.parametrize(("title", "body"), [
    (TITLE + " - Reuters", "CUPERTINO, Calif., Oct 30 (Reuters) - " + BODY),
    (TITLE + " | Reuters", "(Reuters) -- " + BODY + " Reporting by Jane Doe; Editing by Bob"),
    (TITLE.upper(), BODY.replace(" ", "  ") + " https://reut.rs/abc"),
    (TITLE + " (Bloomberg)", "(Bloomberg) — " + BODY + " Source: Bloomberg"),
    ("Apple beats estimates, as iPhone sales rise!", BODY.replace(",", "")),
    ("“Apple beats estimates as iPhone sales rise”", "\n\n" + BODY + "\n"),
])
def test_syndicated_copies_share_a_fingerprint(title: str, body: str) -> None:
    assert story_fingerprint("news", title, body) == story_fingerprint("news", TITLE, BODY)


@pytest.mark.parametrize(("title", "body"), [
    ("Apple misses estimates as iPhone sales fall", BODY),
    (TITLE, BODY.replace("6%", "9%")),
    (TITLE, BODY.replace("Apple Inc", "Microsoft Corp")),
])
def test_different_stories_differ(title: str, body: str) -> None:
    assert story_fingerprint("news", title, body) != story_fingerprint("news", TITLE, BODY)


def test_chinese_copies_match_and_differ() -> None:
    body = "阿里巴巴周四公布季度财报，营收同比增长8%，高于市场预期。"
    a = story_fingerprint("news", "阿里巴巴业绩超预期", "北京（路透）- " + body)
    b = story_fingerprint("news", "阿里巴巴业绩超预期 - 路透", body)
    c = story_fingerprint("news", "腾讯业绩超预期", body)
    assert a == b
    assert a != c


def test_kinds_never_collide() -> None:
    text = "Apple reported quarterly revenue that beat estimates by a wide margin today"
    assert story_fingerprint("news", None, text) != story_fingerprint("comment", None, text)


def test_short_comments_are_not_fingerprinted() -> None:
    assert story_fingerprint("comment", None, "to the moon $TSLA") is None
    long = "Copy-paste spam: buy $XYZ now before it explodes, guaranteed 10x by Friday!!!"
    assert story_fingerprint("comment", None, long) == story_fingerprint("comment", None, long.lower())
    assert story_fingerprint("news", "Stocks to watch", "") is None


def test_canonical_and_source_marks() -> None:
    assert canonical("Hello,  WORLD!! https://x.y/z  ＡＢ") == "hello world ab"
    assert strip_source_marks("X rises - Reuters", "LONDON (Reuters) - Body") == ("X rises", "Body")
    # Parentheses that are not a wire credit are kept.
    assert strip_source_marks("X (NYSE: X) rises", "Body (in part)") == \
        ("X (NYSE: X) rises", "Body (in part)")
