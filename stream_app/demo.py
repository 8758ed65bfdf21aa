"""``stream-app demo``: local Kafka, topics, a worker, live traffic and a live ROI table.

Everything the demo starts it also stops on Ctrl-C: the generator, the worker (SIGTERM,
so its last transaction commits) and the broker, unless the broker was already running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from . import kafka_local
from .domain.records import CampaignLatest, DeadLetter, Metrics
from .generator import Scenario, generate_to_kafka, live_rate
from .outputs import follow
from .preflight import require_broker
from .settings import Settings
from .topics import create_topics

console = Console()


def _pct(value: float | None) -> str:
    """``+12%``; anything that rounds to zero is ``0%`` (never ``-0%``)."""
    if value is None:
        return "—"
    if abs(value) >= 100:
        return f"{value:+.1e}"
    text = f"{value:+.0%}"
    return "0%" if text in ("+0%", "-0%") else text


def _ratio(value: float | None, fmt: str = "{:.2f}") -> str:
    return "—" if value is None else fmt.format(value)


def _signed(value: float | None) -> Text:
    return Text(_pct(value), style="red" if (value or 0) < 0 else "")


def _roi(m: Metrics) -> Text:
    return Text(_pct(m.roi), style="red" if m.roi is not None and m.roi < 0 else "green")


def _window_roi(r: CampaignLatest) -> float | None:
    return r.last_window.metrics.roi if r.last_window else None


def _nowcast(r: CampaignLatest) -> float | None:
    return r.last_window.predictions.roi_nowcast if r.last_window else None


def _forecast(r: CampaignLatest) -> float | None:
    closed = r.last_closed_window
    return closed.predictions.roi_forecast if closed else None


@dataclass(frozen=True)
class Column:
    """One column of the live table; when space runs out the highest ``drop`` goes first
    (0: never dropped). ``revision`` (how often the row changed) goes first, the last
    window's ROI last."""

    header: str
    drop: int
    cell: Callable[[CampaignLatest], str | Text]
    left: bool = False


COLUMNS: tuple[Column, ...] = (
    Column("campaign", 0, lambda r: r.campaign_id, left=True),
    Column("spend", 0, lambda r: f"{r.cumulative.spend:,.2f}"),
    Column("revenue", 0, lambda r: f"{r.cumulative.revenue:,.2f}"),
    Column("ROI", 0, lambda r: _roi(r.cumulative)),
    Column("ROAS", 0, lambda r: _ratio(r.cumulative.roas)),
    Column("CPA", 3, lambda r: _ratio(r.cumulative.cpa)),
    Column("CTR", 5, lambda r: _ratio(r.cumulative.ctr, "{:.2%}")),
    Column("CVR", 4, lambda r: _ratio(r.cumulative.cvr, "{:.2%}")),
    Column("window ROI", 1, lambda r: _signed(_window_roi(r))),
    Column("nowcast", 0, lambda r: _signed(_nowcast(r))),
    Column("forecast", 2, lambda r: _signed(_forecast(r))),
    Column("sentiment", 0, lambda r: _ratio(r.cumulative.sentiment_mean, "{:+.2f}")),
    Column("revision", 6, lambda r: str(r.revision)),
)
"""In display order. Kept at any width: campaign, spend, revenue, ROI, ROAS, nowcast and
sentiment (74 columns for eight campaigns with six-figure money: an 80-column terminal)."""
REQUIRED = tuple(c.header for c in COLUMNS if c.drop == 0)


def _table_width(widths: list[int]) -> int:
    """Width of a rich table with edges and one space of padding each side of each cell."""
    return sum(widths) + 3 * len(widths) + 1


def fit_columns(rows: list[CampaignLatest], width: int | None) -> list[Column]:
    """The columns that fit ``width`` (all of them for None), dropping the optional ones in
    ``drop`` order, highest first, until the table fits without cutting a cell."""
    cells = {c.header: [Text(str(c.cell(r))).cell_len for r in rows] for c in COLUMNS}
    natural = {h: max([len(h), *lens]) for h, lens in cells.items()}
    chosen = list(COLUMNS)
    if width is None:
        return chosen
    for column in sorted(COLUMNS, key=lambda c: -c.drop):
        if _table_width([natural[c.header] for c in chosen]) <= width or column.drop == 0:
            break
        chosen.remove(column)
    return chosen


