"""Event → ``campaign-roi`` latency of a ``stream-app worker`` under live traffic, exactly.

    stream-app kafka start
    python benchmarks/latency.py                 # sustainable rate, then half of it and 5,000
                                                 # clicks/s, commit intervals 0.5 and 0.25 s
    python benchmarks/latency.py --quick         # smoke test: one short run
    python benchmarks/latency.py --sustainable-clicks 14000 --intervals 0.5,0.25,0.1 --rounds 3

**What runs.** The product as ``stream-app worker`` runs it: a subprocess
(``python -m stream_app worker``) configured by ``STREAM_APP_*`` variables only, models on
(the default), with its Prometheus ``/metrics``. A subprocess rather than
``runner.build_worker`` in this process, because here the benchmark itself produces live
traffic and reads the outputs: in one process the three would share one GIL and the
worker's latency would include the benchmark's Python. Fresh app id, topic prefix and
topics (4 partitions) per run.

**Traffic, in real time.** The generator's seeded traffic (``stream_app.generator``, 20
campaigns, its conversions, spend every 5 s per campaign, 1 % duplicates) at a fixed
click rate, generated before the run and sent at the wall-clock instants of its event
clock (``Emitted.emit_at``), one ``produce()`` each, with librdkafka's defaults of the
product's producers (``linger.ms`` 5); what is due after the run's span (conversions
trailing their clicks by up to the 300 s attribution window, late duplicates) is not
sent, so conversions are fewer than in a long run (about 1 % of the records, not 3 %).
No late events (``late_share`` 0): a click later
than its window's lateness would be dropped and break the exact matching below (their
path is the same).

**What is measured, exactly.** Clicks and their conversions are produced to the partition
of their *campaign* (campaign index mod partitions; spend keeps murmur2 by key, as the
aggregation stage expects), so all clicks of a campaign pass through one attribution
partition in the order they were sent, and the worker counts them in that order. So a
``campaign-roi`` record of campaign c and window w with ``metrics.clicks`` = N reflects
exactly the first N distinct clicks of (c, w) that were sent (second sends of a click id
are not counted, as the worker de-duplicates them). A read_committed consumer (as
downstream readers read; ``fetch.wait.max.ms`` 5) reads ``campaign-roi`` and
``campaign-deltas`` from the start and stamps each record with ``time.time()`` when it is
handed over; the producer stamps each click with ``time.time()`` at its ``produce()``
call; same machine, same clock. Then (``match_outputs``, ``event_latencies``):

* *per output*: every record whose click count went up (re-emits for spend, conversions,
  closing or idleness are not samples) gives visible − sent(N-th click), the age of the
  newest click it reflects;
* *per click*: each click's latency is the first visible record with count ≥ its rank,
  minus its send time: how long until a reader sees it (the issue's "event → output");
* *where it goes*: the same per-click matching against the attribution stage's
  ``campaign-deltas`` (cumulative click counts per (c, w), one source per campaign) gives
  hop 1, click → its delta visible (attribution's batch and transaction); hop 2 is the rest
  (aggregation fetching the delta, its next flush and transaction). Per output,
  ``emitted_at`` (the worker's clock at its flush) splits visible − sent into waiting for
  the flush and producing + committing + being read. The worker's own
  ``stream_app_commit_duration_seconds`` (flush, produce, commit of one transaction) and
  transactions per second come from its ``/metrics``; its CPU and the local broker's (its
pid file) from ``/proc``.

Clicks sent in the first ``--warmup`` seconds are not samples. After the last send the run
waits until every (c, w) has shown all its clicks; a click never reflected fails the run.
The sustainable rate is measured first (unless given): the same worker catching up on
pre-filled traffic (``throughput.py``'s workload, filled while the worker is stopped, as
``scaleout.py`` does), in clicks/s, at every commit interval (what a shorter interval costs
in throughput); "half" is half of the median at the first interval. Rows (click rate ×
commit interval) run round robin; the summary gives medians over rounds of each run's
percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import msgspec
import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
from scaleout import Completion, WorkerProcess, broker_cpu, metric_value, start_group
from throughput import (
    ATTRIBUTION_WINDOW_S,
    checked_producer,
    drop,
    fill,
    generate,
    input_topics,
    scenario_for,
)

from stream_app.domain.money import CurrencyTable
from stream_app.domain.records import CampaignDelta, WindowRoi
from stream_app.domain.roi import Totals
from stream_app.engine.clients import PARTITION_EOF, client_config
from stream_app.generator.profiles import Scenario
from stream_app.generator.traffic import Emitted, TrafficGenerator
from stream_app.settings import Settings, Topics
from stream_app.topics import create_topics

Key = tuple[str, float]  # (campaign_id, window_start)
ISSUE_CLICKS_PER_S = 5000.0


# -- pure helpers (tests/unit/benchmarks/test_latency.py) ------------------------------------
class Seen(NamedTuple):
    """A record a read_committed reader was handed: its (campaign, window), cumulative click
    count, when it was handed over, and the worker's ``emitted_at`` (nan for deltas)."""

    key: Key
    clicks: int
    visible: float
    emitted: float = math.nan


