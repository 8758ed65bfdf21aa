"""Rebuilding a partition's state from its compacted changelog before it processes.

Synchronous: the caller chooses the thread. Two ways: :func:`read_changelog` folds whole
changelogs into dicts, inside the consumer's assignment callback (states kept in memory and
small: the review stage's); :func:`replay_changelog` streams one changelog partition from an
offset into a state backed by a store (attribution, aggregation), on a restore thread
(:mod:`.restoring`), persisting the store as it goes, so a restart with a current store
reads only the records written after its checkpoint, and a full restore never holds the
changelog in memory.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException
from confluent_kafka import TopicPartition as KafkaPartition

from ..state import DurableStore
from .clients import PARTITION_EOF, Kafka, client_config

log = logging.getLogger(__name__)

Partition = tuple[str, int]


def read_changelog(
    bootstrap_servers: Kafka, partitions: Iterable[Partition], wait_seconds: float = 60.0
) -> dict[Partition, dict[str, object]]:
    """The surviving value of every key of each changelog partition, up to its end.

    Reads ``read_committed`` to the end of every transaction that had started when it was
    called: state written by a transaction that never committed (a crashed worker) is
    skipped, and one whose commit markers are not written yet is waited for. (Stopping at
    the last stable offset as it is at the start would, right after the previous owner's
    final commit, restore state without that commit while its input offsets are already
    committed: seen in a test, as a model restored cold.) A crashed owner's open
    transaction blocks until the broker aborts it, so ``wait_seconds`` should exceed the
    transaction timeout.
    """
    tps = list(partitions)
    state: dict[Partition, dict[str, object]] = {tp: {} for tp in tps}
    if not tps:
        return state
    deadline = time.monotonic() + wait_seconds
    ends = {
        tp: end for tp, (_, end) in _wait_until_stable(bootstrap_servers, tps, deadline).items()
    }
    remaining = {tp for tp in tps if ends[tp] > 0}
    if not remaining:
        return state
    reader = _changelog_reader(bootstrap_servers)
    try:
        reader.assign([KafkaPartition(t, p, OFFSET_BEGINNING) for t, p in remaining])
        while remaining:
            if time.monotonic() > deadline:
                raise TimeoutError(f"changelog not readable to its end: {sorted(remaining)}")
            for message in reader.consume(10_000, 0.5):
                tp = (message.topic() or "", message.partition() or 0)
                error = message.error()
                if error is not None:
                    if error.code() == PARTITION_EOF:
                        if (message.offset() or 0) >= ends[tp]:
                            remaining.discard(tp)
                        continue
                    raise KafkaException(error)
                values = state[tp]
                key = message.key()
                name = key.decode() if key else ""
                value = message.value()
                if value is None:
                    values.pop(name, None)
                else:
                    values[name] = orjson.loads(value)
    finally:
        reader.close()
    for (topic, partition), values in state.items():
        log.info("restored %s[%d]: %d keys", topic, partition, len(values))
    return state


def _changelog_reader(bootstrap_servers: Kafka) -> Consumer:
    """A consumer that reads changelogs by ``assign()`` (never joins a group), committed
    records only, and says when it reached a partition's end."""
    return Consumer(
        client_config(
            bootstrap_servers,
            {
                "group.id": "stream-app-restore",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
                "max.partition.fetch.bytes": 8 * 1024 * 1024,
                "fetch.max.bytes": 64 * 1024 * 1024,
                "queued.max.messages.kbytes": 64 * 1024,
            },
        )
    )


def changelog_bounds(
    bootstrap_servers: Kafka, partitions: Iterable[Partition], wait_seconds: float = 60.0
) -> dict[Partition, tuple[int, int]]:
    """(log start, end) of each changelog partition, once every transaction that had
    started when called is resolved (see :func:`read_changelog` on why the end waits)."""
    return _wait_until_stable(bootstrap_servers, list(partitions), time.monotonic() + wait_seconds)


