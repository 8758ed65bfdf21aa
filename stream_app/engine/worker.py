"""The worker loop: poll in batches, run the stages, commit everything in one transaction.

Commit order (one Kafka transaction per ``commit_interval_seconds``):

1. each stage flushes: window records, latest records, deltas, dead letters into the outbox;
2. each partition state's changes are serialised for its changelog partition;
3. the outbox and the changelog records are produced;
4. the consumed input offsets are added to the transaction;
5. the transaction commits — outputs, state and offsets become visible together or not at all.

Steps 1-2 run synchronously; 3-5 run in a task while the next batch is processed, so the
CPU is not idle while the broker commits. At most one transaction is in flight.

A crash anywhere before 5 aborts the lot: the restarted worker restores state from the
changelog and re-reads the inputs from the committed offsets, so nothing is lost or counted
twice. The transactional id is stable per ``worker_id``, so a restarted worker fences its
predecessor's open transaction at start-up. A record that kills the worker every time it is
processed is dead-lettered by the restarted worker (:mod:`.poison`), never a crash loop.

A partition whose state cannot be restored is paused, never silently skipped: the worker
reports it in :meth:`Worker.health` (``/healthz``) and in ``unrestored`` (a metric and an
alert), logs why, and tries again at the next rebalance.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import ConsumerRecord, TopicPartition

from ..domain.outcomes import Outcome
from ..domain.validation import Reason
from .deadletter import dead_letter
from .poison import PoisonGuard
from .restore import read_changelog
from .stage import Outbox, PartitionState, Stage

log = logging.getLogger(__name__)
_PARTITIONER = DefaultPartitioner()

#: Called after each commit with the outbox, the commit's duration in seconds, the Kafka
#: timestamp (ms) of the oldest record of each partition batch, the lag per topic and now.
CommitObserver = Callable[[Outbox, float, dict[TopicPartition, int], dict[str, int], float], None]


class Worker:
    """Runs a set of stages over one consumer group with exactly-once commits."""

    def __init__(
        self,
        stages: Sequence[Stage],
        *,
        bootstrap_servers: str,
        group_id: str,
        transactional_id: str,
        state_topic: Callable[[str], str],
        commit_interval_seconds: float = 0.5,
        max_poll_records: int = 5000,
        transaction_timeout_seconds: float = 10.0,
        on_commit: CommitObserver | None = None,
        dead_letter_topic: str = "dead-letter",
        worker_id: str = "worker",
        inflight_path: Path | None = None,
    ) -> None:
        self.stages = list(stages)
        self._stage_of = {topic: stage for stage in self.stages for topic in stage.topics}
        self._bootstrap = bootstrap_servers
        self._group_id = group_id
        self._transactional_id = transactional_id
        self._state_topic = state_topic
        self._interval = commit_interval_seconds
        self._max_poll_records = max_poll_records
        self._transaction_timeout_ms = int(transaction_timeout_seconds * 1000)
        self._on_commit = on_commit
        self.states: dict[tuple[str, int], PartitionState] = {}
        self._offsets: dict[TopicPartition, int] = {}
        self._oldest_ts: dict[TopicPartition, int] = {}
        self._lag: dict[TopicPartition, int] = {}
        self._outbox = Outbox()
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.ready = asyncio.Event()  # set once partitions are assigned and restored
        self.committed_transactions = 0
        self.processed_records = 0
        self._failed = False
        self._in_flight: asyncio.Task[None] | None = None
        self._partitions: dict[str, list[int]] = {}
        self._dead_letter_topic = dead_letter_topic
        self._worker_id = worker_id
        self._guard = PoisonGuard(inflight_path) if inflight_path is not None else None
        self.unrestored: dict[tuple[str, int], str] = {}
        """Assigned stage partitions whose state could not be restored, and why (paused)."""

    # -- lifecycle ----------------------------------------------------------------------
    async def run(self) -> None:
        """Process until :meth:`stop`; commits the open batch before returning."""
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            transactional_id=self._transactional_id,
            transaction_timeout_ms=self._transaction_timeout_ms,
            enable_idempotence=True,
            linger_ms=5,
            max_batch_size=512 * 1024,
            max_request_size=8 * 1024 * 1024,
        )
        # Starting the transactional producer first fences a crashed predecessor and
        # aborts its open transaction, so the restore below sees only committed state.
        await self.producer.start()
        self.consumer = AIOKafkaConsumer(
            *self._stage_of,
            bootstrap_servers=self._bootstrap,
            group_id=self._group_id,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            partition_assignment_strategy=(RangePartitionAssignor,),
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_bytes=32 * 1024 * 1024,
        )
        self.consumer.subscribe(list(self._stage_of), listener=_Rebalance(self))
        await self.consumer.start()
        try:
            await self._loop()
            async with self._lock:  # a clean stop commits what was processed
                await self._commit()
            if self._guard is not None:
                self._guard.close()
        finally:
            # After an error nothing more is committed: the in-memory state may be ahead
            # of the last transaction, and the restarted worker restores from the changelog.
            if self._in_flight is not None and not self._in_flight.done():
                self._in_flight.cancel()
            await self.consumer.stop()
            await self.producer.stop()

    def stop(self) -> None:
        self._stopping.set()

    def health(self) -> str | None:
        """Why this worker is not healthy (``/healthz``), or None when it is."""
        if self.unrestored:
            return "; ".join(
                f"{stage}[{partition}] not restored ({why})"
                for (stage, partition), why in sorted(self.unrestored.items())
            )
        if not self.ready.is_set():
            return "partitions not assigned and restored yet"
        return None

    async def log_diagnostics(self) -> None:
        """Where each assigned partition stands (``kill -USR1`` on a worker that seems stuck)."""
        consumer = self.consumer
        if consumer is None:
            return
        for tp in sorted(consumer.assignment()):
            log.warning(
                "%s[%d] position=%s committed=%s highwater=%s lso=%s state=%s",
                tp.topic,
                tp.partition,
                await consumer.position(tp),
                await consumer.committed(tp),
                consumer.highwater(tp),
                consumer.last_stable_offset(tp),
                (self._stage_of[tp.topic].name, tp.partition) in self.states,
            )
        log.warning("states=%s in_flight=%s", sorted(self.states), self._in_flight)

    async def _loop(self) -> None:
        assert self.consumer is not None
        last_commit = time.monotonic()
        while not self._stopping.is_set():
            batch = await self.consumer.getmany(timeout_ms=100, max_records=self._max_poll_records)
            async with self._lock:
                for tp, records in batch.items():
                    await self._process(tp, records)
                in_flight = self._in_flight is not None and not self._in_flight.done()
                if not in_flight and time.monotonic() - last_commit >= self._interval:
                    await self._wait_in_flight()
                    self._start_commit()
                    last_commit = time.monotonic()

    async def _process(
        self, tp: TopicPartition, records: list[ConsumerRecord[bytes, bytes]]
    ) -> None:
        stage = self._stage_of[tp.topic]
        state = self.states.get((stage.name, tp.partition))
        if state is None:  # revoked while the fetch was in flight; its new owner reads it
            return
        guard = self._guard
        if guard is None:
            pending = stage.process(state, records, self._outbox)
            if pending is not None:
                await pending
        else:
            for step, start, stop in guard.plan(tp.topic, tp.partition, records):
                chunk = records[start:stop]
                if step == "poison":
                    self._dead_letter_poison(chunk[0])
                    continue
                guard.mark(tp.topic, tp.partition, chunk[0].offset, chunk[-1].offset)
                try:
                    pending = stage.process(state, chunk, self._outbox)
                    if pending is not None:
                        await pending
                except Exception as exc:
                    guard.failed(type(exc).__name__)
                    raise
                guard.clear()
        self.processed_records += len(records)
        position = self._offsets[tp] = records[-1].offset + 1
        self._oldest_ts.setdefault(tp, records[0].timestamp)
        assert self.consumer is not None
        self._lag[tp] = max(0, (self.consumer.highwater(tp) or position) - position)

    def _dead_letter_poison(self, record: ConsumerRecord[bytes, bytes]) -> None:
        log.error(
            "%s[%d]@%d killed this worker when processed before: dead-lettered, not processed",
            record.topic,
            record.partition,
            record.offset,
        )
        detail = "the worker died processing this record on its last runs"
        out = self._outbox
        out.send(
            self._dead_letter_topic,
            record.key,
            dead_letter(record, Reason.POISON_PILL, detail, self._worker_id),
        )
        out.dead_letters[Reason.POISON_PILL] += 1
        out.outcomes[(record.topic, Outcome.DEAD_LETTER)] += 1

    # -- the transaction ----------------------------------------------------------------
    def _prepare(self) -> _Transaction | None:
        """Steps 1 and 2, synchronously: everything the transaction will carry, as bytes.

        Serialising here, before any await, lets the next batch be processed while this
        transaction is still being sent and committed (the state may change meanwhile).
        """
        if not self._offsets and not self._outbox.messages:
            return None
        out, self._outbox = self._outbox, Outbox()
        now = time.time()
        for (stage_name, _), state in self.states.items():  # 1
            self._stage_by_name(stage_name).flush(state, out, now)
        changelog: list[tuple[str, bytes | None, bytes | None, int | None]] = []
        for (stage_name, partition), state in self.states.items():  # 2
            topic = self._state_topic(stage_name)
            changelog.extend(
                (topic, name.encode(), None if value is None else orjson.dumps(value), partition)
                for name, value in state.changes()
            )
        txn = _Transaction(out, changelog, self._offsets, self._oldest_ts, dict(self._lag))
        self._offsets, self._oldest_ts = {}, {}
        return txn

    def _start_commit(self) -> None:
        txn = self._prepare()
        if txn is not None:
            self._in_flight = asyncio.create_task(self._send(txn))

    async def _wait_in_flight(self) -> None:
        if self._in_flight is not None:
            task, self._in_flight = self._in_flight, None
            try:
                await task
            except BaseException:
                self._failed = True
                raise

    async def _commit(self) -> None:
        """Commit everything processed so far and wait for it (rebalance, shutdown)."""
        await self._wait_in_flight()
        self._start_commit()
        await self._wait_in_flight()

    async def _send(self, txn: _Transaction) -> None:
        """Steps 3, 4 and 5 of the commit order in the module docstring."""
        assert self.producer is not None
        producer = self.producer
        started = time.monotonic()
        async with producer.transaction():
            await self._produce(txn.out.messages)  # 3
            await self._produce(txn.changelog)
            if txn.offsets:  # 4
                await producer.send_offsets_to_transaction(txn.offsets, self._group_id)
        # 5: leaving the context committed the transaction (or raised and aborted it).
        self.committed_transactions += 1
        if self._on_commit is not None:
            lag: dict[str, int] = {}
            for tp, n in txn.lag.items():
                lag[tp.topic] = lag.get(tp.topic, 0) + n
            self._on_commit(txn.out, time.monotonic() - started, txn.oldest_ts, lag, time.time())

    async def _produce(
        self, messages: Sequence[tuple[str, bytes | None, bytes | None, int | None]]
    ) -> None:
        """Produce in record batches built per topic partition, in order.

        ``producer.send`` costs a future and a partitioner call per record (~50 µs in
        Python, measured); appending to a batch builder costs a few µs, and a record whose
        partition the stage already knows skips the murmur2 hash.
        """
        assert self.producer is not None
        producer = self.producer
        builders: dict[tuple[str, int], Any] = {}
        for topic, key, value, partition in messages:
            if partition is None:
                partition = await self._default_partition(topic, key)
            builder = builders.get((topic, partition))
            if builder is None:
                builder = builders[(topic, partition)] = producer.create_batch()
            if builder.append(key=key, value=value, timestamp=None) is None:  # full
                await producer.send_batch(builder, topic, partition=partition)
                builder = builders[(topic, partition)] = producer.create_batch()
                builder.append(key=key, value=value, timestamp=None)
        for (topic, partition), builder in builders.items():
            await producer.send_batch(builder, topic, partition=partition)

    async def _default_partition(self, topic: str, key: bytes | None) -> int:
        """The partition Kafka's default partitioner picks (as every producer here uses)."""
        partitions = self._partitions.get(topic)
        if partitions is None:
            assert self.producer is not None
            partitions = self._partitions[topic] = sorted(await self.producer.partitions_for(topic))
        return int(_PARTITIONER(key, partitions, partitions))

    def _stage_by_name(self, name: str) -> Stage:
        return next(stage for stage in self.stages if stage.name == name)

    # -- rebalancing --------------------------------------------------------------------
    async def on_revoked(self) -> None:
        """Commit what was processed before partitions can move to another worker."""
        async with self._lock:
            if self.producer is not None and not self._failed:
                await self._commit()

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        """Keep states still ours, drop the rest, restore the new ones from changelogs."""
        wanted = {(self._stage_of[tp.topic].name, tp.partition) for tp in assigned}
        async with self._lock:
            for key in set(self.states) - wanted:
                del self.states[key]
            missing = sorted(wanted - set(self.states))
            for name, partition in missing:
                stage = self._stage_by_name(name)
                if not stage.stateful:
                    self.states[(name, partition)] = stage.new_state(partition)
            changelogs = {
                TopicPartition(self._state_topic(name), partition): (name, partition)
                for name, partition in missing
                if self._stage_by_name(name).stateful
            }
            for key in set(self.unrestored) - wanted:
                del self.unrestored[key]
            wait = self._transaction_timeout_ms / 1000 + 30  # a dead owner's open txn aborts
            try:
                restored = await read_changelog(self._bootstrap, changelogs, wait)
            except Exception as exc:
                log.exception("reading changelogs %s failed", sorted(changelogs))
                restored = {}
                for key in changelogs.values():
                    self._unrestorable(key, f"changelog unreadable: {type(exc).__name__}")
            for tp, values in restored.items():
                stage_name, partition = changelogs[tp]
                state = self._stage_by_name(stage_name).new_state(partition)
                entry = ""
                try:
                    for entry, value in values.items():
                        state.restore(entry, value)
                except Exception as exc:
                    # the key's kind only: keys hold campaign and click ids, never values
                    kind = entry.split("|", 1)[0]
                    log.exception("cannot restore %s[%d] at a %r key", stage_name, partition, kind)
                    self._unrestorable(
                        (stage_name, partition), f"{type(exc).__name__} at a {kind!r} key"
                    )
                    continue
                self.states[(stage_name, partition)] = state
                if self.unrestored.pop((stage_name, partition), None) is not None:
                    log.warning("%s[%d] restored after an earlier failure", stage_name, partition)
            log.info("assigned %d partitions; restored %d states", len(assigned), len(missing))
        self.ready.set()

    def _unrestorable(self, key: tuple[str, int], why: str) -> None:
        """Pause the partition's inputs: processing it without its state would be wrong."""
        self.unrestored[key] = why
        stage_name, partition = key
        assert self.consumer is not None
        inputs = [TopicPartition(t, partition) for t in self._stage_by_name(stage_name).topics]
        self.consumer.pause(*inputs)
        log.error("%s[%d] paused: its state could not be restored (%s)", stage_name, partition, why)


@dataclass(slots=True)
class _Transaction:
    out: Outbox
    changelog: list[tuple[str, bytes | None, bytes | None, int | None]]
    offsets: dict[TopicPartition, int]
    oldest_ts: dict[TopicPartition, int]
    lag: dict[TopicPartition, int]


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: Worker) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._worker.on_revoked()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self._worker.on_assigned(set(assigned))
