"""End-to-end events/s and CPU per event of the worker against raw consumers, side by side.

    stream-app kafka start
    python benchmarks/throughput.py                    # --rounds 3 --events 200000
    python benchmarks/throughput.py --sweep            # raw confluent-kafka fetch settings

The workload is the generator's seeded traffic (``stream_app.generator``): clicks over 20
campaigns, the conversions their profiles give, spend every 5 s per campaign, 1 %
duplicates, late events, no reviews and no bad records (the raw rows would choke on bad
JSON). It is generated once, with its ground truth; every run then gets a fresh app id and
topic prefix, creates its topics and is filled with the same records (4 partitions per
topic) before its clock starts. Rows, run round robin (each round starting one row later):

* ``raw aiokafka``: ``getmany(5000)`` + ``orjson.loads`` + per-campaign sums (the old
  baseline; no validation, state, outputs or commits);
* ``raw confluent``: ``consume(5000)`` + the same decode and sums, librdkafka's default fetch
  settings;
* ``raw confluent tuned``: the same with ``queued.min.messages=1000000``, the one setting
  that measured better here (``--sweep`` measures the candidates, docs/throughput.md);
* ``worker, models off`` / ``worker, models on``: the product (``stream_app.runner.build_worker``,
  with its Prometheus metrics as ``stream-app worker`` has them), ``models_enabled`` off / on.

A raw row's clock runs from ``assign()`` to its last input record. A worker's runs from the
moment it installs its first restored partition state (it processes that partition from then
on, while others may still restore; ``ready`` waits for all of them) to the commit after
which every input record *and* every ``campaign-deltas`` record the worker wrote to itself
has been processed: after each commit the benchmark reads the group's committed offsets
(read_committed, so pending transactional offsets are waited for) and the high watermarks.
The inputs are done when the committed offsets equal their ends; a ``campaign-deltas``
partition, written only in transactions, is done when its committed offset reaches the high
watermark minus one (its last entry is a commit marker, which a consumer never hands out).
That commit is the worker's last: with nothing left to read it commits nothing more (a later
commit is reported). Wall time is ``time.perf_counter()``, CPU is ``time.process_time()``
(every thread of this process: the event loop, the committer, librdkafka's), both taken as
the first state is installed and in the commit observer. Everything the benchmark holds is
frozen out of the garbage collector's way (``gc.freeze()``) while a row runs, as a worker
process would not hold it.

After each worker run, ``campaign-roi-latest`` must equal the generator's ground truth per
campaign (clicks, conversions, impressions, spend, revenue), and each raw row must have read
every record once; a difference fails the benchmark. Prints per row the median events/s,
CPU-µs per event and the median over rounds of its ratio to the best raw row and to the
default confluent row of the same round. The machine is shared: compare ratios from the
same invocation, not absolute numbers across invocations.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import math
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition as AioPartition
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client import CollectorRegistry

from stream_app.domain.money import CurrencyTable
from stream_app.engine.clients import PARTITION_EOF, client_config, producer_config
from stream_app.engine.stage import PartitionState
from stream_app.generator.profiles import Scenario
from stream_app.generator.traffic import Emitted, TrafficGenerator, estimate_records
from stream_app.generator.truth import GroundTruth
from stream_app.observability import Metrics
from stream_app.outputs import latest_by_campaign
from stream_app.runner import build_worker, configure_gc
from stream_app.settings import Settings, Topics
from stream_app.topics import create_topics, topic_specs

log = logging.getLogger("throughput")

Partition = tuple[str, int]
MiB = 1024 * 1024
DURATION_S = 1200.0  # event time the traffic spans; clicks/s is scaled to --events
ATTRIBUTION_WINDOW_S = 300.0  # short, so that negative labels flow as well as positive ones
BATCH = 5000  # records per getmany()/consume(), as the worker's max_poll_records

# (librdkafka settings, consume() batch) of the raw confluent rows; --sweep measures these
CONFLUENT: dict[str, tuple[dict[str, Any], int]] = {
    "default": ({}, BATCH),
    "worker's fetch": (
        {
            "max.partition.fetch.bytes": 4 * MiB,
            "fetch.max.bytes": 32 * MiB,
            "queued.max.messages.kbytes": 64 * 1024,
        },
        BATCH,
    ),
    "batch 20k": ({}, 20_000),
    "min 1 MiB, batch 20k": ({"fetch.min.bytes": MiB, "fetch.wait.max.ms": 100}, 20_000),
    "queued 1M": ({"queued.min.messages": 1_000_000}, BATCH),
    "queued 1M, batch 20k": ({"queued.min.messages": 1_000_000}, 20_000),
    "worker's fetch, queued 1M": (
        {
            "max.partition.fetch.bytes": 4 * MiB,
            "fetch.max.bytes": 32 * MiB,
            "queued.max.messages.kbytes": 64 * 1024,
            "queued.min.messages": 1_000_000,
        },
        BATCH,
    ),
    "wait 100 ms, queued 1M": ({"fetch.wait.max.ms": 100, "queued.min.messages": 1_000_000}, BATCH),
    "wait 10 ms, queued 1M": ({"fetch.wait.max.ms": 10, "queued.min.messages": 1_000_000}, BATCH),
    "8/64 MiB, wait 100 ms, queued 1M": (
        {
            "max.partition.fetch.bytes": 8 * MiB,
            "fetch.max.bytes": 64 * MiB,
            "fetch.wait.max.ms": 100,
            "queued.min.messages": 1_000_000,
        },
        BATCH,
    ),
    "8/64 MiB, batch 20k": (
        {"max.partition.fetch.bytes": 8 * MiB, "fetch.max.bytes": 64 * MiB},
        20_000,
    ),
    "backoff 10 ms": ({"fetch.queue.backoff.ms": 10}, BATCH),
    "queued 1M, backoff 10 ms": (
        {"queued.min.messages": 1_000_000, "fetch.queue.backoff.ms": 10},
        BATCH,
    ),
    "all, batch 50k": (
        {
            "fetch.min.bytes": MiB,
            "fetch.wait.max.ms": 100,
            "queued.min.messages": 1_000_000,
            "max.partition.fetch.bytes": 8 * MiB,
            "fetch.max.bytes": 64 * MiB,
            "queued.max.messages.kbytes": 256 * 1024,
        },
        50_000,
    ),
}
TUNED = "queued 1M"  # the best of CONFLUENT in docs/throughput.md's sweep


@dataclass(frozen=True)
class Row:
    name: str
    kind: str  # "aiokafka", "confluent" or "worker"
    confluent: str = "default"
    models: bool = False

    @property
    def raw(self) -> bool:
        return self.kind != "worker"


ROWS = (
    Row("raw aiokafka", "aiokafka"),
    Row("raw confluent", "confluent"),
    Row("raw confluent tuned", "confluent", TUNED),
    Row("worker, models off", "worker"),
    Row("worker, models on", "worker", models=True),
)
SWEEP = tuple(Row(f"confluent {name}", "confluent", name) for name in CONFLUENT)


@dataclass
class Run:
    row: Row
    round: int
    events: int
    wall: float
    cpu: float
    note: str = ""

    @property
    def rate(self) -> float:
        return self.events / self.wall

    @property
    def cpu_us(self) -> float:
        return self.cpu / self.events * 1e6


@dataclass
class Workload:
    scenario: Scenario
    records: list[Emitted]
    truth: GroundTruth
    counts: dict[str, int] = field(default_factory=dict)  # records per topic kind


def clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


# -- the workload ----------------------------------------------------------------------
def scenario_for(events: int, campaigns: int, seed: int) -> Scenario:
    """The seeded scenario whose estimated record count is about ``events``."""

    def make(clicks_per_second: float) -> Scenario:
        return Scenario(
            seed=seed,
            n_campaigns=campaigns,
            duration_seconds=DURATION_S,
            clicks_per_second=clicks_per_second,
            spend_interval_seconds=5.0,
            reviews_per_minute=0.0,  # reviews go to the sentiment worker, not measured here
            duplicate_share=0.01,
            bad_share=0.0,
            attribution_window_seconds=ATTRIBUTION_WINDOW_S,
        )

    probe = make(100.0)
    fixed = estimate_records(make(0.0))  # spend
    per_click = (estimate_records(probe) - fixed) / (100.0 * DURATION_S)
    return make(max(1.0, (events - fixed) / per_click / DURATION_S))


def generate(base: Settings, scenario: Scenario) -> Workload:
    currencies = CurrencyTable(base.currency_rates, base.reporting_currency)
    traffic = TrafficGenerator(scenario, currencies=currencies)
    records = list(traffic)
    counts: dict[str, int] = defaultdict(int)
    for record in records:
        counts[record.topic_kind] += 1
    return Workload(scenario, records, traffic.truth, dict(counts))


def input_topics(settings: Settings) -> dict[str, str]:
    t = settings.topics
    return {"click": t.clicks, "conversion": t.conversions, "spend": t.spend}


def checked_producer(settings: Settings, **extra: Any) -> tuple[Producer, list[str]]:
    """An idempotent producer (acks all) with the product's settings plus ``extra``, and the
    list its failed deliveries are appended to (checked after its flush)."""
    failed: list[str] = []

    def on_delivery(error: Any, message: Any) -> None:
        if error is not None:
            failed.append(f"{message.topic()}: {error}")

    config = {
        "acks": "all",
        "enable.idempotence": True,
        "delivery.report.only.error": True,
        "on_delivery": on_delivery,
        **extra,
    }
    return Producer(producer_config(settings.kafka, config)), failed


def fill(settings: Settings, records: Sequence[Emitted]) -> dict[Partition, int]:
    """Produce ``records`` in order (murmur2 by key, as the generator's sink); returns the
    end offset of every input partition."""
    names = input_topics(settings)
    producer, failed = checked_producer(settings, **{"linger.ms": 20})
    produce, poll = producer.produce, producer.poll
    for n, r in enumerate(records):
        while True:
            try:
                produce(names[r.topic_kind], r.value, r.key or None)
                break
            except BufferError:
                poll(0.1)
        if n % 5000 == 0:
            poll(0)
    left = producer.flush(60)
    if left or failed:
        raise RuntimeError(f"filling failed: {left} undelivered, errors {failed[:3]}")
    consumer = Consumer(client_config(settings.kafka, {"group.id": "bench-fill"}))
    try:
        ends = {
            (topic, p): consumer.get_watermark_offsets(TopicPartition(topic, p), 30)[1]
            for topic in names.values()
            for p in range(settings.partitions)
        }
    finally:
        consumer.close()
    if sum(ends.values()) != len(records):
        raise RuntimeError(f"{sum(ends.values())} records in the inputs, {len(records)} sent")
    return ends


def drop(settings: Settings, group: bool) -> None:
    """Delete the run's topics (and the worker's consumer group) so the broker stays small."""
    admin = AdminClient(client_config(settings.kafka))
    names = [spec.topic for spec in topic_specs(settings)]
    for future in admin.delete_topics(names, operation_timeout=30).values():
        with contextlib.suppress(KafkaException):
            future.result()
    if group:
        for future in admin.delete_consumer_groups([settings.consumer_group]).values():
            with contextlib.suppress(KafkaException):
                future.result()


# -- raw consumers ---------------------------------------------------------------------
class Tally:
    """Per-campaign sums of the raw rows: clicks and spend by campaign, conversions' revenue."""

    def __init__(self) -> None:
        self.clicks: dict[str, int] = defaultdict(int)
        self.spend: dict[str, float] = defaultdict(float)
        self.conversions = 0
        self.revenue = 0.0


