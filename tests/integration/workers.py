"""Worker processes, Kafka access and exactly-once checks for the fencing tests.

Only the product's external behaviour is used, so the checks hold whatever client the
engine is built on: ``python -m stream_app worker`` processes configured with
``STREAM_APP_*`` variables, the topics and their records, the consumer group as the broker
describes it, and the generator's ground truth. Kafka is reached with confluent-kafka
(admin client, a producer with Kafka's murmur2 partitioner, a ``read_committed`` reader).

The checks return a list of problems, each with its numbers, instead of stopping at the
first mismatch (as ``test_recovery.assert_exactly_once`` does), so that one run shows every
way the engine failed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import orjson
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    ResourceType,
)

from stream_app.domain.records import CampaignLatest
from stream_app.generator import GroundTruth
from stream_app.settings import Settings

from .test_recovery import worker_env

SESSION_TIMEOUT_SECONDS = 6.0
"""``STREAM_APP_SESSION_TIMEOUT_SECONDS`` given to every worker (the broker's minimum)."""

Partition = tuple[str, int]
SourceOffset = tuple[str, int, int]
"""topic, partition, offset of an input record."""


# -- worker processes -----------------------------------------------------------------------
@dataclass(frozen=True)
class Exit:
    """A worker process that ended without the test killing it."""

    worker_id: str
    returncode: int
    at: float
    """Seconds since the fleet was created."""
    log_tail: str


class Fleet:
    """The worker processes of one test; any left running are killed at the end."""

    def __init__(self, settings: Settings, directory: Path, **env: str) -> None:
        self.settings = settings
        self.directory = directory
        self.extra_env = env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.started: Counter[str] = Counter()
        self._t0 = time.monotonic()

    def env(self, worker_id: str) -> dict[str, str]:
        return {
            **worker_env(self.settings, worker_id),
            "STREAM_APP_SESSION_TIMEOUT_SECONDS": str(SESSION_TIMEOUT_SECONDS),
            "STREAM_APP_STATE_DIR": str(self.directory / f"state-{worker_id}"),
            **self.extra_env,
        }

    def start(self, worker_id: str) -> subprocess.Popen[bytes]:
        self.started[worker_id] += 1
        log = self.log_path(worker_id).open("ab")
        log.write(f"==== start #{self.started[worker_id]} ====\n".encode())
        log.flush()
        proc = subprocess.Popen(
            [sys.executable, "-m", "stream_app", "worker", "--log-level", "INFO"],
            env=self.env(worker_id),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.procs[worker_id] = proc
        return proc

    def log_path(self, worker_id: str) -> Path:
        return self.directory / f"{worker_id}.log"

    def log_tail(self, worker_id: str, lines: int = 4) -> str:
        """The last lines of a worker's log that look like why it stopped."""
        try:
            text = self.log_path(worker_id).read_bytes()[-20_000:].decode("utf-8", "replace")
        except OSError:
            return ""
        rows = [row for row in text.splitlines() if row.strip()]
        errors = [row for row in rows if "Error" in row or "Exception" in row or "ERROR" in row]
        return " | ".join((errors or rows)[-lines:])[:1500]

    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)  # a frozen worker cannot die while stopped
                proc.kill()
                proc.wait()


class Supervisor:
    """Restarts a worker that exits, as systemd or Kubernetes would, recording each exit.

    While ``held`` (a crash-loop back-off) an exited worker stays down. At most
    ``max_restarts`` restarts, so a worker that crashes on every start cannot eat the CPU.
    """

    def __init__(self, fleet: Fleet, worker_id: str, max_restarts: int = 4) -> None:
        self.fleet = fleet
        self.worker_id = worker_id
        self.max_restarts = max_restarts
        self.held = False
        self.exits: list[Exit] = []
        self._seen: set[int] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.fleet.start(self.worker_id)
        self._task = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def check(self) -> None:
        """Record an exit of the current process (idempotent)."""
        proc = self.fleet.procs[self.worker_id]
        rc = proc.poll()
        if rc is not None and proc.pid not in self._seen:
            self._seen.add(proc.pid)
            self.exits.append(
                Exit(self.worker_id, rc, self.fleet.elapsed(), self.fleet.log_tail(self.worker_id))
            )

    def restart_if_down(self) -> None:
        self.check()
        proc = self.fleet.procs[self.worker_id]
        if proc.poll() is not None and len(self.exits) <= self.max_restarts:
            self.fleet.start(self.worker_id)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            if self.held:
                self.check()
            else:
                self.restart_if_down()


# -- Kafka through confluent-kafka ------------------------------------------------------------
def _admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def group_assignments(bootstrap: str, group: str) -> list[frozenset[Partition]]:
    """What each member of ``group`` holds, as the broker describes it (empty: no group)."""
    admin = _admin(bootstrap)  # referenced until its futures resolve
    future = admin.describe_consumer_groups([group], request_timeout=10)[group]
    try:
        description = future.result()
    except KafkaException:
        return []
    return [
        frozenset((tp.topic, tp.partition) for tp in member.assignment.topic_partitions)
        if member.assignment is not None
        else frozenset()
        for member in description.members
    ]


def topic_config(bootstrap: str, topic: str, name: str) -> ConfigEntry:
    admin = _admin(bootstrap)  # referenced until its futures resolve
    resource = ConfigResource(ResourceType.TOPIC, topic)
    configs: dict[str, ConfigEntry] = admin.describe_configs([resource])[resource].result()
    return configs[name]


def is_topic_override(entry: ConfigEntry) -> bool:
    """The value is set on the topic itself (not the broker's or Kafka's default)."""
    source = getattr(entry.source, "value", entry.source)
    return bool(source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value)


def set_topic_config(bootstrap: str, topic: str, name: str, value: str | None) -> None:
    """Set one topic config with ``incremental_alter_configs``; None removes the topic's
    override (back to the broker's value)."""
    op = AlterConfigOpType.DELETE if value is None else AlterConfigOpType.SET
    entry = ConfigEntry(name, value, incremental_operation=op)
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[entry])
    admin = _admin(bootstrap)
    admin.incremental_alter_configs([resource])[resource].result()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # read it back: the broker applied it
        entry_now = topic_config(bootstrap, topic, name)
        overridden = is_topic_override(entry_now)
        if (value is None and not overridden) or (value is not None and entry_now.value == value):
            return
        time.sleep(0.2)
    raise AssertionError(f"{topic}: {name} did not become {value!r}")


