"""``stream-app generate`` and ``stream-app replay``: synthetic traffic from the shell.

The processor's semantics (attribution window, conversion grace, de-duplication horizon,
currency rates) come from :class:`~stream_app.settings.Settings`, so the ground truth
written with ``--truth`` is what that processor must report.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from confluent_kafka import KafkaException
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ..domain.money import CurrencyTable
from ..preflight import HINT_WITH_OPTION, require_broker
from ..settings import Settings
from .profiles import Scenario
from .replay import replay_to_kafka, scan
from .sinks import generate_to_file, generate_to_kafka, topic_names
from .traffic import live_rate
from .truth import GroundTruth

generator_app = typer.Typer(
    help="Synthetic campaign traffic with exact ground truth.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # click's plain help: no option names cut at 80 columns
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
ProgressOpt = Annotated[
    bool, typer.Option("--progress/--no-progress", help="Progress bar (on a terminal only).")
]
LARGE_FILE_RECORDS = 10_000
"""Replays at least this long get a progress bar (when stderr is a terminal)."""


def _settings(bootstrap: str | None) -> Settings:
    return Settings(bootstrap_servers=bootstrap) if bootstrap else Settings()


@generator_app.command("generate")
def generate_command(
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same bytes.")] = _D.seed,
    campaigns: Annotated[
        int, typer.Option(min=1, max=999, help="Campaigns, cmp-001 to cmp-NNN.")
    ] = _D.n_campaigns,
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
    bad_share: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Extra malformed records per event.")
    ] = _D.bad_share,
    duplicate_share: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Events sent twice (up to 30 s apart).")
    ] = _D.duplicate_share,
    late_share: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Events sent after their event time.")
    ] = _D.late_share,
    late_max: Annotated[
        float, typer.Option(min=1.0, help="Max lateness in seconds.")
    ] = _D.late_max_seconds,
    orphan_share: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Extra conversions whose click never exists.")
    ] = _D.orphan_share,
    outside_window_share: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="Conversions past the attribution window."),
    ] = _D.outside_window_share,
    early_conversion_share: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="Conversions sent before their click."),
    ] = _D.early_conversion_share,
    attribution_window: Annotated[
        float | None,
        typer.Option(help="Seconds; default: the worker's setting (7 days)."),
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
    """Generate seeded traffic into the input topics or a file.

    Deterministic: the same options give the same bytes. --truth writes what a correct
    processor must report for exactly these records (docs/generator.md).
    """
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
        require_broker(settings.kafka, HINT_WITH_OPTION, topics=topic_names(settings).values())
        rate = live_rate(scenario) if live else rate
        try:
            result = asyncio.run(
                generate_to_kafka(scenario, settings, rate=rate, progress=progress)
            )
        except KafkaException as exc:
            _fail(f"sending to Kafka at {settings.bootstrap_servers} failed: {exc}")
        where = f"Kafka at {settings.bootstrap_servers}"
    elapsed = time.perf_counter() - started
    if truth is not None:
        truth.parent.mkdir(parents=True, exist_ok=True)
        truth.write_bytes(result.to_json())
    _summary(result, where, elapsed)


@generator_app.command("replay")
def replay_command(
    file: Annotated[
        Path,
        typer.Argument(
            exists=True,
            dir_okay=False,
            help="JSONL (from generate --out) or CSV (topic,key,value).",
        ),
    ],
    rate: RateOpt = None,
    bootstrap: BootstrapOpt = None,
    progress: ProgressOpt = True,
    skip_invalid: Annotated[
        bool,
        typer.Option(
            "--skip-invalid", help="Send the valid lines even if some are not (and name those)."
        ),
    ] = False,
) -> None:
    """Send a recorded JSONL or CSV file to the input topics.

    Every line is checked first: a file with bad lines is refused (nothing sent) and the
    lines are named, unless --skip-invalid. Format: docs/generator.md.
    """
    settings = _settings(bootstrap)
    found = scan(file, settings)
    rejected = found.rejected
    if rejected and not skip_invalid:
        lines = len(rejected) + found.valid
        _err(f"error: {file}: {len(rejected)} of {lines} lines cannot be replayed; nothing sent:")
        for r in rejected[:10]:
            _err(f"  line {r.line}: {r.reason}")
        if len(rejected) > 10:
            _err(f"  and {len(rejected) - 10} more")
        _err(f"Fix them, or pass --skip-invalid to send the other {found.valid}.")
        raise typer.Exit(1)
    if not found.valid:
        _fail(f"{file}: no records to replay" + (f" ({found.summary()})" if rejected else ""))
    require_broker(settings.kafka, HINT_WITH_OPTION, topics=topic_names(settings).values())
    started = time.perf_counter()
    bar = _progress() if progress and found.valid >= LARGE_FILE_RECORDS else None
    try:
        if bar is None:
            sent = asyncio.run(replay_to_kafka(file, settings, rate=rate))
        else:
            with bar:
                task = bar.add_task("replaying", total=found.valid)
                sent = asyncio.run(
                    replay_to_kafka(
                        file,
                        settings,
                        rate=rate,
                        on_progress=lambda n: bar.update(task, completed=n),
                    )
                )
    except KafkaException as exc:
        _fail(f"sending to Kafka at {settings.bootstrap_servers} failed: {exc}")
    elapsed = max(time.perf_counter() - started, 1e-9)
    skipped = f" ({found.summary()})" if rejected else ""
    _err(
        f"sent {sent:,}, rejected {len(rejected):,}{skipped} "
        f"in {elapsed:.1f} s ({sent / elapsed:,.0f}/s)"
    )


def _progress() -> Progress | None:
    """A bar on stderr, or None when stderr is not a terminal (a log would get escapes)."""
    if not console.is_terminal:
        return None
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def _err(line: str) -> None:
    """One plain line on stderr: not wrapped, no markup (file names may hold brackets)."""
    typer.echo(line, err=True)


def _fail(line: str) -> NoReturn:
    _err(f"error: {line}")
    raise typer.Exit(1)


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
