"""The on-disk state store (``state_store=rocksdb``) against the generator's ground truth.

Real worker processes on the session broker. A restart with a current local store must
replay only the changelog written after the store's checkpoint (the worker logs how many
records it read, checked against the changelog's size); a deleted or corrupt store must
fall back to a full restore; ``kill -9`` mid-stream, with the store persisted after every
commit, must not count anything twice; a partition whose owner dies must be rebuilt by the
survivor from the changelog; one handed over cleanly and back must replay only what the
other owner wrote; and a restore longer than ``max.poll.interval.ms`` must not cost the
worker its membership. Every run ends equal to the ground truth.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer
from confluent_kafka import TopicPartition as KafkaPartition

from stream_app.domain.attribution import Attribution
from stream_app.generator import generate_to_kafka
from stream_app.generator.truth import GroundTruth
from stream_app.runner import build_workers, run_workers
from stream_app.settings import Settings
from stream_app.topics import create_topics

from .probes import advance_click_time
from .test_recovery import (
    GRACE,
    Workers,
    assert_exactly_once,
    first_commit,
    scenario,
    worker_env,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(360)]

RESTORED = re.compile(
    r"restored (attribution|aggregation)\[(\d+)\] \((.*?)\): "
    r"(\d+) changelog records from offset (\d+) to (\d+)"
)
T0 = 1_767_225_600.0
STAGES = ("attribution", "aggregation")


class StoreWorkers(Workers):
    def __init__(self, settings: Settings, log_dir: str, state_dir: Path, interval: str) -> None:
        super().__init__(settings, log_dir)
        self.state_dir = state_dir
        self.interval = interval

    def start(self, worker_id: str) -> subprocess.Popen[bytes]:
        env = {
            **worker_env(self.settings, worker_id),
            "STREAM_APP_STATE_STORE": "rocksdb",
            "STREAM_APP_STATE_DIR": str(self.state_dir),
            "STREAM_APP_STATE_CHECKPOINT_INTERVAL_SECONDS": self.interval,
            "STREAM_APP_STATE_BLOCK_CACHE_BYTES": str(8 << 20),
        }
        log = open(os.path.join(self.log_dir, f"{worker_id}.log"), "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "stream_app", "worker", "--log-level", "INFO"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc

    def restores(
        self, worker_id: str, stage: str = "attribution"
    ) -> list[tuple[int, str, int, int, int]]:
        """The worker's restores of ``stage``'s partitions, in order: (partition, where
        from, changelog records read, from offset, to offset)."""
        text = (Path(self.log_dir) / f"{worker_id}.log").read_text(errors="replace")
        return [
            (int(p), why, int(n), int(start), int(end))
            for name, p, why, n, start, end in RESTORED.findall(text)
            if name == stage
        ]

    def store(self, worker_id: str, partition: int) -> Path:
        topic = self.settings.state_topic("attribution")
        return self.state_dir / "stores" / worker_id / f"{topic}-{partition}"


def make_workers(make_settings, tmp_path: Path, interval: str) -> StoreWorkers:  # type: ignore[no-untyped-def]
    settings = make_settings(
        attribution_window_seconds=90.0, conversion_grace_seconds=GRACE, commit_interval_seconds=0.3
    )
    return StoreWorkers(settings, str(tmp_path), tmp_path / "state", interval)


@pytest.fixture
def workers(make_settings, tmp_path) -> Iterator[StoreWorkers]:  # type: ignore[no-untyped-def]
    group = make_workers(make_settings, tmp_path, "1.0")
    try:
        yield group
    finally:
        group.close()


@pytest.fixture
def eager_workers(make_settings, tmp_path) -> Iterator[StoreWorkers]:  # type: ignore[no-untyped-def]
    group = make_workers(make_settings, tmp_path, "0")  # persist after every commit
    try:
        yield group
    finally:
        group.close()


def changelog_end(settings: Settings, partition: int, stage: str = "attribution") -> int:
    probe = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "t"})
    try:
        tp = KafkaPartition(settings.state_topic(stage), partition)
        return int(probe.get_watermark_offsets(tp, timeout=10, cached=False)[1])
    finally:
        probe.close()


def restore_counts(group: StoreWorkers, worker_id: str) -> dict[str, int]:
    return {stage: len(group.restores(worker_id, stage)) for stage in STAGES}


async def until_restored(
    group: StoreWorkers, worker_id: str, count: int, since: dict[str, int] | None = None
) -> None:
    """Until the worker has logged ``count`` more restores than ``since`` of each
    store-backed stage's partitions (attribution's and aggregation's)."""
    since = since or {}
    for _ in range(600):
        counts = restore_counts(group, worker_id)
        if all(counts[stage] >= since.get(stage, 0) + count for stage in STAGES):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{worker_id} did not restore {count} partitions")