def roi_table(latest: dict[str, CampaignLatest], currency: str, width: int | None = None) -> Table:
    """One row per campaign: cumulative money and ratios, the last window's ROI and the
    models' nowcast and forecast, with as many columns as fit ``width``."""
    rows = [latest[c] for c in sorted(latest)]
    columns = fit_columns(rows, width)
    table = Table(title=f"Campaign ROI (cumulative, {currency})", expand=True)
    for column in columns:
        table.add_column(column.header, justify="left" if column.left else "right", no_wrap=True)
    for record in rows:
        table.add_row(*(column.cell(record) for column in columns))
    return table


def plain_lines(latest: dict[str, CampaignLatest]) -> list[str]:
    """One ``key=value`` line per campaign, for a log or a pipe (no live display there)."""
    lines = []
    for campaign_id in sorted(latest):
        record = latest[campaign_id]
        fields = " ".join(f"{c.header.replace(' ', '_')}={c.cell(record)}" for c in COLUMNS[1:])
        lines.append(f"{campaign_id} {fields}")
    return lines


class Demo:
    def __init__(self, settings: Settings, clicks_per_second: float, campaigns: int) -> None:
        self.settings = settings
        self.clicks_per_second = clicks_per_second
        self.campaigns = campaigns
        self.latest: dict[str, CampaignLatest] = {}
        self.dead_letters = 0
        self.started_broker = False
        self.worker: subprocess.Popen[bytes] | None = None
        self.log_path = settings.kafka_data_dir.parent / "demo-worker.log"
        self.external_broker = "bootstrap_servers" in settings.model_fields_set
        """STREAM_APP_BOOTSTRAP_SERVERS names a broker: use it, start and stop none."""

    async def run(self) -> None:
        if self.external_broker:  # checked by run_demo before anything started
            bootstrap = self.settings.bootstrap_servers
            console.print(f"Using the Kafka at {bootstrap} (STREAM_APP_BOOTSTRAP_SERVERS)")
        else:
            cfg = self.settings.local_kafka()
            with console.status("Starting Apache Kafka (first run resolves jars from Maven)…"):
                info = await asyncio.to_thread(kafka_local.start, cfg)
            self.started_broker = not info.reused
            console.print(
                f"Kafka ready at {info.bootstrap} (pid {info.pid}) in {info.startup_seconds:.1f}s"
            )
        await create_topics(self.settings)
        self.worker = self._spawn_worker()
        tasks = [
            asyncio.create_task(self._generate()),
            asyncio.create_task(self._follow_latest()),
            asyncio.create_task(self._count_dead_letters()),
        ]
        try:
            await self._live()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn_worker(self) -> subprocess.Popen[bytes]:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        return subprocess.Popen(
            [sys.executable, "-m", "stream_app", "worker"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self._worker_env()},
            start_new_session=True,  # Ctrl-C reaches the demo only; it stops the worker itself
        )

    def _worker_env(self) -> dict[str, str]:
        """The demo's settings that the worker must share with the generator."""
        s = self.settings
        env = {
            "STREAM_APP_BOOTSTRAP_SERVERS": s.bootstrap_servers,
            "STREAM_APP_ATTRIBUTION_WINDOW_SECONDS": str(s.attribution_window_seconds),
        }
        if s.label_window_seconds is not None:
            env["STREAM_APP_LABEL_WINDOW_SECONDS"] = str(s.label_window_seconds)
        return env

    async def _generate(self) -> None:
        now = time.time()
        scenario = Scenario(
            seed=int(now),
            n_campaigns=self.campaigns,
            start_ts=now,
            duration_seconds=24 * 3600,
            clicks_per_second=self.clicks_per_second,
            conversion_delay_mean_seconds=DEMO_CONVERSION_DELAY_SECONDS,
            conversion_delay_cap_seconds=self.settings.attribution_window_seconds * 1.5,
            collapse_campaign="cmp-001",
            collapse_at=120.0,
            collapse_factor=0.1,
            attribution_window_seconds=self.settings.attribution_window_seconds,
            conversion_grace_seconds=self.settings.conversion_grace_seconds,
            dedup_horizon_seconds=self.settings.dedup_horizon_seconds,
        )
        await generate_to_kafka(scenario, self.settings, rate=live_rate(scenario))

    async def _follow_latest(self) -> None:
        topic = self.settings.topics.campaign_roi_latest
        async for record in follow(self.settings.kafka, topic, CampaignLatest):
            current = self.latest.get(record.campaign_id)
            if current is None or record.revision >= current.revision:
                self.latest[record.campaign_id] = record

    async def _count_dead_letters(self) -> None:
        topic = self.settings.topics.dead_letter
        async for _ in follow(self.settings.kafka, topic, DeadLetter):
            self.dead_letters += 1

    def _state(self) -> str:
        worker = self.worker
        if worker is None or worker.poll() is None:
            return "running"
        return f"exited ({worker.returncode})"

    def _view(self, width: int) -> Group:
        port = self.settings.metrics_port
        header = Text.assemble(
            ("worker ", "bold"),
            f"{self._state()} · ",
            ("metrics ", "bold"),
            f"http://127.0.0.1:{port}/metrics · " if port else "off · ",
            ("dead letters ", "bold"),
            f"{self.dead_letters} · ",
            ("worker log ", "bold"),
            str(self.log_path),
        )
        table = roi_table(self.latest, self.settings.reporting_currency, width)
        return Group(header, table, Text(FOOTER if width >= 120 else SHORT_FOOTER, style="dim"))

    async def _live(self) -> None:
        if not console.is_terminal:
            await self._plain()
            return
        view = self._view(console.width)
        with Live(view, console=console, refresh_per_second=2, screen=False) as live:
            while True:
                live.update(self._view(console.width))  # width follows a resized terminal
                if self.worker is not None and self.worker.poll() is not None:
                    console.print(f"[red]worker exited; see {self.log_path}")
                    return
                await asyncio.sleep(0.5)

    async def _plain(self) -> None:
        """Not a terminal (``make demo | tee log``): a block of plain lines now and then,
        instead of a live display that a pipe would get as escape codes, or not at all."""
        print(f"worker log: {self.log_path}; a table every {PLAIN_INTERVAL_S:.0f} s", flush=True)
        shown = -1
        while True:
            if self.worker is not None and self.worker.poll() is not None:
                print(f"worker exited; see {self.log_path}", flush=True)
                return
            revisions = sum(r.revision for r in self.latest.values())
            if self.latest and revisions != shown:
                shown = revisions
                stamp = time.strftime("%H:%M:%S")
                print(f"{stamp} worker {self._state()}, dead letters {self.dead_letters}")
                for line in plain_lines(self.latest):
                    print(f"{stamp} {line}")
                sys.stdout.flush()
            await asyncio.sleep(PLAIN_INTERVAL_S if self.latest else 0.5)

    def shutdown(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            console.print("stopping worker (commits its last transaction)…")
            self.worker.send_signal(signal.SIGTERM)
            try:
                self.worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.worker.kill()
        if self.started_broker:
            console.print("stopping Kafka…")
            kafka_local.stop(self.settings.local_kafka())


PLAIN_INTERVAL_S = 10.0
"""How often the demo prints its plain lines when stdout is not a terminal."""
FOOTER = (
    "cmp-001's conversion rate collapses 2 minutes in. nowcast: last window's ROI once "
    "its open clicks convert as expected; forecast: the last closed window's final ROI "
    "as predicted. The models start cold: their first labels come 7 minutes in, and "
    "they settle over the first half hour. Ctrl-C stops everything."
)
SHORT_FOOTER = (
    "cmp-001 collapses 2 min in. nowcast/forecast: the models' ROI of the open/last closed "
    "window (cold start: labels from 7 min on). Ctrl-C stops everything."
)

DEMO_ATTRIBUTION_WINDOW_SECONDS = 600.0
"""Short, so that windows mature within minutes; a real deployment keeps the 7-day default."""
DEMO_LABEL_WINDOW_SECONDS = 300.0
"""The conversion model's labels come 5 minutes (+ lateness) after each click; with 90 s
mean conversion delays, 96 % of conversions are in by then."""
DEMO_CONVERSION_DELAY_SECONDS = 90.0


def run_demo(settings: Settings, clicks_per_second: float, campaigns: int) -> None:
    defaults = {
        "attribution_window_seconds": DEMO_ATTRIBUTION_WINDOW_SECONDS,
        "label_window_seconds": DEMO_LABEL_WINDOW_SECONDS,
    }
    unset = {k: v for k, v in defaults.items() if k not in settings.model_fields_set}
    settings = settings.model_copy(update=unset)
    demo = Demo(settings, clicks_per_second, campaigns)
    if demo.external_broker:
        require_broker(settings.kafka)
    # Library logs go to the demo's log file, not over the live table.
    demo.log_path.parent.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        filename=demo.log_path.with_name("demo.log"),
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(demo.run())
    finally:
        demo.shutdown()
    console.print("demo stopped.")


__all__ = ["run_demo"]
