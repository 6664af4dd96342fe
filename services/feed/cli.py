"""``yuqing feed generate``, ``yuqing replay`` and ``yuqing demo``."""
from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

DEFAULT_OUT = Path("var/feed/day.jsonl")

feed_app = typer.Typer(help="The synthetic feed: generate a realistic day of news and comments.",
                       no_args_is_help=True)


def default_start(duration_s: float) -> datetime:
    """The simulated day ends at the current minute, so trend windows ('last hour') and the
    retention of trend buckets (48 h) apply to it as they would to live data."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return now - timedelta(seconds=duration_s)


@feed_app.command("generate")
def generate_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="JSONL file to write.")] = DEFAULT_OUT,
    items: Annotated[int, typer.Option(
        help="Items in the feed (news + comments). Syndicated copies of 3% of the news "
             "stories (which ingest drops as duplicates) come on top: --items 2000 writes "
             "about 2,026 lines.")] = 3000,
    hours: Annotated[float, typer.Option(help="Simulated span in hours.")] = 24.0,
    start: Annotated[datetime | None, typer.Option(
        help="First timestamp (UTC); default: the span ends now.")] = None,
    spike_ticker: Annotated[str, typer.Option(
        help="Company of the injected negative spike ('' for none).")] = "TSLA",
    spike_at: Annotated[float, typer.Option(
        help="Where the spike sits, as a fraction of the span.")] = 0.65,
    spike_items: Annotated[int, typer.Option(help="Items in the spike.")] = 40,
    invalid_share: Annotated[float, typer.Option(
        help="Share of malformed messages (for the DLQ).")] = 0.0,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same feed).")] = 7,
) -> None:
    """Write a synthetic feed: a dozen companies, a daily rhythm, syndicated copies, one spike."""
    from services.feed.synthetic import FeedSpec, SpikeSpec, generate, write_jsonl

    span = hours * 3600
    first = start.replace(tzinfo=start.tzinfo or UTC) if start else default_start(span)
    spec = FeedSpec(start=first, duration_s=span, items=items, invalid_share=invalid_share,
                    seed=seed,
                    spike=SpikeSpec(ticker=spike_ticker, at_s=spike_at * span, items=spike_items)
                    if spike_ticker else None)
    n = write_jsonl(generate(spec), out)
    typer.echo(f"wrote {n} items to {out} ({spec.start:%Y-%m-%d %H:%M} UTC + {hours:g} h)")
    typer.echo(f"replay it with: yuqing replay {out} --speed 600")


@feed_app.command("tail")
def tail_cmd(
    topic: Annotated[str, typer.Argument(help="Topic to print, e.g. yuqing.alerts.")],
    idle: Annotated[float, typer.Option(
        help="Stop after this many seconds without messages.")] = 3.0,
) -> None:
    """Print a topic's messages from the beginning (JSON per line), e.g. the alerts topic."""
    from aiokafka import AIOKafkaConsumer

    from services.core.config import get_settings

    settings = get_settings()

    async def run() -> int:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap,
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        n = 0
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=int(idle * 1000))
                if not batch:
                    return n
                for msgs in batch.values():
                    for m in msgs:
                        typer.echo(m.value.decode("utf-8", "replace"))
                        n += 1
        finally:
            await consumer.stop()

    n = asyncio.run(run())
    typer.echo(f"({n} messages)", err=True)


def replay_cmd(
    file: Annotated[Path, typer.Argument(
        exists=True, dir_okay=False, readable=True,
        help="JSONL: `yuqing feed generate` output, or one NewsIn/CommentIn object per line.")],
    speed: Annotated[float, typer.Option(
        "--speed", "-s",
        help="Simulated seconds per second (600: a day in 2.4 min); 0 = as fast as possible.")
    ] = 0.0,
    rate: Annotated[float, typer.Option(
        "--rate", "-r", min=0.0,
        help="Items per second at a constant pace, ignoring the timestamps' rhythm "
             "(overrides --speed); 0 = off.")
    ] = 0.0,
) -> None:
    """Produce a JSONL feed into the raw topics, paced by the items' timestamps (or --rate)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from services.core.config import get_settings
    from services.core.errors import BackendUnavailable
    from services.feed.replay import replay
    from services.feed.synthetic import read_jsonl
    from services.stream.topics import ensure_topics

    settings = get_settings()
    try:
        items = sorted(read_jsonl(file), key=lambda it: it.published_at)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if not items:
        typer.echo(f"error: {file} has no items", err=True)
        raise typer.Exit(2)

    async def run() -> int:
        await ensure_topics(settings)
        with Progress(TextColumn("replay"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[at]}"), TimeElapsedColumn()) as progress:
            task = progress.add_task("replay", total=len(items), at="")
            return await replay(items, settings, speed, rate=rate,
                                on_sent=lambda n, it: progress.update(
                                    task, completed=n, at=f"{it.published_at:%H:%M} UTC"))

    try:
        n = asyncio.run(run())
    except BackendUnavailable as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"sent {n} items to {settings.topic_news_raw} / {settings.topic_comments_raw}")


def demo_cmd(
    items: Annotated[int, typer.Option(help="Items in the simulated day.")] = 3000,
    minutes: Annotated[float, typer.Option(help="Wall-clock minutes the day takes.")] = 2.5,
    train: Annotated[bool, typer.Option(
        help="Train a model when there is no production model and the shipped one cannot be "
             "installed.")] = False,
    keep_running: Annotated[bool, typer.Option(
        help="Leave the worker running after the replay.")] = False,
) -> None:
    """Run the whole pipeline on a built-in synthetic day with one injected negative spike."""
    from services.feed.demo import run_demo

    raise typer.Exit(run_demo(items=items, minutes=minutes, train=train, keep_running=keep_running))


def register(app: typer.Typer) -> None:
    app.add_typer(feed_app, name="feed")
    app.command("replay")(replay_cmd)
    app.command("demo")(demo_cmd)