async def exact_in_the_end(settings: Settings, first: GroundTruth, second: GroundTruth) -> None:
    """Past both runs' attribution window (every click expired), the outputs equal the
    two runs' ground truth: nothing lost, nothing counted twice."""
    await advance_click_time(settings, T0 + 240.0 + 10 * GRACE)
    await assert_exactly_once(settings, first, second)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0


async def test_a_restart_with_a_current_store_replays_only_the_tail(
    workers: StoreWorkers,
) -> None:
    settings = workers.settings
    await create_topics(settings)
    first = await generate_to_kafka(scenario(21, T0, 120.0), settings)
    proc = workers.start("w1")
    await until_restored(workers, "w1", settings.partitions)
    assert all(why == "no local store" for _, why, *_ in workers.restores("w1"))
    await asyncio.sleep(8.0)  # the first run processed, persisted after its commits
    stop(proc)  # a clean stop persists the last commit: the store is current
    ends = {
        (stage, p): changelog_end(settings, p, stage)
        for stage in STAGES
        for p in range(settings.partitions)
    }
    # both stages wrote (all the input is there at the start, so it takes a few large
    # transactions: attribution's changelogs hold about ten records each)
    assert min(ends.values()) > 5
    for stage in STAGES:  # the first start restored nothing: the changelogs were empty
        assert all(why == "no local store" for _, why, *_ in workers.restores("w1", stage))
    proc = workers.start("w1")
    await until_restored(workers, "w1", 2 * settings.partitions)
    for stage in STAGES:
        current = workers.restores("w1", stage)[settings.partitions :]
        assert len(current) == settings.partitions, stage
        for partition, why, records, start, end in current:
            assert why.startswith("local store"), (stage, why)
            assert records == 0, stage
            assert start >= ends[(stage, partition)] - 1, stage
            assert end >= start

    # kill -9 mid-stream, three times: each restart replays only what came after the
    # store's last checkpoint (at most ~1 s of commits), never the whole changelog
    second_run = asyncio.create_task(
        generate_to_kafka(scenario(22, T0 + 120.0, 120.0), settings, rate=4000.0)
    )
    for pause in (3.0, 2.5, 4.0):
        await asyncio.sleep(pause)
        assert proc.poll() is None, "worker died on its own"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        seen = restore_counts(workers, "w1")
        proc = workers.start("w1")
        await until_restored(workers, "w1", settings.partitions, seen)
        for stage in STAGES:
            for partition, why, records, start, end in workers.restores("w1", stage)[seen[stage] :]:
                assert why.startswith("local store"), (stage, why)
                assert records <= end - start < end, (stage, partition, records, start, end)
    second = await second_run
    await exact_in_the_end(settings, first, second)
    assert proc.poll() is None


