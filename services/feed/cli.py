"""``yuqing feed generate``, ``yuqing replay`` and ``yuqing demo``."""
from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import typer

feed_app = typer.Typer(help="The synthetic feed: generate a realistic day of news and comments.",
                       no_args_is_help=True)


def default_start(duration_s: float) -> datetime:
    """The simulated day ends at the current minute, so trend windows ('last hour') and the
    retention of trend buckets (48 h) apply to it as they would to live data."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return now - timedelta(seconds=duration_s)


@feed_app.command("generate")
def generate_cmd(
    out: Path = typer.Option(Path("var/feed/day.jsonl"), "--out", "-o", help="JSONL file to write."),
    items: int = typer.Option(3000, help="Items in the feed (news + comments)."),
    hours: float = typer.Option(24.0, help="Simulated span in hours."),
    start: datetime | None = typer.Option(None, help="First timestamp (UTC); default: span ends now."),
    spike_ticker: str = typer.Option("TSLA", help="Company of the injected negative spike ('' for none)."),
    spike_at: float = typer.Option(0.65, help="Where the spike sits, as a fraction of the span."),
    spike_items: int = typer.Option(40, help="Items in the spike."),
    invalid_share: float = typer.Option(0.0, help="Share of malformed messages (for the DLQ)."),
    seed: int = typer.Option(7, help="Random seed (same seed, same feed)."),
) -> None:
    """Write a synthetic feed: a dozen companies, a daily rhythm, syndicated copies, one spike."""
    from services.feed.synthetic import FeedSpec, SpikeSpec, generate, write_jsonl

    span = hours * 3600
    spec = FeedSpec(start=(start.replace(tzinfo=start.tzinfo or UTC) if start else default_start(span)),
                    duration_s=span, items=items, invalid_share=invalid_share, seed=seed,
                    spike=SpikeSpec(ticker=spike_ticker, at_s=spike_at * span, items=spike_items)
                    if spike_ticker else None)
    n = write_jsonl(generate(spec), out)
    typer.echo(f"wrote {n} items to {out} ({spec.start:%Y-%m-%d %H:%M} UTC + {hours:g} h)")
    typer.echo(f"replay it with: yuqing replay {out} --speed 600")


@feed_app.command("tail")
def tail_cmd(
    topic: str = typer.Argument(..., help="Topic to print, e.g. yuqing.alerts or yuqing.dlq."),
    idle: float = typer.Option(3.0, help="Stop after this many seconds without messages."),
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
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True,
                                help="JSONL: `yuqing feed generate` output, or one NewsIn/CommentIn "
                                     "object per line."),
    speed: float = typer.Option(0.0, "--speed", "-s",
                                help="Simulated seconds per second (600: a day in 2.4 min); "
                                     "0 = as fast as possible."),
) -> None:
    """Produce a JSONL feed into the raw topics, paced by the items' timestamps."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from services.core.config import get_settings
    from services.core.errors import BackendUnavailable
    from services.core.topics import ensure_topics
    from services.feed.replay import replay
    from services.feed.synthetic import read_jsonl

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
            return await replay(items, settings, speed,
                                on_sent=lambda n, it: progress.update(
                                    task, completed=n, at=f"{it.published_at:%H:%M} UTC"))

    try:
        n = asyncio.run(run())
    except BackendUnavailable as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"sent {n} items to {settings.topic_news_raw} / {settings.topic_comments_raw}")


def demo_cmd(
    items: int = typer.Option(3000, help="Items in the simulated day."),
    minutes: float = typer.Option(2.5, help="Wall-clock minutes the simulated day takes."),
    train: bool = typer.Option(True, help="Train a model first when there is no production model."),
    keep_running: bool = typer.Option(False, help="Leave the worker running after the replay."),
) -> None:
    """Run the whole pipeline on a built-in synthetic day with one injected negative spike."""
    from services.feed.demo import run_demo

    raise typer.Exit(run_demo(items=items, minutes=minutes, train=train, keep_running=keep_running))


def register(app: typer.Typer) -> None:
    app.add_typer(feed_app, name="feed")
    app.command("replay")(replay_cmd)
    app.command("demo")(demo_cmd)
