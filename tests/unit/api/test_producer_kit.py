"""The producer kit validates a whole file first and reports bad lines by number."""
from __future__ import annotations

import json

from services.api.producer_kit import validate_file

GOOD_NEWS = {"id": "n1", "source": "wire", "published_at": "2026-03-02T10:00:00Z",
             "title": "Acme beats estimates", "tickers": ["acme"]}


def test_reports_bad_lines_by_number(tmp_path):
    path = tmp_path / "news.jsonl"
    lines = [json.dumps(GOOD_NEWS),
             "{not json",
             "",
             json.dumps({**GOOD_NEWS, "title": ""}),
             json.dumps([1, 2]),
             json.dumps({k: v for k, v in GOOD_NEWS.items() if k != "published_at"}),
             json.dumps({**GOOD_NEWS, "id": "n2"})]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    good, bad = validate_file(path, "news")
    assert good == 2
    assert [b.line for b in bad] == [2, 4, 5, 6]
    by_line = {b.line: b.error for b in bad}
    assert "invalid JSON" in by_line[2]
    assert "title" in by_line[4]
    assert "JSON object" in by_line[5]
    assert "published_at" in by_line[6]


def test_comments_schema(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"id": "c1", "source": "forum", "published_at": "2026-03-02",
                                "text": "to the moon", "author": "x"}) + "\n"
                    + json.dumps({"id": "c2", "source": "forum", "published_at": "2026-03-02",
                                  "text": "no author"}) + "\n", encoding="utf-8")
    good, bad = validate_file(path, "comments")
    assert good == 1 and [b.line for b in bad] == [2] and "author" in bad[0].error


def test_replay_format_is_recognised_and_produce_points_to_replay(tmp_path):
    """`yuqing feed generate` output is replay format: `produce` says so in one line instead
    of "0 valid, N bad"."""
    from typer.testing import CliRunner

    from services.api.producer_kit import is_replay_format
    from services.cli import app
    from services.feed.synthetic import FeedSpec, generate, write_jsonl

    feed = tmp_path / "feed.jsonl"
    write_jsonl(generate(FeedSpec(items=30, spike=None)), feed)
    bare = tmp_path / "news.jsonl"
    bare.write_text(json.dumps(GOOD_NEWS) + "\n", encoding="utf-8")
    assert is_replay_format(feed) and not is_replay_format(bare)
    r = CliRunner().invoke(app, ["produce", "--topic", "news", str(feed), "--dry-run"])
    assert r.exit_code != 0
    out = r.output.strip().splitlines()
    assert len(out) == 1 and "yuqing replay" in out[0] and "bad" not in out[0], r.output