def produce(
    bootstrap: str, records: Sequence[tuple[str, bytes | None, bytes, int | None]]
) -> list[tuple[int, int]]:
    """Send (topic, key, value, partition) records in order; their (partition, offset).

    Kafka's murmur2 partitioner, as every producer of the product's inputs must use.
    """
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "partitioner": "murmur2_random",
            "enable.idempotence": True,
            "message.max.bytes": 4 * 1024 * 1024,
            "linger.ms": 5,
        }
    )
    placed: list[tuple[int, int] | str | None] = [None] * len(records)

    def delivered(index: int) -> Any:
        def callback(err: KafkaError | None, msg: Any) -> None:
            placed[index] = str(err) if err is not None else (msg.partition(), msg.offset())

        return callback

    for index, (topic, key, value, partition) in enumerate(records):
        extra: dict[str, Any] = {} if partition is None else {"partition": partition}
        producer.produce(topic, value, key, on_delivery=delivered(index), **extra)
        producer.poll(0)
    left = producer.flush(30)
    failed = [p for p in placed if not isinstance(p, tuple)]
    if left or failed:
        raise AssertionError(f"producing test input failed: {left} undelivered, {failed[:3]}")
    return [p for p in placed if isinstance(p, tuple)]


def advance_click_time(settings: Settings, ts: float) -> None:
    """A sentinel click in every partition moves click time past the grace period, so
    conversions whose click never came are given up on (as ``probes.advance_click_time``)."""
    records: list[tuple[str, bytes | None, bytes, int | None]] = []
    for p in range(settings.partitions):
        sentinel = {
            "schema_version": 1,
            "event_id": f"sentinel-{p}",
            "click_id": f"sentinel-{p}",
            "campaign_id": "sentinel",
            "channel": "none",
            "user_id": "none",
            "ts": ts,
        }
        records.append((settings.topics.clicks, b"probe", orjson.dumps(sentinel), p))
    produce(settings.bootstrap_servers, records)


