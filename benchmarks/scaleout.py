"""Events/s and CPU per process of 1, 2 and 4 ``stream-app worker`` processes in one group.

    stream-app kafka start
    python benchmarks/scaleout.py                      # --rounds 3 --events 200000
    python benchmarks/scaleout.py --quick              # smoke test: 1 round, 40k records

The workload is ``benchmarks/throughput.py``'s: the generator's seeded traffic (seed 236, 20
campaigns, 1 % duplicates, late events, spend every 5 s, no reviews, no bad records),
generated once with its ground truth. Every run gets a fresh app id and topic prefix and
creates its topics with 8 partitions each (``STREAM_APP_PARTITIONS``).

A run starts N worker processes (``python -m stream_app worker``, as ``stream-app worker``;
each its own ``STREAM_APP_WORKER_ID``, the same ``STREAM_APP_APP_ID``, so one consumer group)
together, on the *empty* input topics, and waits until every process answers ``/healthz``
``ok`` (partitions assigned and restored) and the broker describes the group as ``Stable``
with N members, each holding partitions. That start-up is reported, not timed as work:
*join* is launch to the N-th member in the group, *rebalance* from there to stable and
healthy (and still so 1 s later). Then every process is stopped (SIGSTOP), the inputs are
filled (in the generator's order, murmur2 by key, as ``throughput.py``'s ``fill``) and all
processes are continued (SIGCONT) at once: no process works through a partition before the
others have joined, no rebalance falls inside the clock, and filling does not compete with
the workers for the two cores. The pause (about a second) is well inside the workers'
session timeout (10 s); the assignment is checked unchanged at the end.

The clock (``time.perf_counter()``) starts at SIGCONT and stops at the first check
(every 50 ms) at which the group's committed offsets (read_committed) are at the end of every
input and past the last record of every ``campaign-deltas`` partition (its last entries
are commit markers, as many as producers whose transactions ended there, so the
offset after the last record is read once the inputs are committed): every input record
and every internal record has been processed and committed (``throughput.py``'s method,
for several producers). CPU per process is utime + stime from
``/proc/<pid>/stat`` (all its threads) over the same interval; the benchmark's own CPU
(filling, the checks) and the local broker's (its pid file) are reported next to it, since
they share the 2 cores. A process's
events are the input records of the partitions the group gave it (``describe`` at start,
checked unchanged at the end).

After every run ``campaign-roi-latest`` must equal the generator's ground truth per campaign
(clicks, conversions, impressions, spend, revenue); a difference fails the benchmark. Rows
(1, 2, 4 processes, models off and on) run round robin, each round starting one row later;
the summary gives medians over the rounds and the median over rounds of each row's events/s
over the 1-process row of the same round and the same models setting.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import ConsumerGroupState, KafkaException
from confluent_kafka.admin import AdminClient
from throughput import (
    ATTRIBUTION_WINDOW_S,
    DURATION_S,
    Progress,
    Workload,
    check_truth,
    drop,
    fill,
    generate,
    input_topics,
    scenario_for,
)

from stream_app.engine.clients import client_config
from stream_app.outputs import read_all
from stream_app.settings import Settings, Topics
from stream_app.topics import create_topics

log = logging.getLogger("scaleout")

Partition = tuple[str, int]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parents[1]
SETTLE_S = 1.0
"""How long the group must stay stable, with every process healthy, to count as started."""


# -- pure helpers (tests/unit/benchmarks/test_scaleout.py) ----------------------------------
def cpu_seconds_from_stat(stat: str) -> float:
    """utime + stime of a ``/proc/<pid>/stat`` line, in seconds (every thread).

    The command name (field 2) is in parentheses and may hold spaces, so the fields are
    counted after its closing parenthesis.

    >>> line = "42 (python3 x) S 1 2 3 4 5 6 7 8 9 10 150 50 0 0"
    >>> cpu_seconds_from_stat(line) == 200 / CLOCK_TICKS
    True
    """
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / CLOCK_TICKS


def events_per_member(
    assignment: Mapping[str, Iterable[Partition]], ends: Mapping[Partition, int]
) -> dict[str, int]:
    """Input records each member must process: the end offsets of its input partitions
    (the inputs are filled after the group is stable, so every partition starts at 0).

    >>> events_per_member({"w1": [("clicks", 0)], "w2": [("clicks", 1), ("spend", 1)]},
    ...                   {("clicks", 0): 5, ("clicks", 1): 7, ("spend", 1): 2})
    {'w1': 5, 'w2': 9}
    """
    return {
        member: sum(ends.get(tp, 0) for tp in partitions)
        for member, partitions in assignment.items()
    }


def ratios_to_base(runs: Sequence[tuple[int, int, float]], base: int = 1) -> dict[int, float]:
    """Median over rounds of each size's rate over the ``base`` size's rate in that round.

    ``runs`` holds (round, processes, events/s) of one models setting.

    >>> ratios_to_base([(0, 1, 100.0), (0, 2, 180.0), (1, 1, 50.0), (1, 2, 100.0)])
    {1: 1.0, 2: 1.9}
    """
    by_round: dict[int, dict[int, float]] = {}
    for r, n, rate in runs:
        by_round.setdefault(r, {})[n] = rate
    out: dict[int, list[float]] = {}
    for rates in by_round.values():
        if base in rates:
            for n, rate in rates.items():
                out.setdefault(n, []).append(rate / rates[base])
    return {n: statistics.median(v) for n, v in sorted(out.items())}


# -- worker processes ----------------------------------------------------------------------
def broker_cpu(settings: Settings) -> float:
    """CPU-s of the local broker (``stream-app kafka start``'s pid file); nan if none."""
    try:
        pid = int((settings.kafka_data_dir / "broker.pid").read_text().split()[0])
        return cpu_seconds_from_stat(Path(f"/proc/{pid}/stat").read_text())
    except (OSError, ValueError, IndexError):
        return math.nan


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class WorkerProcess:
    """One ``stream-app worker`` process, configured by environment variables only."""

    def __init__(self, settings: Settings, worker_id: str, logs: Path, **env: str) -> None:
        self.worker_id = worker_id
        self.port = free_port()
        self.log_path = logs / f"{settings.app_id}-{worker_id}.log"
        self.env = {
            **os.environ,
            "STREAM_APP_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "STREAM_APP_APP_ID": settings.app_id,
            "STREAM_APP_TOPIC_PREFIX": settings.topics.prefix,
            "STREAM_APP_PARTITIONS": str(settings.partitions),
            "STREAM_APP_MODELS_ENABLED": "true" if settings.models_enabled else "false",
            "STREAM_APP_ATTRIBUTION_WINDOW_SECONDS": str(settings.attribution_window_seconds),
            "STREAM_APP_COMMIT_INTERVAL_SECONDS": str(settings.commit_interval_seconds),
            "STREAM_APP_WORKER_ID": worker_id,
            "STREAM_APP_METRICS_PORT": str(self.port),
            "STREAM_APP_METRICS_BIND_ADDRESS": "127.0.0.1",
            "STREAM_APP_STATE_DIR": str(settings.state_dir),
            # names its consumer in the group description (every client of the process)
            "STREAM_APP_KAFKA_CLIENT_CONFIG": json.dumps({"client.id": worker_id}),
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "stream_app", "worker"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.worker_id} exited ({self.proc.returncode}):\n{tail}")

    def _get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, ""
        except OSError:
            return 0, ""

    def healthy(self) -> bool:
        return self._get("/healthz")[0] == 200

    def metrics(self) -> str:
        return self._get("/metrics")[1]

    def cpu_seconds(self) -> float:
        return cpu_seconds_from_stat(Path(f"/proc/{self.pid}/stat").read_text())

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def metric_value(text: str, name: str, labels: str = "") -> float:
    """One sample of a Prometheus text exposition (0 if absent).

    >>> text = 'a_total{worker="roi"} 3.0\\na_total{worker="x"} 1.0'
    >>> metric_value(text, "a_total", 'worker="roi"')
    3.0
    """
    prefix = f"{name}{{{labels}}} " if labels else f"{name} "
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return 0.0


@dataclass
class Group:
    state: str
    assignment: dict[str, list[Partition]]  # client.id -> partitions


def describe(admin: AdminClient, group: str) -> Group | None:
    try:
        found = admin.describe_consumer_groups([group], request_timeout=10)[group].result()
    except KafkaException:
        return None  # not there yet, or its coordinator is still loading
    assignment: dict[str, list[Partition]] = {}
    for m in found.members:
        tps = m.assignment.topic_partitions if m.assignment else []
        assignment.setdefault(m.client_id, []).extend((tp.topic, tp.partition) for tp in tps)
    for tps in assignment.values():
        tps.sort()
    state = found.state.name if isinstance(found.state, ConsumerGroupState) else str(found.state)
    return Group(state, assignment)


@dataclass
class Startup:
    joined: float  # launch -> N members in the group
    stable: float  # launch -> group stable and every process healthy
    assignment: dict[str, list[Partition]]

    @property
    def rebalance(self) -> float:
        return self.stable - self.joined


def start_group(
    procs: Sequence[WorkerProcess], settings: Settings, limit: float = 180.0
) -> Startup:
    """Launch ``procs`` together and wait until the group is stable with all of them."""
    admin = AdminClient(client_config(settings.kafka))
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    joined = math.nan
    ids = {p.worker_id for p in procs}
    settled: tuple[float, Group] | None = None  # since when the group has been as now
    while True:
        for p in procs:
            p.check_alive()
        group = describe(admin, settings.consumer_group)
        if group is not None and set(group.assignment) == ids:
            if math.isnan(joined):
                joined = time.perf_counter() - t0
            if (
                group.state == "STABLE"
                and all(group.assignment.values())
                and all(p.healthy() for p in procs)
            ):
                now = time.perf_counter()
                if settled is None or settled[1] != group:
                    settled = (now, group)
                elif now - settled[0] >= SETTLE_S:
                    return Startup(joined, settled[0] - t0, group.assignment)
            else:
                settled = None
        if time.perf_counter() - t0 > limit:
            raise TimeoutError(f"group not stable after {limit} s: {group}")
        time.sleep(0.1)


# -- a run ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    processes: int
    models: bool

    @property
    def name(self) -> str:
        return f"{self.processes} process{'es' if self.processes > 1 else ''}, models " + (
            "on" if self.models else "off"
        )


@dataclass
class Run:
    row: Row
    round: int
    events: int
    wall: float
    fill: float
    bench_cpu: float
    broker_cpu: float  # the local broker's CPU-s in the timed interval (nan if not local)
    startup: Startup
    cpu: dict[str, float]  # worker id -> CPU-s in the timed interval
    events_of: dict[str, int]  # worker id -> input records of its partitions
    partitions_of: dict[str, int]  # worker id -> input partitions it held
    note: str = ""

    @property
    def rate(self) -> float:
        return self.events / self.wall

    @property
    def cpu_us(self) -> float:
        return sum(self.cpu.values()) / self.events * 1e6


def last_record_ends(records: Iterable[tuple[int, int]]) -> dict[int, int]:
    """Per partition, the offset after its last record, from (partition, offset) pairs.

    A group that has processed a partition commits this offset, which is short of the high
    watermark by the commit markers after the last record: one per producer whose
    transaction ended there, so it cannot be derived from the watermark alone.

    >>> last_record_ends([(0, 3), (1, 9), (0, 7), (0, 5)])
    {0: 8, 1: 10}
    """
    ends: dict[int, int] = {}
    for partition, offset in records:
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    return ends


class Completion(Progress):
    """``throughput.Progress`` for several transactional producers per ``campaign-deltas``
    partition: every attribution partition writes to every deltas partition, so a partition
    may end in several commit markers (one per worker process). Once the inputs are committed,
    attribution has written all its deltas (in the transactions that committed the inputs);
    they are read once, and the deltas are done when the committed offsets pass their last
    records."""

    def __init__(self, settings: Settings, input_ends: dict[Partition, int]) -> None:
        super().__init__(settings, input_ends)
        self.settings = settings
        self.delta_ends: dict[int, int] | None = None

    def done(self) -> bool:
        committed = {
            (tp.topic, tp.partition): tp.offset
            for tp in self.consumer.committed(self.partitions, timeout=30)
        }
        if any(committed[tp] < end for tp, end in self.input_ends.items() if end > 0):
            return False
        self.inputs_done = True
        if self.delta_ends is None:
            topic = self.settings.topics.campaign_deltas
            records = asyncio.run(read_all(self.settings.kafka, topic))
            self.delta_ends = last_record_ends((r.partition, r.offset) for r in records)
        topic = self.settings.topics.campaign_deltas
        return all(committed[(topic, p)] >= end for p, end in self.delta_ends.items())


def wait_done(
    progress: Progress, procs: Sequence[WorkerProcess], t0: float, limit: float
) -> tuple[float, float]:
    """When every input and internal record was committed, and when the inputs were."""
    inputs_at = math.nan
    while True:
        finished = progress.done()
        now = time.perf_counter()
        if progress.inputs_done and math.isnan(inputs_at):
            inputs_at = now
        if finished:
            return now, inputs_at
        for p in procs:
            p.check_alive()
        if time.perf_counter() - t0 > limit:
            raise TimeoutError(f"inputs not committed after {limit} s")
        time.sleep(0.05)


def run_settings(base: Settings, row: Row) -> Settings:
    tag = uuid.uuid4().hex[:8]
    return base.model_copy(
        update={
            "app_id": f"scale-{tag}",
            "topics": Topics(prefix=f"scale-{tag}-"),
            "models_enabled": row.models,
        }
    )


async def measure(row: Row, base: Settings, work: Workload, logs: Path, limit: float) -> Run:
    settings = run_settings(base, row)
    procs = [WorkerProcess(settings, f"w{i + 1}", logs) for i in range(row.processes)]
    admin = AdminClient(client_config(settings.kafka))
    try:
        await create_topics(settings)
        inputs = input_topics(settings).values()
        startup = await asyncio.to_thread(start_group, procs, settings)
        for p in procs:
            p.pause()
        try:
            f0 = time.perf_counter()
            ends = await asyncio.to_thread(fill, settings, work.records)
            filled = time.perf_counter() - f0
            progress = Completion(settings, ends)
            cpu0 = {p.worker_id: p.cpu_seconds() for p in procs}
            t0, bench0, broker0 = time.perf_counter(), time.process_time(), broker_cpu(settings)
        finally:
            for p in procs:
                p.resume()
        try:
            t1, inputs_at = await asyncio.to_thread(wait_done, progress, procs, t0, limit)
        finally:
            progress.close()
        cpu = {p.worker_id: p.cpu_seconds() - cpu0[p.worker_id] for p in procs}
        bench_cpu = time.process_time() - bench0
        broker = broker_cpu(settings) - broker0
        after = await asyncio.to_thread(describe, admin, settings.consumer_group)
        note = f"inputs committed at {inputs_at - t0:.2f} s; "
        if after is None or after.assignment != startup.assignment:
            note = "the assignment changed during the run; "
        input_names = set(inputs)
        mine = {
            w: [tp for tp in tps if tp[0] in input_names] for w, tps in startup.assignment.items()
        }
        await check_truth(settings, work.truth)
        note += "outputs = ground truth"
        return Run(
            row,
            0,
            len(work.records),
            t1 - t0,
            filled,
            bench_cpu,
            broker,
            startup,
            cpu,
            events_per_member(mine, ends),
            {w: len(tps) for w, tps in mine.items()},
            note,
        )
    finally:
        for p in procs:  # all at once: one by one, the last would take every partition over
            p.terminate()
        for p in procs:
            await asyncio.to_thread(p.stop)
        await asyncio.to_thread(drop, settings, True)
        for future in admin.delete_consumer_groups(
            [settings.consumer_group + "-sentiment"]
        ).values():
            with contextlib.suppress(KafkaException):
                future.result()


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def describe_run(run: Run) -> str:
    per = "; ".join(
        f"{w}: {run.partitions_of[w]}p {run.events_of[w]:,} ev "
        f"{run.cpu[w]:.2f} CPU-s ({run.cpu[w] / run.wall:.0%})"
        for w in sorted(run.cpu)
    )
    return (
        f"{run.rate:>8,.0f} events/s {run.cpu_us:5.1f} CPU-µs/event {run.wall:6.2f} s"
        f" (filled in {run.fill:.2f} s before; benchmark {run.bench_cpu:.2f} CPU-s,"
        f" broker {run.broker_cpu:.2f} CPU-s = {run.broker_cpu / run.wall:.0%})"
        f" | join {run.startup.joined:.1f} s, rebalance {run.startup.rebalance:.1f} s"
        f" | {per} | load {load_average()} | {run.note}"
    )


def report(runs: list[Run], rows: Sequence[Row]) -> None:
    print()
    print(
        "| row | events/s, median (min–max) | vs 1 process | CPU-µs/event (all workers) "
        "| CPU-s per process, median | busy per process | all workers | broker "
        "| wall s | join s | rebalance s |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for models in (False, True):
        same = [r for r in runs if r.row.models == models]
        ratios = ratios_to_base([(r.round, r.row.processes, r.rate) for r in same])
        for row in rows:
            if row.models != models:
                continue
            mine = [r for r in same if r.row == row]
            if not mine:
                continue
            rates = [r.rate for r in mine]
            per_cpu = [c for r in mine for c in r.cpu.values()]
            busy = [c / r.wall for r in mine for c in r.cpu.values()]
            print(
                f"| {row.name} | {statistics.median(rates):,.0f}"
                f" ({min(rates):,.0f}–{max(rates):,.0f})"
                f" | {ratios.get(row.processes, math.nan):.2f}"
                f" | {statistics.median(r.cpu_us for r in mine):.1f}"
                f" | {statistics.median(per_cpu):.2f}"
                f" | {statistics.median(busy):.0%}"
                f" | {statistics.median(sum(r.cpu.values()) / r.wall for r in mine):.0%}"
                f" | {statistics.median(r.broker_cpu / r.wall for r in mine):.0%}"
                f" | {statistics.median(r.wall for r in mine):.2f}"
                f" | {statistics.median(r.startup.joined for r in mine):.1f}"
                f" | {statistics.median(r.startup.rebalance for r in mine):.1f} |"
            )


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--events", type=int, default=200_000, help="input records, about")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--campaigns", type=int, default=20)
    parser.add_argument("--seed", type=int, default=236, help="scenario seed")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument(
        "--processes", default="1,2,4", help="comma-separated process counts (default 1,2,4)"
    )
    parser.add_argument("--models", choices=("off", "on", "both"), default="both")
    parser.add_argument("--limit", type=float, default=300.0, help="seconds one run may take")
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: 1 round, 40k records, 1 and 2, off"
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.events, args.processes, args.models = 1, 40_000, "1,2", "off"
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    tmp = Path(tempfile.mkdtemp(prefix="bench-scaleout-"))
    base = Settings(
        partitions=args.partitions,
        metrics_port=0,
        attribution_window_seconds=ATTRIBUTION_WINDOW_S,
        state_dir=tmp / "state",
    )
    sizes = [int(n) for n in args.processes.split(",")]
    models = {"off": [False], "on": [True], "both": [False, True]}[args.models]
    rows = [Row(n, m) for m in models for n in sizes]
    scenario = scenario_for(args.events, args.campaigns, args.seed)
    work = generate(base, scenario)
    counts = ", ".join(f"{n:,} {kind}s" for kind, n in sorted(work.counts.items()))
    print(
        f"{len(work.records):,} records ({counts}),"
        f" {scenario.clicks_per_second:.0f} clicks/s over {DURATION_S:.0f} s of event time;"
        f" {args.partitions} partitions; broker {base.bootstrap_servers};"
        f" {os.cpu_count()} cores, load {load_average()}; worker logs in {tmp}",
        flush=True,
    )
    runs: list[Run] = []
    failed = True
    try:
        for r in range(args.rounds):
            for i in range(len(rows)):
                row = rows[(i + r) % len(rows)]
                run = await measure(row, base, work, tmp, args.limit)
                run.round = r
                runs.append(run)
                print(f"round {r + 1} {row.name:24s} {describe_run(run)}", flush=True)
        failed = False
    finally:
        if failed:
            print(f"worker logs kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    report(runs, rows)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(130)