async def test_a_deleted_or_corrupt_store_falls_back_to_a_full_restore(
    workers: StoreWorkers,
) -> None:
    settings = workers.settings
    await create_topics(settings)
    first = await generate_to_kafka(scenario(23, T0, 120.0), settings)
    proc = workers.start("w1")
    await asyncio.sleep(10.0)
    stop(proc)
    ends = [changelog_end(settings, p) for p in range(settings.partitions)]
    shutil.rmtree(workers.store("w1", 0))  # lost: a new disk
    for f in workers.store("w1", 1).iterdir():  # corrupt: its manifest garbage
        if f.name.startswith(("CURRENT", "MANIFEST")):
            f.write_bytes(b"\x00not a manifest")
    seen = restore_counts(workers, "w1")
    proc = workers.start("w1")
    await until_restored(workers, "w1", settings.partitions, seen)
    again = {
        p: (why, records, start, end)
        for p, why, records, start, end in workers.restores("w1")[seen["attribution"] :]
    }
    assert again[0][0] == "no local store"
    assert again[1][0].startswith("unreadable")
    for partition, (why, records, start, end) in again.items():
        assert start == 0, why  # the whole changelog, read again
        assert end == ends[partition], why
        assert 0 < records < end, why  # its records (the rest are transaction markers)
    second = await generate_to_kafka(scenario(24, T0 + 120.0, 120.0), settings, rate=4000.0)
    await exact_in_the_end(settings, first, second)
    assert proc.poll() is None


async def test_kill_9_with_a_store_persisted_after_every_commit_counts_everything_once(
    eager_workers: StoreWorkers,
) -> None:
    """Persisting right after each commit maximises the chance that a SIGKILL lands between
    a commit and its persist, in a persist, or with the next transaction open: the store
    must never hold an uncommitted write, so the restarts count nothing twice."""
    workers = eager_workers
    settings = workers.settings
    await create_topics(settings)
    first = await generate_to_kafka(scenario(25, T0, 120.0), settings)
    proc = workers.start("w1")
    await until_restored(workers, "w1", settings.partitions)
    second_run = asyncio.create_task(
        generate_to_kafka(scenario(26, T0 + 120.0, 120.0), settings, rate=4000.0)
    )
    for pause in (2.0, 1.3, 2.7, 0.9, 3.1):
        await asyncio.sleep(pause)  # processing, committing and persisting
        assert proc.poll() is None, "worker died on its own"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        seen = restore_counts(workers, "w1")
        proc = workers.start("w1")
        await until_restored(workers, "w1", settings.partitions, seen)
    second = await second_run
    await exact_in_the_end(settings, first, second)
    local = [r for r in workers.restores("w1") if r[1].startswith("local store")]
    assert local, "no restart reused its store"
    assert proc.poll() is None


async def test_a_partition_moves_to_the_survivor_and_is_rebuilt_from_the_changelog(
    workers: StoreWorkers,
) -> None:
    """Failover: the survivor has no store for the dead worker's partitions (stores are
    per worker), so it restores them in full from the changelog; nothing lost or doubled."""
    settings = workers.settings
    await create_topics(settings)
    first = await generate_to_kafka(scenario(27, T0, 120.0), settings)
    survivor = workers.start("w1")
    victim = workers.start("w2")
    await until_restored(workers, "w2", 1)  # both joined and sharing the partitions
    await asyncio.sleep(2.0)
    second_run = asyncio.create_task(
        generate_to_kafka(scenario(28, T0 + 120.0, 120.0), settings, rate=3000.0)
    )
    await asyncio.sleep(2.0)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    second = await second_run
    await exact_in_the_end(settings, first, second)
    assert survivor.poll() is None
    # the dead worker's partition is restored by the survivor with what the dead one wrote
    last = {p: records for p, _, records, _, _ in workers.restores("w1")}
    assert len(last) == settings.partitions
    assert any(records > 0 for records in last.values())