async def raw_aiokafka(row: Row, settings: Settings, work: Workload, limit: float) -> Run:
    total = len(work.records)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * MiB,
        fetch_max_bytes=32 * MiB,
    )
    await consumer.start()
    tally = Tally()
    clicks, spend = tally.clicks, tally.spend
    loads = orjson.loads
    try:
        tps = [
            AioPartition(topic, p)
            for topic in input_topics(settings).values()
            for p in range(settings.partitions)
        ]
        wall0, cpu0 = clock()
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen = spends = 0
        while seen < total:
            batch = await consumer.getmany(timeout_ms=100, max_records=BATCH)
            for records in batch.values():
                for record in records:
                    event = loads(record.value)
                    campaign = event.get("campaign_id")
                    if campaign is None:
                        tally.conversions += 1
                        tally.revenue += event["revenue"]
                    elif "amount" in event:
                        spend[campaign] += event["amount"]
                        spends += 1
                    else:
                        clicks[campaign] += 1
                seen += len(records)
            if time.perf_counter() - wall0 > limit:
                raise TimeoutError(f"{row.name}: {seen:,} of {total:,} records in {limit} s")
        wall1, cpu1 = clock()
    finally:
        await consumer.stop()
    check_raw(tally, spends, seen, work)
    return Run(row, 0, total, wall1 - wall0, cpu1 - cpu0)


