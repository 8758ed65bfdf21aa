"""``stream-app demo``: local Kafka, topics, a worker, live traffic and a live ROI table.

Everything the demo starts it also stops on Ctrl-C: the generator, the worker (SIGTERM,
so its last transaction commits) and the broker, unless the broker was already running.
One demo at a time (a lock in its directory, beside the broker's data dir). Each run has
its own topics, groups and state, so a restart starts fresh unless ``--continue`` asks
for the last run (docs/local-kafka.md, "The demo").
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from . import kafka_local
from .domain.records import CampaignAlert, CampaignLatest, DeadLetter, Metrics
from .engine.clients import client_config
from .generator import Scenario, generate_to_kafka, live_rate
from .generator.profiles import draw_profiles
from .generator.shocks import target_campaign
from .kafka_local.broker import pid_alive
from .outputs import follow
from .preflight import check_broker, require_broker
from .settings import Settings, Topics
from .topics import create_topics, topic_specs

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


_DRIVERS = {"ctr": "CTR", "cvr": "CVR", "order_value": "order value", "cpm": "cost per mille"}


def alert_line(alert: CampaignAlert) -> str:
    """One line per alert under the table: campaign, state, ROI before and now, and the
    first driver with its change (``alert cmp-001 firing: ROI +0.52 -> -0.81, first
    driver CVR -90%``)."""
    first = alert.drivers[0] if alert.drivers else None
    driver = ""
    if first is not None:
        driver = f", first driver {_DRIVERS[first.name]} {_pct(first.now / first.before - 1)}"
    return (
        f"alert {alert.campaign_id} {alert.state}: ROI {alert.roi_before:+.2f} -> "
        f"{alert.roi_now:+.2f}{driver}"
    )


EXIT_DEMO_RUNNING = 75
"""Exit status when another demo runs (``EX_TEMPFAIL`` of sysexits.h: try again later)."""
DEMO_DIR_ENV = "STREAM_APP_DEMO_DIR"
"""Set in the demo's worker's environment: how a later demo recognises a worker that a
killed demo left running (a pid alone could have been reused by another process)."""


def say(text: str) -> None:
    """One plain line on stdout, never wrapped (a log or a pipe gets it whole). A reader
    that went away (``| tee``, killed by the same Ctrl-C) must not keep the demo from
    stopping its worker: stdout then goes to /dev/null. (Not rich's print: on a broken
    pipe rich raises SystemExit(1), which left the worker running.)"""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        _mute_stdout()


def _mute_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    with contextlib.suppress(OSError):
        os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


class DemoRunningError(Exception):
    """Another demo holds the demo directory's lock; ``str()`` is the line to show."""


def _environ(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return []


@dataclass(frozen=True)
class DemoRun:
    """One demo run's namespace: its own topics (``<prefix>demo-<id>-…``), consumer groups
    and transactional ids (``<app_id>-demo-<id>…``). A fresh run gets a new one, so it can
    never see a previous run's totals, dead letters or models, and never has to wait for a
    topic of the same name to be deleted before creating it."""

    run_id: str
    bootstrap: str
    base_app_id: str
    base_prefix: str
    started_at: float

    @classmethod
    def new(cls, settings: Settings) -> DemoRun:
        return cls(
            run_id=secrets.token_hex(3),
            bootstrap=settings.bootstrap_servers,
            base_app_id=settings.app_id,
            base_prefix=settings.topics.prefix,
            started_at=time.time(),
        )

    @property
    def app_id(self) -> str:
        return f"{self.base_app_id}-demo-{self.run_id}"

    @property
    def prefix(self) -> str:
        return f"{self.base_prefix}demo-{self.run_id}-"

    @property
    def groups(self) -> list[str]:
        """The consumer groups of its worker (``stream_app.runner``)."""
        return [self.app_id, f"{self.app_id}-sentiment"]

    def settings(self, base: Settings, state_dir: Path) -> Settings:
        """``base`` with this run's app id, topic prefix and worker state dir."""
        update = {"app_id": self.app_id, "topics": Topics(prefix=self.prefix)}
        return base.model_copy(update={**update, "state_dir": state_dir})

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> DemoRun | None:
        """None for a missing or unreadable record (a crash mid-write): then nothing is
        continued and nothing deleted."""
        try:
            return cls(**json.loads(text))
        except (ValueError, TypeError):
            return None


@dataclass(frozen=True)
class RunChoice:
    """What the demo runs and the one line that says so."""

    run: DemoRun
    restored: bool
    """The models (and totals) come from the previous run's state, not cold."""
    message: str
    hint: str = ""
    """Said after what was deleted: how to get the other behaviour."""
    stale: DemoRun | None = None
    """A previous run on the same broker, whose topics and groups a fresh run deletes."""


def choose_run(
    previous: DemoRun | None, settings: Settings, existing_topics: set[str], *, resume: bool
) -> RunChoice:
    """Continue ``previous`` (``--continue``) if its topics are still on this broker, else
    start a fresh run, and delete a previous run on this broker."""
    here = previous is not None and previous.bootstrap == settings.bootstrap_servers
    alive = here and previous is not None and f"{previous.prefix}clicks" in existing_topics
    if resume and previous is not None and alive:
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(previous.started_at))
        return RunChoice(
            previous,
            restored=True,
            message=f"Continuing demo run {previous.run_id} of {started}: its totals, dead "
            "letters and models (restored from their changelogs). Without --continue the "
            "demo starts fresh.",
        )
    run = DemoRun.new(settings)
    why = "" if not resume else f"nothing to continue at {settings.bootstrap_servers}; "
    return RunChoice(
        run,
        restored=False,
        message=f"{why}Fresh demo run {run.run_id} (topics {run.prefix}*): totals from zero, "
        "models cold.",
        hint=" --continue resumes the last run instead.",
        stale=previous if here else None,
    )