@dataclass(frozen=True, slots=True)
class Replayed:
    records: int
    """Changelog records read (tombstones included)."""
    seconds: float


def replay_changelog(
    bootstrap_servers: Kafka,
    tp: Partition,
    start: int,
    end: int,
    apply: Callable[[str, Any], None],
    store: DurableStore,
    wait_seconds: float = 60.0,
    persist_every: int = 50_000,
) -> Replayed:
    """Apply the committed records of ``tp`` from ``start`` to ``end`` (from
    :func:`changelog_bounds`), in offset order, to a store-backed state.

    Records of one fetched batch are folded by key first (the last value of each key, at
    its last position: what compaction keeps), so a model snapshot written in every
    transaction is deserialised once per batch, not once per record. Every
    ``persist_every`` records, and at the end, the store is persisted with the offset it
    has reached: a restore cut short resumes from there.
    """
    started = time.monotonic()
    if start >= end:
        store.commit(store.seal(), end)
        return Replayed(0, time.monotonic() - started)
    deadline = started + wait_seconds
    reader = _changelog_reader(bootstrap_servers)
    records = since_persist = 0
    try:
        reader.assign([KafkaPartition(tp[0], tp[1], start)])
        done = False
        while not done:
            if time.monotonic() > deadline:
                raise TimeoutError(f"changelog {tp} not readable to its end")
            folded: dict[str, Any] = {}
            position = -1
            for message in reader.consume(10_000, 0.5):
                error = message.error()
                if error is not None:
                    if error.code() == PARTITION_EOF:
                        if (message.offset() or 0) >= end:
                            done = True
                        continue
                    raise KafkaException(error)
                if (message.offset() or 0) >= end:  # written after the restore began
                    done = True
                    continue
                records += 1
                key = message.key()
                name = key.decode() if key else ""
                value = message.value()
                folded.pop(name, None)
                folded[name] = None if value is None else orjson.loads(value)
                position = message.offset() or 0
            for name, value in folded.items():
                apply(name, value)
            if folded:  # the deadline bounds a stall, not a long restore
                deadline = time.monotonic() + wait_seconds
            since_persist += len(folded)
            if position >= 0 and since_persist >= persist_every:
                store.commit(store.seal(), position + 1)
                since_persist = 0
    finally:
        reader.close()
    store.commit(store.seal(), end)
    return Replayed(records, time.monotonic() - started)


def _wait_until_stable(
    bootstrap_servers: Kafka, tps: list[Partition], deadline: float
) -> dict[Partition, tuple[int, int]]:
    """(log start, end) offsets, the end being the high watermark once every transaction
    below it is resolved.

    A ``read_committed`` reader stops at the last stable offset; once that has reached
    the high watermark seen at the start, everything written before now is readable.
    """
    # read_uncommitted: librdkafka's default, read_committed, would give the last stable
    # offset here; the end would then stop before an open transaction (a frozen owner's)
    # and miss the committed ones after it, whose input offsets are committed too
    probe = Consumer(
        client_config(
            bootstrap_servers,
            {"group.id": "stream-app-restore", "isolation.level": "read_uncommitted"},
        )
    )
    try:
        bounds = {
            tp: probe.get_watermark_offsets(KafkaPartition(*tp), timeout=10, cached=False)
            for tp in tps
        }
        ends = {tp: high for tp, (_, high) in bounds.items()}
    finally:
        probe.close()
    stable = Consumer(
        client_config(
            bootstrap_servers,
            {"group.id": "stream-app-restore", "isolation.level": "read_committed"},
        )
    )
    try:
        waiting = {tp for tp in tps if ends[tp] > 0}
        while waiting:
            for tp in list(waiting):
                lso = stable.get_watermark_offsets(KafkaPartition(*tp), timeout=10, cached=False)[1]
                if lso >= ends[tp]:
                    waiting.discard(tp)
            if waiting:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"open transactions in changelogs: {sorted(waiting)}")
                time.sleep(0.2)
    finally:
        stable.close()
    return {tp: (low, high) for tp, (low, high) in bounds.items()}
