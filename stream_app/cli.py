"""``stream-app``: the worker, the demo, the local broker, traffic and replay."""

from __future__ import annotations

import asyncio
import logging
import sys

import typer
from pydantic import ValidationError

from .generator.cli import generator_app
from .kafka_local.cli import kafka_app
from .preflight import require_broker
from .settings import Settings

HELP = """Per-campaign ROI from click, conversion, spend and review events on Kafka.

Start with 'stream-app demo'. Every setting is an environment variable
STREAM_APP_<NAME> (docs/configuration.md); STREAM_APP_BOOTSTRAP_SERVERS picks the
broker (default: the local one, 'stream-app kafka start')."""

# rich_markup_mode=None: click's plain help, which wraps long option names onto their own line
# at 80 columns instead of cutting them (Typer's rich panels cut them to "--clicks-per-seco…").
app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False, rich_markup_mode=None)
app.add_typer(kafka_app, name="kafka", help="Run the local Apache Kafka broker.")
app.add_typer(generator_app)  # generate, replay


@app.command()
def worker(
    log_level: str = typer.Option("INFO", help="Python log level (DEBUG, INFO, WARNING...)."),
) -> None:
    """Run one processing worker until Ctrl-C or SIGTERM.

    Creates missing topics and serves /metrics (STREAM_APP_METRICS_PORT).
    """
    from .runner import run_worker

    settings = Settings()
    require_broker(settings.kafka)
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(run_worker(settings))


@app.command()
def demo(
    clicks_per_second: float = typer.Option(40.0, help="Synthetic clicks per second."),
    campaigns: int = typer.Option(8, help="Synthetic campaigns."),
    resume: bool = typer.Option(
        False,
        "--continue",
        help="Resume the last run (its totals, dead letters and models) instead of a fresh one.",
    ),
) -> None:
    """Kafka, a worker, live traffic and a live ROI table.

    Starts the local broker unless STREAM_APP_BOOTSTRAP_SERVERS names one. Each run
    starts fresh (new topics; the previous run's are deleted) unless --continue. One demo
    at a time. Ctrl-C stops everything the demo started.
    """
    from .demo import run_demo

    run_demo(Settings(), clicks_per_second, campaigns, resume=resume)


@app.command("create-topics")
def create_topics_cmd() -> None:
    """Create every topic the processor uses (idempotent)."""
    from .topics import create_topics

    settings = Settings()
    require_broker(settings.kafka)
    created = asyncio.run(create_topics(settings))
    typer.echo(f"created: {', '.join(created) or 'nothing (all exist)'}")


@app.command()
def schemas(out: str = typer.Option("schemas", help="Directory to write into.")) -> None:
    """Write schemas/*.schema.json, the JSON Schema of each record."""
    from pathlib import Path

    import orjson

    from .domain.schemas import SCHEMA_TYPES, json_schema

    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    for name in SCHEMA_TYPES:
        path = target / f"{name}.schema.json"
        path.write_bytes(orjson.dumps(json_schema(name), option=orjson.OPT_INDENT_2) + b"\n")
        typer.echo(path)


def main() -> None:
    """The ``stream-app`` command; a bad ``STREAM_APP_*`` value is one line per field, not
    a traceback."""
    try:
        app()
    except ValidationError as exc:
        if exc.title != Settings.__name__:
            raise
        for error in exc.errors():
            field = "_".join(str(part) for part in error["loc"]).upper()
            print(f"error: STREAM_APP_{field}: {error['msg']}", file=sys.stderr)
        print("see docs/configuration.md for every setting", file=sys.stderr)
        raise SystemExit(2) from None