class DemoDir:
    """The demo's own files, beside the local broker's data dir: a lock held while a demo
    runs, the last run's record, its worker's pid, logs and state.

    The lock is an ``flock``: the kernel drops it when the demo exits however it exits
    (``kill -9`` too), so it is never stale; the pid written in it is only for the message.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock = root / "demo.lock"
        self.run_file = root / "run.json"
        self.worker_pid = root / "worker.pid"
        self.worker_log = root / "worker.log"
        self.demo_log = root / "demo.log"
        self.state = root / "state"
        self._lock_fd: int | None = None

    @classmethod
    def of(cls, settings: Settings) -> DemoDir:
        return cls(settings.kafka_data_dir.expanduser().parent / "demo")

    def acquire(self) -> None:
        """Hold the lock for this process's lifetime, or raise :class:`DemoRunningError`."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DemoRunningError(
                f"a demo is already running (pid {holder}, files in {self.root}); "
                f"stop it with Ctrl-C in its terminal or 'kill {holder}' first."
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = None

    def previous_run(self) -> DemoRun | None:
        try:
            return DemoRun.from_json(self.run_file.read_text())
        except OSError:
            return None

    def save_run(self, run: DemoRun) -> None:
        tmp = self.run_file.with_suffix(".tmp")
        tmp.write_text(run.to_json())
        tmp.replace(self.run_file)

    def leftover_worker(self) -> int | None:
        """The worker of a demo that was killed (``kill -9`` gives it no chance to stop its
        worker, which runs in its own session): alive, and marked as this dir's."""
        try:
            pid = int(self.worker_pid.read_text().strip())
        except (OSError, ValueError):
            return None
        mark = f"{DEMO_DIR_ENV}={self.root}".encode()
        return pid if pid_alive(pid) and mark in _environ(pid) else None


def stop_process(pid: int, timeout: float = 30.0) -> None:
    """SIGTERM (a worker commits its last transaction), then SIGKILL after ``timeout``."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def metrics_port_free(address: str, port: int) -> bool:
    """Whether the worker could serve /metrics there (as its HTTP server binds, with
    SO_REUSEADDR); checked before anything starts, not found in the worker's traceback."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


def delete_run(settings: Settings, run: DemoRun, timeout: float = 15.0) -> int:
    """Delete ``run``'s topics and consumer groups; returns how many topics went. Only a
    run the demo recorded itself is ever deleted, never a topic it did not create."""
    names = {spec.topic for spec in topic_specs(run.settings(settings, settings.state_dir))}
    admin = AdminClient(client_config(settings.kafka))
    existing = set(admin.list_topics(timeout=timeout).topics)
    doomed = sorted(names & existing)
    deleted = 0
    if doomed:
        for name, future in admin.delete_topics(doomed, operation_timeout=timeout).items():
            try:
                future.result()
                deleted += 1
            except KafkaException as exc:
                logging.getLogger(__name__).warning("could not delete topic %s: %s", name, exc)
    for group, future in admin.delete_consumer_groups(run.groups, request_timeout=timeout).items():
        try:
            future.result()
        except KafkaException as exc:  # never committed (a short run), or still has members
            logging.getLogger(__name__).info("group %s not deleted: %s", group, exc)
    return deleted


