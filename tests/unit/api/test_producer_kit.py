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
