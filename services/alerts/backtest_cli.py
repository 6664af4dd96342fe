"""``yuqing backtest``: the alerts production would have raised on history in Elasticsearch.

An analyst tunes settings with it before changing production: ``--set fire_score=60`` (any
``DetectorConfig``/lifecycle field) against the same documents, alerts/day, and with
``--labels`` detected/missed/false and delay. Read-only (aggregations on ``<ns>-docs``).
"""
from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from services.alerts import backtest as bt
from services.alerts.config import detector_config
from services.core.config import Settings, get_settings


async def backtest(settings: Settings, *, since: str | None = None, until: str | None = None,
                   window: str | None = None, entities: list[str] | None = None,
                   topics: list[str] | None = None, overrides: list[str] | None = None,
                   lead: str | None = None, labels: Path | None = None,
                   es=None) -> tuple[bt.Backtest, bt.LabelScore | None]:
    """The command as a function (tests call it): ``BadInput`` for a user mistake."""
    from elasticsearch import AsyncElasticsearch

    start, end = bt.resolve_range(since, until, window, max_days=settings.api_max_range_days)
    cfg = bt.config_with(detector_config(settings), overrides or [])
    lead_s = bt.parse_duration(lead, "--lead") if lead else 0.0
    label_windows = bt.load_labels(labels) if labels is not None else None

    own = es is None
    client = es or AsyncElasticsearch(settings.es_url, request_timeout=60)
    alias = settings.es_index_prefix
    try:
        data = await bt.fetch_series(client, alias, start - timedelta(seconds=lead_s), end,
                                     cfg.window_s, entities or [], topics or [])
    finally:
        if own:
            await client.close()
    where = f"{alias} from {start.isoformat()} to {end.isoformat()}"
    bt.check_known(data, entities or [], topics or [], where)
    if not data:
        raise bt.BadInput(f"no documents in {where}: check the range and YUQING_NAMESPACE")
    result = bt.run(data, cfg, start, end)
    score = bt.score_labels(result, label_windows) if label_windows is not None else None
    return result, score


def register(app: typer.Typer) -> None:
    @app.command("backtest")
    def backtest_cmd(
        since: Annotated[str | None, typer.Option(help="Range start (ISO time).")] = None,
        until: Annotated[str | None, typer.Option(help="Range end (ISO time; default now).")]
        = None,
        window: Annotated[str | None, typer.Option(
            help="Range length up to --until, e.g. 7d, 12h (instead of --since).")] = None,
        entity: Annotated[list[str] | None, typer.Option(
            "--entity", "-e", help="Only these entities (repeat).")] = None,
        topic: Annotated[list[str] | None, typer.Option(
            "--topic", "-t", help="Only these topics (repeat).")] = None,
        set_: Annotated[list[str] | None, typer.Option(
            "--set", help="Detector override key=value, e.g. fire_score=60, min_count=3, "
                          "rearm_windows=288, settle_hours=2 (repeat).")] = None,
        lead: Annotated[str | None, typer.Option(
            help="Learn from this much history before the range first (e.g. 7d).")] = None,
        labels: Annotated[Path | None, typer.Option(
            help="NAB-style labels.json: {series: {\"windows\": [[start, end], ...]}}.")] = None,
        plot: Annotated[Path | None, typer.Option(
            help="Write one PNG per series into this folder (needs the plot extra).")] = None,
        json_out: Annotated[Path | None, typer.Option(
            "--json", help="Also write the events and figures as JSON here.")] = None,
    ) -> None:
        """Replay the alert detector over documents already in Elasticsearch and print the
        alerts it would have raised (read-only)."""
        settings = get_settings()
        try:
            result, score = asyncio.run(backtest(
                settings, since=since, until=until, window=window, entities=entity,
                topics=topic, overrides=set_, lead=lead, labels=labels))
            paths = bt.plot(result, plot) if plot is not None else []
        except bt.BadInput as exc:
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2) from None
        except Exception as exc:  # noqa: BLE001 - one line, not a traceback
            from elasticsearch import ApiError, TransportError

            if isinstance(exc, TransportError | ApiError | OSError):
                typer.secho(f"error: Elasticsearch at {settings.es_url}: {exc}; start it or "
                            "set YUQING_ES_URL", fg=typer.colors.RED, err=True)
                raise typer.Exit(1) from None
            raise
        typer.echo(bt.table(result))
        if score is not None:
            delay = "-" if score.mean_delay is None else f"{score.mean_delay:.1f} windows"
            typer.echo(f"labels: {score.windows} windows, {score.detected} detected, "
                       f"{score.missed} missed, {score.false_alerts} false alerts, "
                       f"mean delay {delay}")
        for p in paths:
            typer.echo(f"wrote {p}")
        if json_out is not None:
            json_out.write_text(json.dumps(to_json(result, score), indent=2) + "\n")
            typer.echo(f"wrote {json_out}")


def to_json(result: bt.Backtest, score: bt.LabelScore | None) -> dict:
    w_s = result.cfg.window_s
    out = {"start": result.start.isoformat(), "end": result.end.isoformat(),
           "series": len(result.series), "alerts": len(result.firings()),
           "alerts_per_series_day": round(result.alerts_per_series_day, 4),
           "events": [{"series": k.name, "state": e.kind, "window_start": e.window * w_s,
                       "severity": e.severity, "score": round(e.score, 3)}
                      for k, e in result.events()]}
    if score is not None:
        out["labels"] = {"windows": score.windows, "detected": score.detected,
                         "missed": score.missed, "false_alerts": score.false_alerts,
                         "mean_delay_windows": score.mean_delay}
    return out