class Demo:
    def __init__(
        self,
        settings: Settings,
        clicks_per_second: float,
        campaigns: int,
        *,
        resume: bool = False,
        files: DemoDir | None = None,
    ) -> None:
        self.settings = settings
        self.clicks_per_second = clicks_per_second
        self.campaigns = campaigns
        self.resume = resume
        self.files = files or DemoDir.of(settings)
        self.latest: dict[str, CampaignLatest] = {}
        self.collapsed = "cmp-001"
        """The campaign whose conversion rate collapses (set when the traffic starts)."""
        self.alerts: dict[str, CampaignAlert] = {}
        """Each campaign's last alert record (firing or resolved), from ``campaign-alerts``."""
        self.dead_letters = 0
        self.restored = False
        """The models were restored from a previous run (--continue), not cold."""
        self.started_broker = False
        self.worker: subprocess.Popen[bytes] | None = None
        self.log_path = self.files.worker_log
        self.external_broker = "bootstrap_servers" in settings.model_fields_set
        """STREAM_APP_BOOTSTRAP_SERVERS names a broker: use it, start and stop none."""

    async def run(self) -> None:
        await self._broker()
        await self._choose_run()
        await create_topics(self.settings)
        self.worker = self._spawn_worker()
        tasks = [
            asyncio.create_task(self._generate()),
            asyncio.create_task(self._follow_latest()),
            asyncio.create_task(self._follow_alerts()),
            asyncio.create_task(self._count_dead_letters()),
        ]
        try:
            await self._live()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _broker(self) -> None:
        """Start the local broker, or say which running one the demo uses (and leaves)."""
        if self.external_broker:  # checked by run_demo before anything started
            bootstrap = self.settings.bootstrap_servers
            say(f"Using the Kafka at {bootstrap} (STREAM_APP_BOOTSTRAP_SERVERS)")
            return
        cfg = self.settings.local_kafka()
        with console.status("Starting Apache Kafka (first run resolves jars from Maven)…"):
            info = await asyncio.to_thread(kafka_local.start, cfg)
        self.started_broker = not info.reused
        if info.reused:
            say(
                f"Kafka: reusing the running broker at {info.bootstrap} (pid {info.pid}); "
                "the demo leaves it running"
            )
        else:
            say(f"Kafka ready at {info.bootstrap} (pid {info.pid}) in {info.startup_seconds:.1f}s")

    async def _choose_run(self) -> None:
        """Fresh run (new topics; the previous run's deleted) or the previous one resumed;
        the worker's leftover of a killed demo is stopped first, it would compete."""
        leftover = self.files.leftover_worker()
        if leftover is not None:
            say(f"Stopping the worker (pid {leftover}) left running by a demo that was killed")
            await asyncio.to_thread(stop_process, leftover)
        existing = await asyncio.to_thread(check_broker, self.settings.kafka)
        choice = choose_run(self.files.previous_run(), self.settings, existing, resume=self.resume)
        message = choice.message
        if choice.stale is not None:
            try:
                deleted = await asyncio.to_thread(delete_run, self.settings, choice.stale)
            except KafkaException as exc:
                logging.getLogger(__name__).warning("previous run not deleted: %s", exc)
                message += f" The previous run's topics could not be deleted: {exc}."
            else:
                message += f" Deleted the previous run's {deleted} topics." if deleted else ""
        if not choice.restored:  # in-flight marks of another run's transactional ids
            shutil.rmtree(self.files.state, ignore_errors=True)
        message += choice.hint
        self.files.save_run(choice.run)
        self.restored = choice.restored
        self.settings = choice.run.settings(self.settings, self.files.state)
        say(message)

    def _spawn_worker(self) -> subprocess.Popen[bytes]:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        worker = subprocess.Popen(
            [sys.executable, "-m", "stream_app", "worker"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self._worker_env()},
            start_new_session=True,  # Ctrl-C reaches the demo only; it stops the worker itself
        )
        self.files.worker_pid.write_text(f"{worker.pid}\n")
        return worker

    def _worker_env(self) -> dict[str, str]:
        """The demo's settings that the worker must share with the generator."""
        s = self.settings
        env = {
            "STREAM_APP_BOOTSTRAP_SERVERS": s.bootstrap_servers,
            "STREAM_APP_APP_ID": s.app_id,
            "STREAM_APP_TOPIC_PREFIX": s.topics.prefix,
            "STREAM_APP_STATE_DIR": str(s.state_dir),
            "STREAM_APP_ATTRIBUTION_WINDOW_SECONDS": str(s.attribution_window_seconds),
            DEMO_DIR_ENV: str(self.files.root),
        }
        if s.label_window_seconds is not None:
            env["STREAM_APP_LABEL_WINDOW_SECONDS"] = str(s.label_window_seconds)
        for name in DEMO_ALERTING:  # the detector's short spans (or what the user set)
            env[f"STREAM_APP_{name.upper()}"] = str(getattr(s, name))
        return env

    async def _generate(self) -> None:
        now = time.time()
        seed = int(now)
        # the campaign with the most conversions collapses: it has the baseline (30
        # conversions) the detector asks for by then, where a small one would not
        collapsed = target_campaign(draw_profiles(seed, self.campaigns))
        self.collapsed = collapsed
        scenario = Scenario(
            seed=seed,
            n_campaigns=self.campaigns,
            start_ts=now,
            duration_seconds=24 * 3600,
            clicks_per_second=self.clicks_per_second,
            conversion_delay_mean_seconds=DEMO_CONVERSION_DELAY_SECONDS,
            conversion_delay_cap_seconds=self.settings.attribution_window_seconds * 1.5,
            collapse_campaign=collapsed,
            collapse_at=DEMO_COLLAPSE_AT_SECONDS,
            collapse_factor=0.1,
            attribution_window_seconds=self.settings.attribution_window_seconds,
            conversion_grace_seconds=self.settings.conversion_grace_seconds,
            dedup_horizon_seconds=self.settings.dedup_horizon_seconds,
        )
        say(
            f"{collapsed}'s conversion rate collapses to a tenth "
            f"{DEMO_COLLAPSE_AT_SECONDS / 60:.0f} minutes in (event time): watch for its alert"
        )
        rate = live_rate(scenario) * self.settings.demo_time_scale
        await generate_to_kafka(scenario, self.settings, rate=rate)

    async def _follow_latest(self) -> None:
        topic = self.settings.topics.campaign_roi_latest
        async for record in follow(self.settings.kafka, topic, CampaignLatest):
            current = self.latest.get(record.campaign_id)
            if current is None or record.revision >= current.revision:
                self.latest[record.campaign_id] = record

    async def _follow_alerts(self) -> None:
        topic = self.settings.topics.campaign_alerts
        async for alert in follow(self.settings.kafka, topic, CampaignAlert):
            current = self.alerts.get(alert.campaign_id)
            if current is None or alert.revision >= current.revision:
                self.alerts[alert.campaign_id] = alert

    def alert_lines(self) -> list[str]:
        return [alert_line(self.alerts[c]) for c in sorted(self.alerts)]

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
        alerts = [
            Text(line, style="bold red" if "firing" in line else "") for line in self.alert_lines()
        ]
        return Group(
            header,
            table,
            *alerts,
            Text(footer(width, restored=self.restored, collapsed=self.collapsed), style="dim"),
        )

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
        say(f"worker log: {self.log_path}; a table every {PLAIN_INTERVAL_S:.0f} s")
        shown = -1
        while True:
            if self.worker is not None and self.worker.poll() is not None:
                say(f"worker exited; see {self.log_path}")
                return
            revisions = sum(r.revision for r in self.latest.values())
            if self.latest and revisions != shown:
                shown = revisions
                stamp = time.strftime("%H:%M:%S")
                lines = [f"worker {self._state()}, dead letters {self.dead_letters}"]
                lines += plain_lines(self.latest)
                lines += self.alert_lines()
                print("\n".join(f"{stamp} {line}" for line in lines), flush=True)
            await asyncio.sleep(PLAIN_INTERVAL_S if self.latest else 0.5)

    def shutdown(self) -> None:
        """Stop the worker (SIGTERM: it commits its last transaction) and the broker if this
        demo started it; the lock goes last, so no second demo starts before that."""
        try:
            if self.worker is not None and self.worker.poll() is None:
                say("stopping worker (commits its last transaction)…")
                self.worker.send_signal(signal.SIGTERM)
                try:
                    self.worker.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.worker.kill()
                    self.worker.wait()
            if self.worker is not None:
                self.files.worker_pid.unlink(missing_ok=True)
            if self.started_broker:
                say("stopping Kafka…")
                kafka_local.stop(self.settings.local_kafka())
        finally:
            self.files.release()