def raw_confluent(row: Row, settings: Settings, work: Workload, limit: float) -> Run:
    config, batch = CONFLUENT[row.confluent]
    total = len(work.records)
    consumer = Consumer(
        client_config(
            settings.kafka,
            {"group.id": f"{settings.app_id}-raw", "enable.auto.commit": False, **config},
        )
    )
    tally = Tally()
    clicks, spend = tally.clicks, tally.spend
    loads = orjson.loads
    try:
        tps = [
            TopicPartition(topic, p, OFFSET_BEGINNING)
            for topic in input_topics(settings).values()
            for p in range(settings.partitions)
        ]
        consume = consumer.consume
        wall0, cpu0 = clock()
        consumer.assign(tps)
        seen = spends = 0
        while seen < total:
            for m in consume(min(batch, total - seen), 0.1):
                error = m.error()
                if error is not None:
                    if error.code() == PARTITION_EOF:
                        continue
                    raise KafkaException(error)
                event = loads(m.value())  # type: ignore[arg-type]
                campaign = event.get("campaign_id")
                if campaign is None:
                    tally.conversions += 1
                    tally.revenue += event["revenue"]
                elif "amount" in event:
                    spend[campaign] += event["amount"]
                    spends += 1
                else:
                    clicks[campaign] += 1
                seen += 1
            if time.perf_counter() - wall0 > limit:
                raise TimeoutError(f"{row.name}: {seen:,} of {total:,} records in {limit} s")
        wall1, cpu1 = clock()
    finally:
        consumer.close()
    check_raw(tally, spends, seen, work)
    return Run(row, 0, total, wall1 - wall0, cpu1 - cpu0)


