"""`yuqing ingest`: check watchlist/taxonomy files and try the linker and tagger on a text."""
from __future__ import annotations

from pathlib import Path

import typer

ingest_app = typer.Typer(help="Ingest stage: watchlist, taxonomy and text checks.",
                         no_args_is_help=True)

WatchlistOpt = typer.Option(None, "--watchlist", "-w", help="Watchlist YAML (default: "
                            "YUQING_WATCHLIST, else the shipped example).")
TaxonomyOpt = typer.Option(None, "--taxonomy", "-t", help="Taxonomy YAML (default: "
                           "YUQING_TAXONOMY, else the shipped taxonomy).")


def _load(watchlist: Path | None, taxonomy: Path | None):  # type: ignore[no-untyped-def]
    from services.core.config import get_settings
    from services.core.errors import ConfigError
    from services.ingest.entities import EntityLinker
    from services.ingest.taxonomy import TopicTagger

    s = get_settings()
    try:
        linker = EntityLinker.from_file(watchlist or s.watchlist_path)
        tagger = TopicTagger.from_file(taxonomy or s.taxonomy_path)
    except ConfigError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc
    return linker, tagger


def register(app: typer.Typer) -> None:
    app.add_typer(ingest_app, name="ingest")


@ingest_app.command("check")
def check(watchlist: Path | None = WatchlistOpt, taxonomy: Path | None = TaxonomyOpt) -> None:
    """Load the watchlist and taxonomy and report what they contain (exit 2 if invalid)."""
    linker, tagger = _load(watchlist, taxonomy)
    wl = linker.watchlist
    names = sum(len(c.names) + len(c.cased) for c in wl.companies)
    codes = sum(1 + len(c.listings) for c in wl.companies)
    zh = sum(1 for c in wl.companies if c.name_zh or c.short_zh)
    typer.echo(f"watchlist: {len(wl.companies)} companies ({zh} with Chinese names), "
               f"{names} names and aliases, {codes} codes")
    for a in wl.ambiguous.values():
        means = f"links {wl.describe(a.link)}" if a.link else "links nothing"
        typer.echo(f"  ambiguous {a.name}: {' / '.join(wl.describe(t) for t in a.candidates)}"
                   f"; alone it {means}")
    typer.echo(f"taxonomy: {len(tagger.topic_ids)} topics: {', '.join(tagger.topic_ids)}")


@ingest_app.command("link")
def link(text: str = typer.Argument(..., help="Text to link, e.g. '$贵州茅台(600519)$ and $AAPL fell'."),
         category: str | None = typer.Option(None, help="Producer category (wins over keywords)."),
         watchlist: Path | None = WatchlistOpt, taxonomy: Path | None = TaxonomyOpt) -> None:
    """Show the normalised text, entities and topics ingest would give a text."""
    from services.ingest.normalize import clean_text

    linker, tagger = _load(watchlist, taxonomy)
    clean = clean_text(text, 20_000)
    typer.echo(f"text:     {clean}")
    from models.lang import detect_language

    linked = linker.link_mentions(clean)
    shown = [f"{e} [{', '.join(clean[a:b] for a, b in linked.spans.get(e, []))}]"
             for e in linked.entities]
    typer.echo(f"language: {detect_language(clean)}")
    typer.echo(f"entities: {', '.join(linked.entities) or '-'}")
    if shown:
        typer.echo(f"mentions: {'; '.join(shown)}")
    typer.echo(f"topics:   {', '.join(tagger.tag(clean, category)) or '-'}")