async def test_a_partition_handed_over_and_back_replays_only_what_the_other_owner_wrote(
    workers: StoreWorkers,
) -> None:
    """A clean handover: w2 joins and takes one partition (w1 persists its store at the
    revocation), writes to its changelog, and leaves; w1 takes the partition back from
    its own store, replaying only what w2 wrote — not the whole changelog — and nothing
    is lost or doubled."""
    settings = workers.settings
    await create_topics(settings)
    first = await generate_to_kafka(scenario(31, T0, 120.0), settings)
    w1 = workers.start("w1")
    await until_restored(workers, "w1", settings.partitions)
    await asyncio.sleep(6.0)  # the first run processed and committed
    w2 = workers.start("w2")
    await until_restored(workers, "w2", 1)
    (moved, why, _, _, _) = workers.restores("w2")[0]
    assert why == "no local store"  # w2 never held it: a full restore from the changelog
    taken = changelog_end(settings, moved)
    second = await generate_to_kafka(scenario(32, T0 + 120.0, 120.0), settings, rate=3000.0)
    await asyncio.sleep(4.0)  # w2 processed its share of the second run and committed
    handed_back = changelog_end(settings, moved)
    seen = restore_counts(workers, "w1")
    stop(w2)  # w1 takes the partition back
    await until_restored(workers, "w1", settings.partitions, seen)
    back = {
        p: (why, n, start, end)
        for p, why, n, start, end in workers.restores("w1")[seen["attribution"] :]
    }
    why, records, start, end = back[moved]
    assert why.startswith("local store"), why
    assert handed_back > taken  # w2 wrote to the partition's changelog
    # from w1's checkpoint at the revocation, not from the log start
    assert 0 < start <= taken < end, (start, taken, end)
    assert end >= handed_back - 1
    assert 0 < records <= end - start  # what w2 wrote (and no more), not the log
    await exact_in_the_end(settings, first, second)
    assert w1.poll() is None


async def test_a_restore_longer_than_the_poll_interval_keeps_the_member_and_its_other_partitions(
    make_settings: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Restores run outside the poll loop: partition 0's restore is held for 15 s, past
    ``max.poll.interval.ms`` (10 s). The worker must keep its membership (no partitions
    lost, no aborted transaction), process and commit partition 1 meanwhile, then resume
    partition 0 and end equal to the ground truth. Inside the assignment callback, as
    restores ran before, the group would have dropped the worker after 10 s."""
    settings = make_settings(
        attribution_window_seconds=90.0,
        conversion_grace_seconds=GRACE,
        commit_interval_seconds=0.3,
        state_store="rocksdb",
        state_dir=tmp_path / "state",
        max_poll_interval_seconds=10.0,
        session_timeout_seconds=10.0,
    )
    await create_topics(settings)
    first = await generate_to_kafka(scenario(29, T0, 120.0), settings)
    original = Attribution.restore
    held: list[float] = []

    def slow_restore(self: Attribution, key: str, value: object) -> None:
        if self.partition == 0 and not held:
            held.append(time.monotonic())
            time.sleep(15.0)  # on the restore thread
        original(self, key, value)

    workers = build_workers(settings)  # the ROI path and review scoring, as a process runs
    worker = workers[0]
    task = asyncio.create_task(run_workers(workers))
    try:
        await asyncio.wait_for(worker.ready.wait(), 60)
        await first_commit(settings)
        for each in workers:
            each.stop()
        await task
        store = settings.state_dir / "stores" / settings.worker_id
        shutil.rmtree(store / f"{settings.state_topic('attribution')}-0")  # a full restore
        monkeypatch.setattr(Attribution, "restore", slow_restore)
        workers = build_workers(settings)
        worker = workers[0]
        task = asyncio.create_task(run_workers(workers))
        second = await generate_to_kafka(scenario(30, T0 + 120.0, 120.0), settings, rate=3000.0)
        while not held:  # noqa: ASYNC110 (set on the restore thread)
            await asyncio.sleep(0.1)
        await asyncio.sleep(3.0)
        assert worker.health() == "restoring attribution[0]"
        # partition 1's inputs are processed and committed while partition 0 restores
        clicks_1 = KafkaPartition(settings.topics.clicks, 1)
        assert await asyncio.to_thread(committed_offset, settings, clicks_1) > 0
        await asyncio.wait_for(worker.ready.wait(), 60)
        assert time.monotonic() - held[0] >= 15.0
        await exact_in_the_end(settings, first, second)
        assert worker.aborted_transactions == 0, "the group dropped the worker"
    finally:
        for each in workers:
            each.stop()
        await task


def committed_offset(settings: Settings, tp: KafkaPartition) -> int:
    probe = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": settings.consumer_group,
            "isolation.level": "read_committed",
        }
    )
    try:
        return int(probe.committed([tp], timeout=10)[0].offset)
    finally:
        probe.close()