def end_offsets(bootstrap: str, topics: Sequence[str]) -> dict[Partition, int]:
    """The high watermark of every partition of ``topics``."""
    consumer = _offsets_probe(bootstrap)
    try:
        ends: dict[Partition, int] = {}
        for topic in topics:
            for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
                ends[(topic, p)] = consumer.get_watermark_offsets(
                    TopicPartition(topic, p), 10, False
                )[1]
        return ends
    finally:
        consumer.close()


def _offsets_probe(bootstrap: str) -> Consumer:
    """A consumer for offsets only. ``read_uncommitted``: librdkafka's default,
    ``read_committed``, gives the last stable offset for the high watermark, which stops
    before an open transaction and leaves out every record after it."""
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "fencing-offsets",
            "isolation.level": "read_uncommitted",
        }
    )


def phase_of(source: SourceOffset, marks: Sequence[dict[Partition, int]]) -> int:
    """How many of ``marks`` (end offsets taken one after another) ``source`` came after."""
    topic, partition, offset = source
    return sum(1 for mark in marks if offset >= mark.get((topic, partition), 0))


@dataclass(frozen=True)
class Read:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def read_committed(bootstrap: str, topic: str, limit: float = 30.0) -> list[Read]:
    """Every committed record of ``topic`` up to its end offsets as of the call.

    Waits for open transactions to end (``read_committed`` stops before them); fails
    after ``limit`` seconds naming the partitions still behind, rather than hang.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"fencing-reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        ends = {p: high for (_, p), high in end_offsets(bootstrap, [topic]).items() if high > 0}
        if not ends:
            return []
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        out: list[Read] = []
        deadline = time.monotonic() + limit
        while ends:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{topic}: partitions {sorted(ends)} did not reach their end offsets "
                    f"{ends} within {limit:.0f}s read_committed (a transaction never ended?)"
                )
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            p, offset = msg.partition() or 0, msg.offset() or 0
            error = msg.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(error)
                if p in ends and offset >= ends[p]:
                    del ends[p]
                continue
            if p in ends and offset < ends[p]:
                out.append(Read(p, offset, msg.key(), msg.value()))
            if p in ends and offset + 1 >= ends[p]:
                del ends[p]
        return out
    finally:
        consumer.close()


# -- ground truth and the checks -------------------------------------------------------------
FIELDS = ("clicks", "conversions", "impressions", "reviews", "spend", "revenue")


@dataclass
class Expected:
    """What the outputs must show for the generator runs of one test."""

    campaigns: dict[str, tuple[float, ...]] = field(default_factory=dict)
    bad: Counter[str] = field(default_factory=Counter)
    unattributed: Counter[str] = field(default_factory=Counter)

    @classmethod
    def of(cls, *truths: GroundTruth) -> Expected:
        expected = cls()
        for truth in truths:
            for cid, c in truth.campaigns.items():
                row = (c.clicks, c.conversions, c.impressions, c.reviews, c.spend, c.revenue)
                old = expected.campaigns.get(cid, (0, 0, 0, 0, 0.0, 0.0))
                expected.campaigns[cid] = tuple(a + b for a, b in zip(old, row, strict=True))
            expected.bad.update(truth.bad_events)
            expected.unattributed.update({r: u.count for r, u in truth.unattributed.items()})
        expected.unattributed = +expected.unattributed
        return expected

    @property
    def clicks(self) -> int:
        return int(sum(row[0] for row in self.campaigns.values()))


def _row(latest: CampaignLatest) -> tuple[float, ...]:
    m = latest.cumulative
    return (m.clicks, m.conversions, m.impressions, m.reviews, m.spend, m.revenue)


def _same(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[:4] == b[:4] and all(abs(x - y) <= 1e-6 for x, y in zip(a[4:], b[4:], strict=True))


_decode_latest = msgspec.json.Decoder(CampaignLatest)


def latest_records(settings: Settings) -> list[CampaignLatest]:
    topic = settings.topics.campaign_roi_latest
    return [
        _decode_latest.decode(r.value)
        for r in read_committed(settings.bootstrap_servers, topic)
        if r.value is not None
    ]


def newest(records: list[CampaignLatest]) -> dict[str, CampaignLatest]:
    out: dict[str, CampaignLatest] = {}
    for record in records:
        current = out.get(record.campaign_id)
        if current is None or record.revision > current.revision:
            out[record.campaign_id] = record
    return out


async def settle(
    settings: Settings,
    expected: Expected,
    limit: float = 75.0,
    quiet: float = 15.0,
    stall: float = 30.0,
) -> dict[str, CampaignLatest]:
    """Poll ``campaign-roi-latest`` until the sentinels (one click per partition) arrived
    and every campaign matches the truth; or until nothing changed for ``quiet`` seconds
    after the sentinels arrived (a mismatch that stays), for ``stall`` seconds before they
    did (a stuck worker), or for ``limit`` seconds in all."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    last: object = None
    since = loop.time()
    latest: dict[str, CampaignLatest] = {}
    while loop.time() < deadline:
        latest = newest(await asyncio.to_thread(latest_records, settings))
        sentinel = latest.get("sentinel")
        arrived = sentinel is not None and sentinel.cumulative.clicks == settings.partitions
        rows = {cid: _row(r) for cid, r in latest.items()}
        if arrived and all(
            cid in rows and _same(rows[cid], row) for cid, row in expected.campaigns.items()
        ):
            break
        if rows != last:
            last, since = rows, loop.time()
        elif loop.time() - since >= (quiet if arrived else stall):
            break
        await asyncio.sleep(1.0)
    return latest