def check_raw(tally: Tally, spends: int, seen: int, work: Workload) -> None:
    got = {"click": sum(tally.clicks.values()), "conversion": tally.conversions, "spend": spends}
    want = {kind: work.counts.get(kind, 0) for kind in got}
    if got != want or seen != len(work.records):
        raise AssertionError(f"a raw consumer read {got} ({seen} in all), the inputs hold {want}")


# -- the product -----------------------------------------------------------------------
class TimedMetrics(Metrics):
    """The worker's Prometheus metrics, plus the wall and CPU clocks at every commit."""

    def __init__(self) -> None:
        super().__init__(CollectorRegistry(), 50)
        self.commits: list[tuple[float, float]] = []

    def observe_commit(self, *args: Any, **kwargs: Any) -> None:
        super().observe_commit(*args, **kwargs)
        self.commits.append(clock())


class ClockedStates(dict[tuple[str, int], PartitionState]):
    """The worker's partition states, clocked when the first one is installed.

    That is when the worker starts processing: it processes each partition as soon as its
    state is installed, while others may still restore, and sets ``ready`` only after the
    last. Clocked at ``ready`` instead, the window left out up to 115,000 of the 199,742
    inputs in some runs (restores finishing up to 0.8 s apart). The clock is read here, in
    the worker's own call, not when the benchmark's task next wakes up: the aiokafka engine
    processed about 40 % of the inputs in the event-loop turns between the two.
    """

    def __init__(self, loop_seconds: dict[str, float]) -> None:
        super().__init__()
        self.at: tuple[float, float] | None = None
        self._loop_seconds = loop_seconds
        self.loop_at: dict[str, float] = {}
        """The worker's loop time per phase at the start (joining and restoring: not timed)."""

    def __setitem__(self, key: tuple[str, int], state: PartitionState) -> None:
        if self.at is None:
            self.at = clock()
            self.loop_at = dict(self._loop_seconds)
        super().__setitem__(key, state)