class Sample(NamedTuple):
    key: Key
    clicks: int
    latency: float  # visible − sent(N-th click)
    to_flush: float  # emitted_at − sent(N-th click)


def window_start(ts: float, size: float) -> float:
    """Start of the tumbling window of ``size`` seconds that holds ``ts`` (as the worker's).

    >>> window_start(125.5, 60), window_start(120.0, 60)
    (120.0, 120.0)
    """
    return ts - ts % size


def match_outputs(sent: Mapping[Key, Sequence[float]], seen: Iterable[Seen]) -> list[Sample]:
    """One sample per record that reflects new clicks of its (campaign, window).

    ``sent`` holds, per (campaign, window), the send times of its distinct clicks in the
    order they were sent (which is the order the worker counts them); ``seen`` the records
    in the order they became visible. A record whose count is not above the highest seen
    for its key re-emits what was already visible and is skipped. A count above the clicks
    sent cannot be matched: the premise (one ordered stream per campaign) is broken.

    >>> sent = {("c", 0.0): [10.0, 10.5, 11.0]}
    >>> seen = [Seen(("c", 0.0), 2, 11.2, 11.1), Seen(("c", 0.0), 2, 11.8, 11.6),
    ...         Seen(("c", 0.0), 3, 12.0, 11.9)]
    >>> [(s.clicks, round(s.latency, 3), round(s.to_flush, 3)) for s in match_outputs(sent, seen)]
    [(2, 0.7, 0.6), (3, 1.0, 0.9)]
    """
    highest: dict[Key, int] = {}
    samples = []
    for s in seen:
        if s.clicks <= highest.get(s.key, 0):
            continue
        times = sent.get(s.key, ())
        if s.clicks > len(times):
            raise ValueError(f"{s.key}: a record counts {s.clicks} clicks, {len(times)} were sent")
        highest[s.key] = s.clicks
        t = times[s.clicks - 1]
        samples.append(Sample(s.key, s.clicks, s.visible - t, s.emitted - t))
    return samples


def first_visible(
    sent: Mapping[Key, Sequence[float]], seen: Iterable[Seen]
) -> dict[Key, list[float]]:
    """Per (campaign, window), when each of its clicks (by rank) first became visible: at
    the first record whose count reaches its rank; nan if none did.

    >>> sent = {("c", 0.0): [1.0, 2.0, 3.0]}
    >>> first_visible(sent, [Seen(("c", 0.0), 2, 2.5), Seen(("c", 0.0), 1, 2.6)])
    {('c', 0.0): [2.5, 2.5, nan]}
    """
    out = {key: [math.nan] * len(times) for key, times in sent.items()}
    shown: dict[Key, int] = {}
    for s in seen:
        done = shown.get(s.key, 0)
        if s.clicks <= done:
            continue
        firsts = out.get(s.key)
        if firsts is None or s.clicks > len(firsts):
            have = 0 if firsts is None else len(firsts)
            raise ValueError(f"{s.key}: a record counts {s.clicks} clicks, {have} were sent")
        for rank in range(done, s.clicks):
            firsts[rank] = s.visible
        shown[s.key] = s.clicks
    return out