@dataclass
class Outcome:
    problems: list[str]
    dead_letters: list[dict[str, Any]]


def check_exactly_once(
    settings: Settings,
    expected: Expected,
    latest: dict[str, CampaignLatest],
    own_bad: Sequence[SourceOffset] = (),
) -> Outcome:
    """Every problem with the outputs against the truth, with numbers.

    ``own_bad`` are input records the test sent itself that must be dead-lettered once
    each (any reason); the other dead letters must match the generator's bad events.
    """
    problems: list[str] = []
    bootstrap = settings.bootstrap_servers
    t = settings.topics

    # per-campaign cumulative totals
    sentinel = latest.get("sentinel")
    if sentinel is None or sentinel.cumulative.clicks != settings.partitions:
        seen = None if sentinel is None else sentinel.cumulative.clicks
        problems.append(f"sentinel clicks {seen} != {settings.partitions} (a partition stalled?)")
    diffs: list[str] = []
    excess = Counter[str]()
    for cid, want in sorted(expected.campaigns.items()):
        record = latest.get(cid)
        if record is None:
            diffs.append(f"{cid} missing")
            continue
        got = _row(record)
        if not _same(got, want):
            parts = []
            for name, g, w in zip(FIELDS, got, want, strict=True):
                if abs(g - w) > 1e-6:
                    parts.append(f"{name} {g:g} vs {w:g} ({g - w:+g})")
                    if name in ("clicks", "conversions"):
                        excess[name] += int(g - w)
            diffs.append(f"{cid}: " + ", ".join(parts))
    if diffs:
        summary = ", ".join(f"{k} {v:+d} in all" for k, v in excess.items())
        problems.append(f"totals != truth ({summary}): " + "; ".join(diffs))

    # one committed campaign-roi-latest record per (campaign, revision)
    records = latest_records(settings)
    by_revision: dict[tuple[str, int], set[tuple[float, ...]]] = {}
    for r in records:
        by_revision.setdefault((r.campaign_id, r.revision), set()).add(
            (*_row(r), r.too_late_events)
        )
    conflicts = {k: v for k, v in by_revision.items() if len(v) > 1}
    if conflicts:
        example = next(iter(sorted(conflicts.items())))
        problems.append(
            f"{len(conflicts)} (campaign, revision) pairs of campaign-roi-latest have different "
            f"records (of {len(by_revision)}); e.g. {example[0]}: {sorted(example[1])}"
        )

    # dead letters: once per source record, reasons as the truth says
    dead = [
        orjson.loads(r.value)
        for r in read_committed(bootstrap, t.dead_letter)
        if r.value is not None
    ]
    per_source = Counter((d["topic"], d["partition"], d["offset"]) for d in dead)
    twice = {k: n for k, n in per_source.items() if n > 1}
    if twice:
        problems.append(
            f"{len(twice)} input records dead-lettered more than once "
            f"({sum(twice.values())} letters), e.g. {sorted(twice.items())[:3]}"
        )
    own = set(own_bad)
    for source in own_bad:
        if per_source[source] != 1:
            problems.append(f"test input {source} dead-lettered {per_source[source]} times, not 1")
    reasons = Counter(
        d["reason"] for d in dead if (d["topic"], d["partition"], d["offset"]) not in own
    )
    if reasons != expected.bad:
        delta = dict(sorted((reasons - expected.bad).items()))
        missing = dict(sorted((expected.bad - reasons).items()))
        problems.append(
            f"generator's dead letters by reason {dict(sorted(reasons.items()))} != truth "
            f"{dict(sorted(expected.bad.items()))} (extra {delta}, missing {missing})"
        )

    # unattributed conversions: once each, reasons as the truth says
    lost = [
        orjson.loads(r.value)
        for r in read_committed(bootstrap, t.conversions_unattributed)
        if r.value is not None
    ]
    counts = Counter(u["reason"] for u in lost)
    if counts != expected.unattributed:
        problems.append(
            f"unattributed {dict(sorted(counts.items()))} != truth "
            f"{dict(sorted(expected.unattributed.items()))}"
        )
    repeated = sum(n - 1 for n in Counter(u["event_id"] for u in lost).values() if n > 1)
    if repeated:
        problems.append(f"{repeated} unattributed conversions reported more than once")

    # clicks-scored: one per click
    scored = [
        orjson.loads(r.value)
        for r in read_committed(bootstrap, t.clicks_scored)
        if r.value is not None
    ]
    click_ids = Counter(s["click_id"] for s in scored if s["campaign_id"] != "sentinel")
    extra_scores = sum(n - 1 for n in click_ids.values() if n > 1)
    if extra_scores or len(click_ids) != expected.clicks:
        problems.append(
            f"clicks-scored: {sum(click_ids.values())} records for {len(click_ids)} clicks, "
            f"truth {expected.clicks} clicks ({extra_scores} scored more than once)"
        )
    return Outcome(problems, dead)


async def wait_for_group(
    settings: Settings, members: int, limit: float
) -> list[frozenset[Partition]] | None:
    """The group's assignments once it has ``members`` members, each holding partitions
    and together holding every input partition of the ROI path; None after ``limit``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while loop.time() < deadline:
        assigned = await asyncio.to_thread(
            group_assignments, settings.bootstrap_servers, settings.consumer_group
        )
        if len(assigned) == members and all(assigned) and covers_inputs(settings, assigned):
            return assigned
        await asyncio.sleep(0.5)
    return None


def covers_inputs(settings: Settings, assigned: list[frozenset[Partition]]) -> bool:
    held = frozenset().union(*assigned) if assigned else frozenset()
    t = settings.topics
    return all(
        (topic, p) in held
        for topic in (t.clicks, t.conversions, t.spend)
        for p in range(settings.partitions)
    )


def freeze(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGSTOP)


def thaw(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGCONT)
