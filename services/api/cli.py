"""Commands of the API side: ``yuqing api``, ``keys``, ``produce``, ``schemas export`` and
``feedback export``."""
from __future__ import annotations

import asyncio
import logging
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from services.core.cli import connect_redis as _redis
from services.core.cli import fail as _fail
from services.core.config import get_settings


class InputTopic(StrEnum):
    news = "news"
    comments = "comments"


keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
schemas_app = typer.Typer(help="JSON Schema of the Kafka message contracts.", no_args_is_help=True)
feedback_app = typer.Typer(help="Analysts' label feedback.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
    app.add_typer(schemas_app, name="schemas")
    app.add_typer(feedback_app, name="feedback")

    @app.command("api")
    def api(
        host: Annotated[str | None, typer.Option(help="Bind address (YUQING_API_HOST).")] = None,
        port: Annotated[int | None, typer.Option(help="Port (YUQING_API_PORT).")] = None,
        openapi: Annotated[Path | None, typer.Option(
            help="Write the OpenAPI document to this file and exit.")] = None,
    ) -> None:
        """Serve the HTTP API (OpenAPI docs at /docs, document at /openapi.json)."""
        import uvicorn

        from services.api.app import create_app, openapi_json

        settings = get_settings()
        if openapi is not None:
            openapi.parent.mkdir(parents=True, exist_ok=True)
            openapi.write_text(openapi_json(create_app(settings)), encoding="utf-8")
            typer.echo(f"wrote {openapi}")
            return
        logging.basicConfig(level=settings.log_level)
        uvicorn.run(create_app(settings), host=host or settings.api_host,
                    port=port or settings.api_port, log_level=settings.log_level.lower())

    @app.command("produce")
    def produce(
        file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                             help="JSONL file, one message per line.")],
        topic: Annotated[InputTopic, typer.Option(help="Message kind.")] = InputTopic.news,
        rate: Annotated[float, typer.Option(min=0, help="Messages per second (0: as fast as "
                                                        "Kafka takes them).")] = 100.0,
        kafka_topic: Annotated[str | None, typer.Option(
            help="Kafka topic (default: <YUQING_NAMESPACE>.news.raw / .comments.raw).")] = None,
        skip_bad: Annotated[bool, typer.Option(help="Send the valid lines even if some are "
                                                    "bad.")] = False,
        dry_run: Annotated[bool, typer.Option(help="Only validate.")] = False,
    ) -> None:
        """Validate a JSONL file against the producer schema, then send it to Kafka."""
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        from services.api.producer_kit import (
            MODELS,
            is_replay_format,
            produce_file,
            validate_file,
        )

        kind = topic.value
        assert kind in MODELS
        settings = get_settings()
        if is_replay_format(file):
            _fail(f"{file} is a replay file (kind/value envelopes, as `yuqing feed generate` "
                  f"writes), not bare {MODELS[kind].__name__} lines; send it with "
                  f"`yuqing replay {file}`")
        good, bad = validate_file(file, kind)
        for b in bad[:50]:
            typer.secho(f"{file}:{b.line}: {b.error}", fg=typer.colors.YELLOW, err=True)
        if len(bad) > 50:
            typer.echo(f"... and {len(bad) - 50} more bad lines", err=True)
        typer.echo(f"{good} valid, {len(bad)} bad line(s) in {file}", err=True)
        if bad and not skip_bad:
            _fail("fix the lines above (schema: ops/schemas/) or pass --skip-bad to send the "
                  "valid ones")
        if dry_run or good == 0:
            return
        target = kafka_topic or (settings.topic_news_raw if kind == "news"
                                 else settings.topic_comments_raw)
        with Progress(TextColumn(f"[bold]{target}"), BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn()) as progress:
            task = progress.add_task("produce", total=good)
            try:
                sent = asyncio.run(produce_file(
                    file, kind, bootstrap=settings.kafka_bootstrap, topic=target, rate=rate,
                    skip={b.line for b in bad}, on_sent=lambda n: progress.advance(task, n)))
            except Exception as exc:  # KafkaConnectionError and friends
                _fail(f"Kafka at {settings.kafka_bootstrap}: {type(exc).__name__}: {exc}; "
                      "check YUQING_KAFKA_BOOTSTRAP")
        typer.echo(f"sent {sent} message(s) to {target}")

    @keys_app.command("create")
    def keys_create(
        scopes: Annotated[str, typer.Option(help="Comma-separated: read, subscribe, admin.")],
        name: Annotated[str, typer.Option(help="Who or what the key is for.")] = "cli",
    ) -> None:
        """Create an API key and print it once (only its SHA-256 is stored)."""
        from services.api.auth import SCOPES, KeyStore

        wanted = [s.strip() for s in scopes.split(",") if s.strip()]
        unknown = [s for s in wanted if s not in SCOPES]
        if not wanted or unknown:
            _fail(f"--scopes takes some of {', '.join(SCOPES)} (got {scopes!r})")
        settings = get_settings()

        async def run():
            redis = await _redis(settings)
            try:
                return await KeyStore(redis, settings.redis_prefix).create(name, wanted)
            finally:
                await redis.aclose()

        created = asyncio.run(run())
        typer.echo(f"key id: {created.key_id}  scopes: {','.join(created.scopes)}", err=True)
        typer.echo("store this key now; it cannot be shown again:", err=True)
        typer.echo(created.key)

    @keys_app.command("list")
    def keys_list() -> None:
        """List keys (ids, names, scopes; never the keys)."""
        from services.api.auth import KeyStore

        settings = get_settings()

        async def run():
            redis = await _redis(settings)
            try:
                return await KeyStore(redis, settings.redis_prefix).list()
            finally:
                await redis.aclose()

        for k in asyncio.run(run()):
            scopes = ",".join(k.scopes)
            typer.echo(f"{k.key_id}  {scopes:24} {k.created_at:%Y-%m-%d %H:%M}  {k.name}")

    @keys_app.command("revoke")
    def keys_revoke(
        key_id: Annotated[str, typer.Argument(help="Key id from `yuqing keys list`.")],
    ) -> None:
        """Revoke a key; requests with it get 401 at once."""
        from services.api.auth import KeyStore

        settings = get_settings()

        async def run():
            redis = await _redis(settings)
            try:
                return await KeyStore(redis, settings.redis_prefix).revoke(key_id)
            finally:
                await redis.aclose()

        if not asyncio.run(run()):
            _fail(f"no key with id {key_id!r}; see `yuqing keys list`")
        typer.echo(f"revoked {key_id}")

    @schemas_app.command("export")
    def schemas_export(
        out: Annotated[Path, typer.Option(help="Folder for the files.")] = Path("ops/schemas"),
        check: Annotated[bool, typer.Option(help="Write nothing; exit 1 if stale.")] = False,
    ) -> None:
        """Write the JSON Schema of NewsIn, CommentIn, Alert and DeadLetter."""
        from services.api import schemas_export as se

        if check:
            stale = se.stale(out)
            if stale:
                _fail(f"stale schema files in {out}: {', '.join(stale)}; "
                      "run `yuqing schemas export`")
            typer.echo(f"{out}: up to date")
            return
        for p in se.export(out):
            typer.echo(f"wrote {p}")

    @feedback_app.command("export")
    def feedback_export(
        output: Annotated[Path, typer.Option(help="JSONL file (doc_id, text, label, ts).")],
    ) -> None:
        """Write analysts' labels (latest per document) as JSONL for the retrain job."""
        from services.api.feedback import FeedbackStore

        settings = get_settings()

        async def run() -> int:
            redis = await _redis(settings)
            try:
                return await FeedbackStore(redis, settings.redis_prefix).export(output)
            finally:
                await redis.aclose()

        n = asyncio.run(run())
        typer.echo(f"wrote {n} label(s) to {output}")