def event_latencies(
    sent: Mapping[Key, Sequence[float]], visible: Mapping[Key, Sequence[float]], since: float
) -> tuple[list[float], int]:
    """Each click's time from its send to its first visibility, for clicks sent at or after
    ``since``; and how many of those were never visible.

    >>> event_latencies({("c", 0.0): [1.0, 2.0, 3.0]}, {("c", 0.0): [2.5, 2.5, math.nan]}, 1.5)
    ([0.5], 1)
    """
    latencies: list[float] = []
    missing = 0
    for key, times in sent.items():
        for t, v in zip(times, visible[key], strict=True):
            if t < since:
                continue
            if math.isnan(v):
                missing += 1
            else:
                latencies.append(v - t)
    return latencies, missing


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0–100) of ``values``; nan if empty.

    >>> percentile([4.0, 1.0, 3.0, 2.0], 50), percentile([4.0, 1.0, 3.0, 2.0], 99)
    (2.0, 4.0)
    """
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def campaign_partitions(campaign_ids: Iterable[str], partitions: int) -> dict[str, int]:
    """Each campaign's input partition: its index in sorted order, modulo ``partitions``.

    >>> campaign_partitions(["cmp-002", "cmp-001", "cmp-003"], 2)
    {'cmp-001': 0, 'cmp-002': 1, 'cmp-003': 0}
    """
    return {c: i % partitions for i, c in enumerate(sorted(set(campaign_ids)))}


# -- the live traffic ---------------------------------------------------------------------
class Send(NamedTuple):
    at: float  # seconds after the start of sending
    topic_kind: str
    key: bytes
    value: bytes
    timestamp_ms: int | None
    partition: int  # -1: murmur2 by key
    click: Key | None  # a distinct click: its (campaign, window)


@dataclass
class Plan:
    sends: list[Send]
    clicks: int
    counts: dict[str, int]


def live_scenario(clicks_per_second: float, duration: float, seed: int) -> Scenario:
    return Scenario(
        seed=seed,
        n_campaigns=20,
        start_ts=time.time(),
        duration_seconds=duration,
        clicks_per_second=clicks_per_second,
        spend_interval_seconds=5.0,
        reviews_per_minute=0.0,
        duplicate_share=0.01,
        late_share=0.0,
        bad_share=0.0,
        attribution_window_seconds=ATTRIBUTION_WINDOW_S,
    )


def plan(records: Sequence[Emitted], scenario: Scenario, partitions: int, window: float) -> Plan:
    """The sends of ``records``: clicks and their conversions to their campaign's partition.

    Only what is due within the scenario's span is sent: its conversions and duplicates
    trail its clicks by up to the attribution window (and 30 s), which a run of seconds
    does not wait for.
    """
    decoded = [
        orjson.loads(r.value) if r.topic_kind in ("click", "conversion") else None for r in records
    ]
    campaign_of: dict[str, str] = {}
    for r, event in zip(records, decoded, strict=True):
        if r.topic_kind == "click" and event is not None:
            campaign_of[event["click_id"]] = event["campaign_id"]
    partition_of = campaign_partitions(campaign_of.values(), partitions)
    sends = []
    counts: dict[str, int] = defaultdict(int)
    clicks = 0
    first: set[str] = set()  # click ids sent: the worker counts a click's first arrival
    for r, event in zip(records, decoded, strict=True):
        at = r.emit_at - scenario.start_ts
        if at > scenario.duration_seconds:
            continue
        counts[r.topic_kind] += 1
        partition, click = -1, None
        if event is not None:
            campaign = campaign_of.get(event["click_id"])
            if campaign is not None:  # else an orphan conversion: murmur2 by key
                partition = partition_of[campaign]
            if r.topic_kind == "click" and event["click_id"] not in first:
                first.add(event["click_id"])
                click = (campaign or "", window_start(r.ts, window))
                clicks += 1
        sends.append(Send(at, r.topic_kind, r.key, r.value, r.timestamp_ms, partition, click))
    return Plan(sends, clicks, dict(counts))


def send_live(
    settings: Settings, sends: Sequence[Send], sent: dict[Key, list[float]], stop: threading.Event
) -> tuple[float, float]:
    """Send on schedule; appends each distinct click's send time to ``sent``. Returns the
    wall-clock start and the largest delay behind schedule."""
    names = input_topics(settings)
    producer, failed = checked_producer(settings)
    produce, now, perf = producer.produce, time.time, time.perf_counter
    behind = 0.0
    start_wall, start = now(), perf()
    for n, s in enumerate(sends):
        due = start + s.at
        ahead = due - perf()
        if ahead > 0.001:
            producer.poll(0)
            time.sleep(ahead)
            if stop.is_set():
                break
        else:
            behind = max(behind, -ahead)
        t = now()
        if s.partition >= 0:
            produce(
                names[s.topic_kind],
                s.value,
                s.key,
                partition=s.partition,
                timestamp=s.timestamp_ms or 0,
            )
        else:
            produce(names[s.topic_kind], s.value, s.key, timestamp=s.timestamp_ms or 0)
        if s.click is not None:
            sent[s.click].append(t)
        if n % 1000 == 0:
            producer.poll(0)
    if producer.flush(30) or failed:
        raise RuntimeError(f"sending failed: {failed[:3]}")
    return start_wall, behind


# -- the reader ----------------------------------------------------------------------------
@dataclass
class Reader:
    """read_committed ``campaign-roi`` and ``campaign-deltas``, each record stamped when
    handed over."""

    settings: Settings
    outputs: list[Seen] = field(default_factory=list)
    deltas: list[Seen] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        t = self.settings.topics
        consumer = Consumer(
            client_config(
                self.settings.kafka,
                {
                    "group.id": f"{self.settings.app_id}-latency-reader",
                    "enable.auto.commit": False,
                    "isolation.level": "read_committed",
                    "fetch.wait.max.ms": 5,
                    "enable.partition.eof": False,
                },
            )
        )
        roi = msgspec.json.Decoder(WindowRoi).decode
        delta = msgspec.json.Decoder(CampaignDelta).decode
        cumulative: dict[Key, int] = defaultdict(int)
        consumer.assign(
            [
                TopicPartition(topic, p, OFFSET_BEGINNING)
                for topic in (t.campaign_roi, t.campaign_deltas)
                for p in range(self.settings.partitions)
            ]
        )
        try:
            while not self.stop.is_set():
                messages = consumer.consume(1000, 0.05)
                at = time.time()
                for m in messages:
                    error = m.error()
                    if error is not None:
                        if error.code() == PARTITION_EOF or error.retriable():
                            continue
                        raise KafkaException(error)
                    value = m.value()
                    if value is None:
                        continue
                    if m.topic() == t.campaign_roi:
                        w = roi(value)
                        key = (w.campaign_id, w.window_start)
                        self.outputs.append(Seen(key, w.metrics.clicks, at, w.emitted_at))
                    else:
                        d = delta(value)
                        if d.kind == "progress":
                            continue
                        key = (d.campaign_id, d.window_start)
                        cumulative[key] += Totals.from_list(d.totals).clicks
                        self.deltas.append(Seen(key, cumulative[key], at))
        finally:
            consumer.close()


# -- runs ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    clicks_per_second: float
    interval: float
    label: str

    @property
    def name(self) -> str:
        return f"{self.clicks_per_second:,.0f} clicks/s ({self.label}), commit {self.interval:g} s"


@dataclass
class Run:
    row: Row
    round: int
    per_click: list[float]
    per_output: list[Sample]
    hop1: list[float]
    hop2: list[float]
    commit_s: float  # mean duration of the worker's transactions
    commits_per_s: float
    cpu_busy: float
    broker_busy: float  # the local broker's CPU over the run (nan if not local)
    behind: float
    clicks: int
    events_per_s: float

    def stats(self, values: Sequence[float]) -> tuple[float, float, float, float]:
        return tuple(percentile(values, q) for q in (50, 90, 99, 100))  # type: ignore[return-value]


def run_settings(base: Settings, interval: float, models: bool) -> Settings:
    tag = uuid.uuid4().hex[:8]
    return base.model_copy(
        update={
            "app_id": f"lat-{tag}",
            "topics": Topics(prefix=f"lat-{tag}-"),
            "commit_interval_seconds": interval,
            "models_enabled": models,
        }
    )


async def measure(row: Row, base: Settings, args: argparse.Namespace, logs: Path) -> Run:
    settings = run_settings(base, row.interval, args.models == "on")
    duration = args.warmup + args.seconds
    scenario = live_scenario(row.clicks_per_second, duration, args.seed)
    currencies = CurrencyTable(base.currency_rates, base.reporting_currency)
    records = list(TrafficGenerator(scenario, currencies=currencies))
    the_plan = plan(records, scenario, settings.partitions, settings.window_size_seconds)
    proc = WorkerProcess(settings, "w1", logs)
    reader = Reader(settings)
    sent: dict[Key, list[float]] = defaultdict(list)
    stop = threading.Event()
    try:
        await create_topics(settings)
        await asyncio.to_thread(start_group, [proc], settings)
        reading = threading.Thread(target=reader.run, daemon=True)
        reading.start()
        cpu0, broker0 = proc.cpu_seconds(), broker_cpu(settings)
        metrics0 = proc.metrics()
        t0 = time.perf_counter()
        start_wall, behind = await asyncio.to_thread(
            send_live, settings, the_plan.sends, sent, stop
        )
        sending = time.perf_counter() - t0
        # until every (campaign, window) shows all its clicks
        deadline = time.monotonic() + args.drain
        total = {key: len(times) for key, times in sent.items()}
        while time.monotonic() < deadline:
            shown: dict[Key, int] = {}
            for s in list(reader.outputs):
                shown[s.key] = max(shown.get(s.key, 0), s.clicks)
            if all(shown.get(k, 0) >= n for k, n in total.items()):
                break
            proc.check_alive()
            await asyncio.sleep(0.2)
        wall = time.perf_counter() - t0
        cpu, broker = proc.cpu_seconds() - cpu0, broker_cpu(settings) - broker0
        metrics1 = proc.metrics()
    finally:
        reader.stop.set()
        stop.set()
        await asyncio.to_thread(proc.stop)
        await asyncio.to_thread(drop, settings, True)
    since = start_wall + args.warmup
    visible = first_visible(sent, reader.outputs)
    per_click, missing = event_latencies(sent, visible, since)
    if missing:
        raise AssertionError(f"{row.name}: {missing} clicks never visible in campaign-roi")
    at_delta = first_visible(sent, reader.deltas)
    hop1, _ = event_latencies(sent, at_delta, since)
    hop2 = [
        v - d
        for key in sent
        for t, d, v in zip(sent[key], at_delta[key], visible[key], strict=True)
        if t >= since and not math.isnan(d)
    ]
    times = {key: list(ts) for key, ts in sent.items()}
    outputs = [
        s for s in match_outputs(times, reader.outputs) if times[s.key][s.clicks - 1] >= since
    ]

    def delta(name: str, labels: str = 'worker="roi"') -> float:
        return metric_value(metrics1, name, labels) - metric_value(metrics0, name, labels)

    commits = delta("stream_app_transactions_total")
    commit_s = delta("stream_app_commit_duration_seconds_sum") / max(
        1.0, delta("stream_app_commit_duration_seconds_count")
    )
    return Run(
        row,
        0,
        per_click,
        outputs,
        hop1,
        hop2,
        commit_s,
        commits / wall,
        cpu / wall,
        broker / wall,
        behind,
        len(per_click),
        len(the_plan.sends) / sending,
    )


async def sustainable(
    base: Settings, args: argparse.Namespace, logs: Path, interval: float
) -> float:
    """Clicks/s the worker sustains catching up on pre-filled traffic (models as set)."""
    work = generate(base, scenario_for(args.sustainable_events, 20, args.seed))
    settings = run_settings(base, interval, args.models == "on")
    proc = WorkerProcess(settings, "w1", logs)
    try:
        await create_topics(settings)
        await asyncio.to_thread(start_group, [proc], settings)
        proc.pause()
        try:
            ends = await asyncio.to_thread(fill, settings, work.records)
            progress = Completion(settings, ends)
            t0 = time.perf_counter()
        finally:
            proc.resume()
        while not await asyncio.to_thread(progress.done):
            proc.check_alive()
            await asyncio.sleep(0.05)
        wall = time.perf_counter() - t0
        progress.close()
    finally:
        await asyncio.to_thread(proc.stop)
        await asyncio.to_thread(drop, settings, True)
    rate = len(work.records) / wall
    clicks = work.counts["click"] / wall
    print(
        f"sustainable: {len(work.records):,} records in {wall:.2f} s = {rate:,.0f} events/s"
        f" = {clicks:,.0f} clicks/s (catching up, models {args.models}, commit {interval:g} s)",
        flush=True,
    )
    return clicks


def ms(x: float) -> str:
    return "–" if math.isnan(x) else f"{x * 1000:,.0f}"


def describe_run(run: Run) -> str:
    p50, p90, p99, top = run.stats(run.per_click)
    o50, _, o99, _ = run.stats([s.latency for s in run.per_output])
    h1 = statistics.median(run.hop1) if run.hop1 else math.nan
    h2 = statistics.median(run.hop2) if run.hop2 else math.nan
    flush = statistics.median(s.to_flush for s in run.per_output) if run.per_output else math.nan
    return (
        f"per click p50/p90/p99/max {ms(p50)}/{ms(p90)}/{ms(p99)}/{ms(top)} ms"
        f" ({run.clicks:,} clicks);"
        f" per output p50/p99 {ms(o50)}/{ms(o99)} ms ({len(run.per_output):,});"
        f" hop 1 p50 {ms(h1)}, hop 2 p50 {ms(h2)}, sent→flush p50 {ms(flush)} ms;"
        f" commit {ms(run.commit_s)} ms, {run.commits_per_s:.1f}/s; worker CPU {run.cpu_busy:.0%},"
        f" broker {run.broker_busy:.0%};"
        f" {run.events_per_s:,.0f} events/s sent, ≤{ms(run.behind)} ms behind; load {load()}"
    )


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def report(runs: list[Run], rows: Sequence[Row]) -> None:
    print()
    print(
        "| row | rounds | clicks/round | per click p50 / p90 / p99 / max ms "
        "| per output p50 / p99 ms "
        "| hop 1 p50 / p99 ms | hop 2 p50 / p99 ms | commit ms | commits/s | worker CPU "
        "| broker CPU |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")

    def med(values: Iterable[float]) -> float:
        return statistics.median(list(values))

    for row in rows:
        mine = [r for r in runs if r.row == row]
        if not mine:
            continue
        click = [r.stats(r.per_click) for r in mine]
        out = [r.stats([s.latency for s in r.per_output]) for r in mine]
        h1 = [r.stats(r.hop1) for r in mine]
        h2 = [r.stats(r.hop2) for r in mine]
        print(
            f"| {row.name} | {len(mine)} | {med(r.clicks for r in mine):,.0f}"
            f" | {' / '.join(ms(med(c[i] for c in click)) for i in range(4))}"
            f" | {ms(med(o[0] for o in out))} / {ms(med(o[2] for o in out))}"
            f" | {ms(med(h[0] for h in h1))} / {ms(med(h[2] for h in h1))}"
            f" | {ms(med(h[0] for h in h2))} / {ms(med(h[2] for h in h2))}"
            f" | {ms(med(r.commit_s for r in mine))} | {med(r.commits_per_s for r in mine):.1f}"
            f" | {med(r.cpu_busy for r in mine):.0%} | {med(r.broker_busy for r in mine):.0%} |"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--sustainable-clicks", type=float, help="skip measuring it: clicks/s")
    parser.add_argument(
        "--sustainable-events", type=int, default=150_000, help="records to catch up on"
    )
    parser.add_argument(
        "--rates", default="half,5000", help="clicks/s: numbers or 'half' (default half,5000)"
    )
    parser.add_argument(
        "--intervals",
        default="0.2,0.5",
        help="commit intervals, s (default 0.2,0.5: the product's default and the old one)",
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--sustainable-rounds", type=int, default=1, help="catch-up runs at the first interval"
    )
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="measured seconds of traffic per run"
    )
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of traffic before that")
    parser.add_argument(
        "--drain", type=float, default=20.0, help="longest wait for the last outputs"
    )
    parser.add_argument("--models", choices=("on", "off"), default="on")
    parser.add_argument("--seed", type=int, default=236)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: one 5 s run at 2,000 clicks/s"
    )
    args = parser.parse_args()
    if args.quick:
        args.rates, args.intervals, args.rounds, args.seconds, args.warmup = (
            "2000",
            "0.2",
            1,
            5.0,
            1.0,
        )

    tmp = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    base = Settings(
        partitions=args.partitions,
        metrics_port=0,
        attribution_window_seconds=ATTRIBUTION_WINDOW_S,
        state_dir=tmp / "state",
    )
    print(
        f"broker {base.bootstrap_servers}; {os.cpu_count()} cores, load {load()};"
        f" worker logs in {tmp}",
        flush=True,
    )
    intervals = [float(i) for i in args.intervals.split(",")]
    rates: list[tuple[float, str]] = []
    for item in args.rates.split(","):
        if item.strip() == "half":
            full = args.sustainable_clicks
            if not full:  # at each interval (more transactions cost throughput); half of the first
                full = statistics.median(
                    [
                        await sustainable(base, args, tmp, intervals[0])
                        for _ in range(args.sustainable_rounds)
                    ]
                )
                for other in intervals[1:]:
                    await sustainable(base, args, tmp, other)
            rates.append((round(full / 2, -2), f"half of {full:,.0f}"))
        else:
            value = float(item)
            rates.append((value, "the issue's" if value == ISSUE_CLICKS_PER_S else "fixed"))
    rows = [Row(rate, i, label) for rate, label in rates for i in intervals]
    runs: list[Run] = []
    failed = True
    try:
        for r in range(args.rounds):
            for i in range(len(rows)):
                row = rows[(i + r) % len(rows)]
                run = await measure(row, base, args, tmp)
                run.round = r
                runs.append(run)
                print(f"round {r + 1} {row.name}: {describe_run(run)}", flush=True)
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