PLAIN_INTERVAL_S = 10.0
"""How often the demo prints its plain lines when stdout is not a terminal."""
COLD = (
    "The models start cold: their first labels come 7 minutes in, and they settle over "
    "the first half hour."
)
RESTORED = "The models continue where the previous run left them (restored from its state)."


def footer(width: int, *, restored: bool, collapsed: str = "cmp-001") -> str:
    """The line under the table; it says whether the models started cold or were restored."""
    if width >= 120:
        return (
            f"{collapsed}'s conversion rate collapses 5 minutes in; its alert shows under the "
            "table a few minutes later. nowcast: last window's ROI once "
            "its open clicks convert as expected; forecast: the last closed window's final ROI "
            f"as predicted. {RESTORED if restored else COLD} Ctrl-C stops everything."
        )
    models = "models restored from the last run" if restored else "cold start: labels from 7 min on"
    return (
        f"{collapsed} collapses 5 min in (alert below). nowcast/forecast: the models' ROI of the "
        f"open/last closed window ({models}). Ctrl-C stops everything."
    )


DEMO_ATTRIBUTION_WINDOW_SECONDS = 600.0
"""Short, so that windows mature within minutes; a real deployment keeps the 7-day default."""
DEMO_LABEL_WINDOW_SECONDS = 300.0
"""The conversion model's labels come 5 minutes (+ lateness) after each click; with 90 s
mean conversion delays, 96 % of conversions are in by then."""
DEMO_CONVERSION_DELAY_SECONDS = 90.0
DEMO_COLLAPSE_AT_SECONDS = 300.0
"""The busiest campaign's conversion rate falls to a tenth 5 minutes in: by then its baseline
has the 30 conversions the detector asks for at the demo's click rates (docs/alerts.md)."""
DEMO_ALERTING: dict[str, float] = {
    "alert_recent_seconds": 180.0,
    "alert_baseline_seconds": 1800.0,
    "alert_interval_seconds": 30.0,
    "alert_bucket_seconds": 60.0,
    "alert_review_span_seconds": 600.0,
    "alert_delay_horizon_seconds": 900.0,
}
"""The detector on minutes instead of hours (the defaults test 15 min against 6 h), so the
collapse is an alert within about 3 minutes of it; unless set in the environment. Buckets
stay the attribution's 60 s windows: clicks and conversions arrive per click window, so a
shorter bucket would put a window's clicks at its start and overstate their conversions'
completeness (a false CVR drop on every busy campaign, seen with 30 s buckets)."""


