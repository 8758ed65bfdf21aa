"""``stream-app``: the worker, the demo, the local broker, traffic and replay."""

from __future__ import annotations

import asyncio
import logging

import typer

from .generator.cli import generator_app
from .kafka_local.cli import kafka_app
from .settings import Settings

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)
app.add_typer(kafka_app, name="kafka", help="Run the local Apache Kafka broker.")
app.add_typer(generator_app)  # generate, replay


@app.command()
def worker(log_level: str = typer.Option("INFO", help="Python log level.")) -> None:
    """Run one processing worker until Ctrl-C (SIGINT) or SIGTERM."""
    from .runner import run_worker

    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(run_worker(Settings()))


@app.command()
def demo(
    clicks_per_second: float = typer.Option(40.0, help="Synthetic clicks per second."),
    campaigns: int = typer.Option(8, help="Synthetic campaigns."),
) -> None:
    """Start local Kafka, a worker and live traffic, and show per-campaign ROI live."""
    from .demo import run_demo

    run_demo(Settings(), clicks_per_second, campaigns)


@app.command("create-topics")
def create_topics_cmd() -> None:
    """Create every topic the processor uses (idempotent)."""
    from .topics import create_topics

    created = asyncio.run(create_topics(Settings()))
    typer.echo(f"created: {', '.join(created) or 'nothing (all exist)'}")


@app.command()
def schemas(out: str = typer.Option("schemas", help="Directory to write into.")) -> None:
    """Write schemas/*.schema.json from the event and record structs."""
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
    app()
