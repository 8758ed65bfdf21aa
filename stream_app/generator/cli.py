"""``stream-app generate`` and ``stream-app replay``: synthetic traffic from the shell.

The processor's semantics (attribution window, conversion grace, de-duplication horizon,
currency rates) come from :class:`~stream_app.settings.Settings`, so the ground truth
written with ``--truth`` is what that processor must report.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..domain.money import CurrencyTable
from ..settings import Settings
from .profiles import Scenario
from .replay import replay_to_kafka
from .sinks import generate_to_file, generate_to_kafka
from .traffic import live_rate
from .truth import GroundTruth

generator_app = typer.Typer(
    help="Synthetic campaign traffic with exact ground truth.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)
_D = Scenario()

BootstrapOpt = Annotated[
    str | None,
    typer.Option("--bootstrap", help="Kafka bootstrap servers (env STREAM_APP_BOOTSTRAP_SERVERS)."),
]
RateOpt = Annotated[
    float | None,
    typer.Option("--rate", min=0.001, help="Wall-clock events/s to Kafka; default: max speed."),
]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bar.")]


def _settings(bootstrap: str | None) -> Settings:
    return Settings(bootstrap_servers=bootstrap) if bootstrap else Settings()


@generator_app.command("generate")
def generate_command(
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same bytes.")] = _D.seed,
    campaigns: Annotated[int, typer.Option(min=1, max=999)] = _D.n_campaigns,
    duration: Annotated[
        float, typer.Option(min=1.0, help="Event-time span in seconds.")
    ] = _D.duration_seconds,
    clicks_per_second: Annotated[
        float, typer.Option(min=0.0, help="Clicks per second of event time, all campaigns.")
    ] = _D.clicks_per_second,
    rate: RateOpt = None,
    start_ts: Annotated[
        float, typer.Option(help="Event time of the start (Unix seconds).")
    ] = _D.start_ts,
    bad_share: Annotated[float, typer.Option(min=0.0, max=1.0)] = _D.bad_share,
    duplicate_share: Annotated[float, typer.Option(min=0.0, max=1.0)] = _D.duplicate_share,
    late_share: Annotated[float, typer.Option(min=0.0, max=1.0)] = _D.late_share,
    late_max: Annotated[
        float, typer.Option(min=1.0, help="Max lateness in seconds.")
    ] = _D.late_max_seconds,
    orphan_share: Annotated[float, typer.Option(min=0.0, max=1.0)] = _D.orphan_share,
    outside_window_share: Annotated[
        float, typer.Option(min=0.0, max=1.0)
    ] = _D.outside_window_share,
    early_conversion_share: Annotated[
        float, typer.Option(min=0.0, max=1.0)
    ] = _D.early_conversion_share,
    attribution_window: Annotated[
        float | None,
        typer.Option(help="Seconds; default: STREAM_APP_ATTRIBUTION_WINDOW_SECONDS (7 days)."),
    ] = None,
    collapse_campaign: Annotated[
        str | None, typer.Option(help="Campaign whose conversion rate collapses, e.g. cmp-002.")
    ] = None,
    collapse_at: Annotated[float, typer.Option(help="Seconds after the start.")] = _D.collapse_at,
    collapse_factor: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="p(conversion) multiplier after collapse.")
    ] = _D.collapse_factor,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write JSONL here instead of sending to Kafka.")
    ] = None,
    truth: Annotated[
        Path | None, typer.Option("--truth", help="Write the ground truth JSON here.")
    ] = None,
    live: Annotated[
        bool,
        typer.Option(
            "--live",
            help="Start now and pace sends so event time follows the wall clock "
            "(overrides --start-ts and --rate).",
        ),
    ] = False,
    bootstrap: BootstrapOpt = None,
    progress: ProgressOpt = True,
) -> None:
    """Generate deterministic traffic into the input topics (or a JSONL file)."""
    settings = _settings(bootstrap)
    if live:
        start_ts = time.time()
    try:
        scenario = Scenario(
            seed=seed,
            n_campaigns=campaigns,
            start_ts=start_ts,
            duration_seconds=duration,
            clicks_per_second=clicks_per_second,
            bad_share=bad_share,
            duplicate_share=duplicate_share,
            late_share=late_share,
            late_max_seconds=late_max,
            orphan_share=orphan_share,
            outside_window_share=outside_window_share,
            early_conversion_share=early_conversion_share,
            collapse_campaign=collapse_campaign,
            collapse_at=collapse_at,
            collapse_factor=collapse_factor,
            attribution_window_seconds=attribution_window or settings.attribution_window_seconds,
            conversion_grace_seconds=settings.conversion_grace_seconds,
            dedup_horizon_seconds=settings.dedup_horizon_seconds,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    started = time.perf_counter()
    if out is not None:
        currencies = CurrencyTable(settings.currency_rates, settings.reporting_currency)
        result = generate_to_file(scenario, out, currencies=currencies)
        where = str(out)
    else:
        rate = live_rate(scenario) if live else rate
        result = asyncio.run(generate_to_kafka(scenario, settings, rate=rate, progress=progress))
        where = f"Kafka at {settings.bootstrap_servers}"
    elapsed = time.perf_counter() - started
    if truth is not None:
        truth.parent.mkdir(parents=True, exist_ok=True)
        truth.write_bytes(result.to_json())
    _summary(result, where, elapsed)


@generator_app.command("replay")
def replay_command(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="JSONL (from generate) or CSV.")
    ],
    rate: RateOpt = None,
    bootstrap: BootstrapOpt = None,
    progress: ProgressOpt = True,
) -> None:
    """Send a recorded JSONL or CSV (topic,key,value) file to the input topics."""
    settings = _settings(bootstrap)
    started = time.perf_counter()
    sent = asyncio.run(replay_to_kafka(file, settings, rate=rate, progress=progress))
    elapsed = time.perf_counter() - started
    console.print(f"replayed {sent:,} records in {elapsed:.1f} s ({sent / elapsed:,.0f}/s)")


def _summary(truth: GroundTruth, where: str, elapsed: float) -> None:
    n = truth.total_emitted
    console.print(f"{n:,} records to {where} in {elapsed:.1f} s ({n / max(elapsed, 1e-9):,.0f}/s)")
    table = Table(title=f"ground truth ({truth.currency})")
    for column in ("campaign", "spend", "revenue", "ROI", "clicks", "conv.", "reviews"):
        table.add_column(column, justify="left" if column == "campaign" else "right")
    for campaign_id, c in sorted(truth.campaigns.items()):
        roi = truth.roi(campaign_id)
        table.add_row(
            campaign_id,
            f"{c.spend:,.2f}",
            f"{c.revenue:,.2f}",
            "-" if roi is None else f"{roi:+.1%}",
            f"{c.clicks:,}",
            f"{c.conversions:,}",
            f"{c.reviews:,}",
        )
    console.print(table)
    unattributed = ", ".join(f"{r}={u.count}" for r, u in truth.unattributed.items())
    console.print(f"unattributed: {unattributed}")
    console.print(f"bad: {truth.bad_events or '-'}  duplicates: {truth.duplicates or '-'}")


if __name__ == "__main__":
    generator_app()
