"""The worker loop: poll in batches, run the stages, commit everything in one transaction.

Commit order (one Kafka transaction per ``commit_interval_seconds``):

1. each stage flushes: window records, latest records, deltas, dead letters into the outbox;
2. the outbox is produced;
3. each partition state's changes are produced to its changelog partition;
4. the consumed input offsets are added to the transaction;
5. the transaction commits — outputs, state and offsets become visible together or not at all.

A crash anywhere before 5 aborts the lot: the restarted worker restores state from the
changelog and re-reads the inputs from the committed offsets, so nothing is lost or counted
twice. The transactional id is stable per ``worker_id``, so a restarted worker fences its
predecessor's open transaction at start-up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.structs import ConsumerRecord, TopicPartition

from .restore import read_changelog
from .stage import Outbox, PartitionState, Stage

log = logging.getLogger(__name__)

#: Called after each commit with the outbox, the commit's duration in seconds, the Kafka
#: timestamp (ms) of the oldest record of each partition batch, the lag per topic and now.
CommitObserver = Callable[
    [Outbox, float, dict[TopicPartition, int], dict[str, int], float], None
]


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
        on_commit: CommitObserver | None = None,
    ) -> None:
        self.stages = list(stages)
        self._stage_of = {topic: stage for stage in self.stages for topic in stage.topics}
        self._bootstrap = bootstrap_servers
        self._group_id = group_id
        self._transactional_id = transactional_id
        self._state_topic = state_topic
        self._interval = commit_interval_seconds
        self._max_poll_records = max_poll_records
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
        self.ready = asyncio.Event()
        self.committed_transactions = 0
        self.processed_records = 0
        self._failed = False

    # -- lifecycle ----------------------------------------------------------------------
    async def run(self) -> None:
        """Process until :meth:`stop`; commits the open batch before returning."""
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            transactional_id=self._transactional_id,
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
        finally:
            async with self._lock:
                if not self._failed:
                    await self._commit()
            await self.consumer.stop()
            await self.producer.stop()

    def stop(self) -> None:
        self._stopping.set()

    async def _loop(self) -> None:
        assert self.consumer is not None
        last_commit = time.monotonic()
        while not self._stopping.is_set():
            batch = await self.consumer.getmany(timeout_ms=100, max_records=self._max_poll_records)
            async with self._lock:
                for tp, records in batch.items():
                    self._process(tp, records)
                if time.monotonic() - last_commit >= self._interval:
                    try:
                        await self._commit()
                    except BaseException:
                        self._failed = True
                        raise
                    last_commit = time.monotonic()
            if self.consumer.assignment():
                self.ready.set()

    def _process(self, tp: TopicPartition, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        stage = self._stage_of[tp.topic]
        state = self.states.get((stage.name, tp.partition))
        if state is None:  # revoked while the fetch was in flight; its new owner reads it
            return
        stage.process(state, records, self._outbox)
        self.processed_records += len(records)
        position = self._offsets[tp] = records[-1].offset + 1
        self._oldest_ts.setdefault(tp, records[0].timestamp)
        assert self.consumer is not None
        self._lag[tp] = max(0, (self.consumer.highwater(tp) or position) - position)

    # -- the transaction ----------------------------------------------------------------
    async def _commit(self) -> None:
        """Steps 1-5 of the commit order in the module docstring."""
        assert self.producer is not None
        if not self._offsets and not self._outbox.messages:
            return
        started = time.monotonic()
        out, self._outbox = self._outbox, Outbox()
        now = time.time()
        producer = self.producer
        async with producer.transaction():
            for (stage_name, _), state in self.states.items():  # 1
                self._stage_by_name(stage_name).flush(state, out, now)
            for topic, key, value in out.messages:  # 2
                await producer.send(topic, value=value, key=key)
            for (stage_name, partition), state in self.states.items():  # 3
                topic = self._state_topic(stage_name)
                for name, value in state.changes():
                    await producer.send(
                        topic,
                        key=name.encode(),
                        value=None if value is None else orjson.dumps(value),
                        partition=partition,
                    )
            if self._offsets:  # 4
                await producer.send_offsets_to_transaction(dict(self._offsets), self._group_id)
        # 5: leaving the context committed the transaction (or raised and aborted it).
        self.committed_transactions += 1
        oldest, self._oldest_ts = self._oldest_ts, {}
        self._offsets = {}
        if self._on_commit is not None:
            lag: dict[str, int] = {}
            for tp, n in self._lag.items():
                lag[tp.topic] = lag.get(tp.topic, 0) + n
            self._on_commit(out, time.monotonic() - started, oldest, lag, time.time())

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
            changelogs = {
                TopicPartition(self._state_topic(name), partition): (name, partition)
                for name, partition in missing
            }
            restored = await read_changelog(self._bootstrap, changelogs)
            for tp, values in restored.items():
                name, partition = changelogs[tp]
                state = self._stage_by_name(name).new_state()
                for name, value in values.items():
                    state.restore(name, value)
                self.states[(name, partition)] = state
            log.info("assigned %d partitions; restored %d states", len(assigned), len(missing))


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: Worker) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._worker.on_revoked()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self._worker.on_assigned(set(assigned))
