from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from services.cli import app

runner = CliRunner()


def test_link_shows_entities_and_topics() -> None:
    res = runner.invoke(app, ["ingest", "link", "<p>阿里巴巴发布财报, $tsla fell</p>"])
    assert res.exit_code == 0, res.output
    assert "entities: BABA, TSLA" in res.output
    assert "topics:   earnings" in res.output
    assert "<p>" not in res.output


def test_check_reports_and_fails_on_a_bad_file(tmp_path: Path) -> None:
    ok = runner.invoke(app, ["ingest", "check"])
    assert ok.exit_code == 0, ok.output
    assert "companies" in ok.output and "topics" in ok.output
    bad = tmp_path / "w.yaml"
    bad.write_text("companies: 3\n", encoding="utf-8")
    res = runner.invoke(app, ["ingest", "check", "--watchlist", str(bad)])
    assert res.exit_code == 2
    assert "watchlist" in res.output
