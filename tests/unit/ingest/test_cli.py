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


def test_link_shows_chinese_entities_their_mentions_and_the_language() -> None:
    res = runner.invoke(app, ["ingest", "link", "$貴州茅台(SH600519)$ 被立案调查，平安银行（000001）跌停"])
    assert res.exit_code == 0, res.output
    assert "language: zh" in res.output
    assert "entities: 600519.SH, 000001.SZ" in res.output
    assert "600519.SH [$貴州茅台(SH600519)$]" in res.output
    assert "000001.SZ [平安银行(000001)]" in res.output
    assert "topics:   legal, markets" in res.output


def test_check_lists_the_ambiguous_names() -> None:
    res = runner.invoke(app, ["ingest", "check"])
    assert "with Chinese names" in res.output
    assert "ambiguous 平安: 中国平安 (2318.HK) / 平安银行 (000001.SZ); alone it links nothing" \
        in res.output
    assert "ambiguous 恒大:" in res.output and "alone it links 中国恒大 (3333.HK)" in res.output
