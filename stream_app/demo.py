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

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from . import kafka_local
from .domain.records import CampaignLatest, DeadLetter
from .generator import Scenario, generate_to_kafka, live_rate
from .outputs import follow
from .settings import Settings
from .topics import create_topics

console = Console()


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:+.0%}" if abs(value) < 100 else f"{value:+.1e}"


def _ratio(value: float | None, fmt: str = "{:.2f}") -> str:
    return "—" if value is None else fmt.format(value)


def roi_table(latest: dict[str, CampaignLatest], currency: str) -> Table:
    """One row per campaign: cumulative money and ratios, and the last window's ROI."""
    table = Table(title=f"Campaign ROI (cumulative, {currency})", expand=True)
    for column in (
        "campaign",
        "spend",
        "revenue",
        "ROI",
        "ROAS",
        "CPA",
        "CTR",
        "CVR",
        "last window ROI",
        "nowcast",
        "forecast",
        "sentiment",
        "rev",
    ):
        table.add_column(column, justify="left" if column == "campaign" else "right")
    for campaign_id in sorted(latest):
        record = latest[campaign_id]
        m = record.cumulative
        window = record.last_window
        window_roi = window.metrics.roi if window else None
        nowcast = window.predictions.roi_nowcast if window else None
        closed = record.last_closed_window
        forecast = closed.predictions.roi_forecast if closed else None
        style = "red" if m.roi is not None and m.roi < 0 else "green"
        table.add_row(
            campaign_id,
            f"{m.spend:,.2f}",
            f"{m.revenue:,.2f}",
            Text(_pct(m.roi), style=style),
            _ratio(m.roas),
            _ratio(m.cpa),
            _ratio(m.ctr, "{:.2%}"),
            _ratio(m.cvr, "{:.2%}"),
            Text(_pct(window_roi), style="red" if (window_roi or 0) < 0 else ""),
            Text(_pct(nowcast), style="red" if (nowcast or 0) < 0 else ""),
            Text(_pct(forecast), style="red" if (forecast or 0) < 0 else ""),
            _ratio(m.sentiment_mean, "{:+.2f}"),
            str(record.revision),
        )
    return table


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

    async def run(self) -> None:
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

    def _view(self) -> Group:
        worker = self.worker
        state = (
            "running"
            if worker and worker.poll() is None
            else f"exited ({worker and worker.returncode})"
        )
        port = self.settings.metrics_port
        header = Text.assemble(
            ("worker ", "bold"),
            f"{state} · ",
            ("metrics ", "bold"),
            f"http://127.0.0.1:{port}/metrics · " if port else "off · ",
            ("dead letters ", "bold"),
            f"{self.dead_letters} · ",
            ("worker log ", "bold"),
            str(self.log_path),
        )
        footer = Text(
            "cmp-001's conversion rate collapses 2 minutes in. nowcast: last window's ROI once "
            "its open clicks convert as expected; forecast: the last closed window's final ROI "
            "as predicted. The models start cold: their first labels come 7 minutes in, and "
            "they settle over the first half hour. Ctrl-C stops everything.",
            style="dim",
        )
        return Group(header, roi_table(self.latest, self.settings.reporting_currency), footer)

    async def _live(self) -> None:
        with Live(self._view(), console=console, refresh_per_second=2, screen=False) as live:
            while True:
                live.update(self._view())
                if self.worker is not None and self.worker.poll() is not None:
                    console.print(f"[red]worker exited; see {self.log_path}")
                    return
                await asyncio.sleep(0.5)

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
