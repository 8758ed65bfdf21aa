"""Rebuilding a partition's state from its compacted changelog before it processes.

Synchronous on purpose: it runs inside the consumer's assignment callback, on the thread
that polls, while librdkafka's own thread keeps the member's heartbeats going (so a long
restore does not get the worker expelled; ``max.poll.interval.ms`` bounds it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException
from confluent_kafka import TopicPartition as KafkaPartition

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
    ends = _wait_until_stable(bootstrap_servers, tps, deadline)
    remaining = {tp for tp in tps if ends[tp] > 0}
    if not remaining:
        return state
    reader = Consumer(
        client_config(
            bootstrap_servers,
            {
                "group.id": "stream-app-restore",  # never joins: assign() only
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
                "max.partition.fetch.bytes": 8 * 1024 * 1024,
                "fetch.max.bytes": 64 * 1024 * 1024,
            },
        )
    )
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


def _wait_until_stable(
    bootstrap_servers: Kafka, tps: list[Partition], deadline: float
) -> dict[Partition, int]:
    """End offsets (high watermarks) once every transaction below them is resolved.

    A ``read_committed`` reader stops at the last stable offset; once that has reached
    the high watermark seen at the start, everything written before now is readable.
    """
    probe = Consumer(client_config(bootstrap_servers, {"group.id": "stream-app-restore"}))
    try:
        ends = {
            tp: probe.get_watermark_offsets(KafkaPartition(*tp), timeout=10, cached=False)[1]
            for tp in tps
        }
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
    return ends