class Progress:
    """Whether the worker's group has committed past every input and internal record."""

    def __init__(self, settings: Settings, input_ends: dict[Partition, int]) -> None:
        self.input_ends = input_ends
        self.deltas = [
            TopicPartition(settings.topics.campaign_deltas, p) for p in range(settings.partitions)
        ]
        self.partitions = [TopicPartition(t, p) for t, p in input_ends] + self.deltas
        # read_committed: librdkafka asks for stable offsets (waits out pending ones)
        self.consumer = Consumer(
            client_config(
                settings.kafka,
                {
                    "group.id": settings.consumer_group,
                    "enable.auto.commit": False,
                    "isolation.level": "read_committed",
                },
            )
        )
        self.inputs_done = False
        """The committed offsets have reached the end of every input (deltas maybe not)."""

    def done(self) -> bool:
        committed = {
            (tp.topic, tp.partition): tp.offset
            for tp in self.consumer.committed(self.partitions, timeout=30)
        }
        if any(committed[tp] < end for tp, end in self.input_ends.items() if end > 0):
            return False
        self.inputs_done = True
        for tp in self.deltas:  # high watermarks after the offsets: they only grow
            high = self.consumer.get_watermark_offsets(tp, timeout=30, cached=False)[1]
            if high > 0 and committed[(tp.topic, tp.partition)] < high - 1:
                return False
        return True

    def close(self) -> None:
        self.consumer.close()


async def worker_run(
    row: Row, settings: Settings, work: Workload, ends: dict[Partition, int], limit: float
) -> Run:
    """One run of the product, with the garbage-collector settings ``stream-app worker`` has
    (``runner.configure_gc``); the raw rows keep Python's defaults."""
    previous = configure_gc()
    try:
        return await _worker_run(row, settings, work, ends, limit)
    finally:
        gc.set_threshold(*previous)