def run_demo(
    settings: Settings, clicks_per_second: float, campaigns: int, *, resume: bool = False
) -> None:
    """The demo, after its checks: another demo running, the metrics port taken or (with
    STREAM_APP_BOOTSTRAP_SERVERS) no broker each end it with one line before anything
    starts, so a second demo can neither break the first nor inject traffic into it."""
    defaults = {
        "attribution_window_seconds": DEMO_ATTRIBUTION_WINDOW_SECONDS,
        "label_window_seconds": DEMO_LABEL_WINDOW_SECONDS,
        **DEMO_ALERTING,
    }
    unset = {k: v for k, v in defaults.items() if k not in settings.model_fields_set}
    settings = settings.model_copy(update=unset)
    demo = Demo(settings, clicks_per_second, campaigns, resume=resume)
    try:
        demo.files.acquire()
    except DemoRunningError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_DEMO_RUNNING) from None
    try:
        _check_metrics_port(settings)
        if demo.external_broker:
            require_broker(settings.kafka)
    except BaseException:
        demo.files.release()
        raise
    # 'kill <pid>' (as the refusal above suggests) and a closed terminal stop the demo as
    # Ctrl-C does: its worker and its broker with it, not left running without it.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.default_int_handler)
    # Library logs go to the demo's log file, not over the live table.
    logging.basicConfig(
        filename=demo.files.demo_log,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
            asyncio.run(demo.run())
    finally:
        with contextlib.suppress(BrokenPipeError):
            sys.stdout.flush()
        demo.shutdown()
    say("demo stopped.")


def _check_metrics_port(settings: Settings) -> None:
    port, address = settings.metrics_port, settings.metrics_bind_address
    if port and not metrics_port_free(address, port):
        print(
            f"error: {address}:{port}, where the demo's worker serves /metrics, is taken by "
            "another process (a 'stream-app worker'?); stop it, or set STREAM_APP_METRICS_PORT "
            "to a free port (0: no /metrics).",
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(1)


__all__ = ["run_demo"]