async def _worker_run(
    row: Row, settings: Settings, work: Workload, ends: dict[Partition, int], limit: float
) -> Run:
    metrics = TimedMetrics()
    worker = build_worker(settings, metrics)
    worker.states = started = ClockedStates(worker.loop_seconds)
    task = asyncio.create_task(worker.run())
    ready = asyncio.create_task(worker.ready.wait())
    await asyncio.wait({task, ready}, timeout=120, return_when=asyncio.FIRST_COMPLETED)
    ready.cancel()
    if task.done():
        task.result()
        raise RuntimeError("the worker stopped before it was ready")
    if not worker.ready.is_set():
        worker.stop()
        raise TimeoutError("the worker was not ready after 120 s")
    assert started.at is not None
    wall0, cpu0 = started.at
    early = worker.processed_records  # in the window, by the time this task woke at ``ready``
    progress = Progress(settings, ends)
    try:
        seen = 0
        inputs_at = math.nan  # about when the commit that completed the inputs was made
        while True:
            if task.done():
                task.result()
                raise RuntimeError("the worker stopped before it had processed everything")
            n = worker.committed_transactions
            if n != seen:
                seen = n
                finished = await asyncio.to_thread(progress.done)
                if progress.inputs_done and math.isnan(inputs_at):
                    inputs_at = metrics.commits[-1][0]
                if finished:
                    loop = {  # the loop's phases from the first installed state to the last commit
                        phase: seconds - started.loop_at.get(phase, 0.0)
                        for phase, seconds in worker.loop_seconds.items()
                    }
                    break
            if time.perf_counter() - wall0 > limit:
                raise TimeoutError(f"{row.name}: not done after {limit} s")
            await asyncio.sleep(0.02)
        done_at = len(metrics.commits)
        wall1, cpu1 = metrics.commits[-1]
        await asyncio.sleep(4 * settings.commit_interval_seconds)  # nothing more to commit?
        later = len(metrics.commits) - done_at
    finally:
        await asyncio.to_thread(progress.close)
        worker.stop()
        await task
    inputs = len(work.records)
    note = (
        f"{early:,} processed by ready, {done_at} commits,"
        f" inputs committed at {inputs_at - wall0:.2f} s,"
        f" {worker.processed_records - inputs:,} deltas read"
    )
    note += "; loop s: " + ", ".join(f"{phase} {s:.2f}" for phase, s in loop.items())
    if later:
        note += f"; {later} more commits after it (not timed)"
    return Run(row, 0, inputs, wall1 - wall0, cpu1 - cpu0, note)


async def check_truth(settings: Settings, truth: GroundTruth, limit: float = 30.0) -> None:
    """``campaign-roi-latest`` equals the ground truth (retried while commit markers land)."""
    deadline = time.monotonic() + limit
    while True:
        latest = await latest_by_campaign(settings.kafka, settings.topics.campaign_roi_latest)
        problems = []
        for cid in sorted(set(truth.campaigns) | set(latest)):
            want = truth.campaigns.get(cid)
            row = latest.get(cid)
            if want is None or row is None:
                if want is None or want.clicks or want.conversions or want.spend:
                    problems.append(f"{cid}: truth {want}, output {row}")
                continue
            got = row.cumulative
            pairs = {
                "clicks": (got.clicks, want.clicks),
                "conversions": (got.conversions, want.conversions),
                "impressions": (got.impressions, want.impressions),
                "spend": (got.spend, want.spend),
                "revenue": (got.revenue, want.revenue),
            }
            problems.extend(
                f"{cid} {name}: output {a}, truth {b}"
                for name, (a, b) in pairs.items()
                if not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-4)
            )
        if not problems:
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                "campaign-roi-latest differs from the ground truth:\n  " + "\n  ".join(problems)
            )
        await asyncio.sleep(0.5)


# -- running ---------------------------------------------------------------------------
def run_settings(base: Settings, row: Row) -> Settings:
    tag = uuid.uuid4().hex[:8]
    return base.model_copy(
        update={
            "app_id": f"bench-{tag}",
            "topics": Topics(prefix=f"bench-{tag}-"),
            "models_enabled": row.models,
        }
    )


async def measure(row: Row, base: Settings, work: Workload, limit: float) -> Run:
    settings = run_settings(base, row)
    try:
        await create_topics(settings)
        ends = await asyncio.to_thread(fill, settings, work.records)
        # The generated records (and earlier runs' leftovers) must not make this run's full
        # collections slower: a worker process does not hold them. Frozen objects are
        # skipped by the collector (without this, gen-2 collections took 30 % of the CPU).
        gc.collect()
        gc.freeze()
        if row.kind == "aiokafka":
            run = await raw_aiokafka(row, settings, work, limit)
        elif row.kind == "confluent":
            run = await asyncio.to_thread(raw_confluent, row, settings, work, limit)
        else:
            run = await worker_run(row, settings, work, ends, limit)
            await check_truth(settings, work.truth)
            run.note += "; outputs = ground truth"
        return run
    finally:
        gc.unfreeze()
        await asyncio.to_thread(drop, settings, not row.raw)


def median_ratio(runs: list[Run], name: str, reference: Callable[[list[Run]], float]) -> float:
    """Median over rounds of this row's events/s over ``reference`` of the same round."""
    ratios = []
    for r in sorted({run.round for run in runs}):
        same = [run for run in runs if run.round == r]
        mine = [run.rate for run in same if run.row.name == name]
        ref = reference(same)
        if mine and ref:
            ratios.append(mine[0] / ref)
    return statistics.median(ratios) if ratios else math.nan


def ratio(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.2f}"


def report(runs: list[Run], rows: Sequence[Row]) -> None:
    def best_raw(same: list[Run]) -> float:
        return max((run.rate for run in same if run.row.raw), default=0.0)

    def confluent(same: list[Run]) -> float:
        default = (r.rate for r in same if r.row == ROWS[1] or r.row == SWEEP[0])
        return next(default, 0.0)

    print()
    print(
        "| row | events/s, median (min–max) | CPU-µs/event | wall s "
        "| vs best raw | vs raw confluent |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        mine = [run for run in runs if run.row == row]
        if not mine:
            continue
        rates = [run.rate for run in mine]
        vs_best = median_ratio(runs, row.name, best_raw)
        vs_confluent = median_ratio(runs, row.name, confluent)
        print(
            f"| {row.name} | {statistics.median(rates):,.0f} ({min(rates):,.0f}–{max(rates):,.0f})"
            f" | {statistics.median(run.cpu_us for run in mine):.1f}"
            f" | {statistics.median(run.wall for run in mine):.2f}"
            f" | {ratio(vs_best)} | {ratio(vs_confluent)} |"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--events", type=int, default=200_000, help="input records, about")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every row")
    parser.add_argument("--campaigns", type=int, default=20)
    parser.add_argument("--seed", type=int, default=236, help="scenario seed")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument(
        "--sweep", action="store_true", help="measure the raw confluent fetch settings instead"
    )
    parser.add_argument(
        "--row", action="append", dest="rows", help="only this row (repeatable; default: all)"
    )
    parser.add_argument("--limit", type=float, default=300.0, help="seconds one run may take")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    state_dir = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    base = Settings(
        partitions=args.partitions,
        metrics_port=0,
        attribution_window_seconds=ATTRIBUTION_WINDOW_S,
        state_dir=state_dir,
    )
    rows: Sequence[Row] = SWEEP if args.sweep else ROWS
    if args.rows:
        wanted = [name.strip() for name in args.rows]
        unknown = set(wanted) - {row.name for row in rows}
        if unknown:
            parser.error(f"unknown rows {sorted(unknown)}; rows: {[r.name for r in rows]}")
        rows = [row for row in rows if row.name in wanted]

    scenario = scenario_for(args.events, args.campaigns, args.seed)
    t0 = time.perf_counter()
    work = generate(base, scenario)
    print(
        f"generated {len(work.records):,} records in {time.perf_counter() - t0:.1f} s: "
        + ", ".join(f"{n:,} {kind}s" for kind, n in sorted(work.counts.items()))
        + f" ({sum(work.truth.duplicates.values()):,} duplicates), {args.campaigns} campaigns,"
        f" {scenario.clicks_per_second:.0f} clicks/s over {DURATION_S:.0f} s of event time;"
        f" {args.partitions} partitions per topic, broker {base.bootstrap_servers}"
    )
    runs: list[Run] = []
    try:
        for r in range(args.rounds):
            order = [rows[(i + r) % len(rows)] for i in range(len(rows))]
            for row in order:
                run = await measure(row, base, work, args.limit)
                run.round = r
                runs.append(run)
                print(
                    f"round {r + 1} {row.name:22s} {run.rate:>9,.0f} events/s "
                    f"{run.cpu_us:6.1f} CPU-µs/event  {run.wall:6.2f} s  {run.note}",
                    flush=True,
                )
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
    report(runs, rows)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(130)
